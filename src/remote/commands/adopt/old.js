'use strict';
// tj-deploy `setup --adopt`: the PM2 processes running from deploy_dir itself or a directory
// of the app in it (the runbook's app). argv: deploy_dir, listen.js, a file to write their
// definition to ('-': none). Prints `old <pm_id> <name>` per process, and `other <pm_id> <cwd>
// <name>` per process running elsewhere (cwd `?` when it holds a space). The definition (0600, it
// holds the app's environment) lets a failed adoption start the old app again as it ran, with
// listen.js so its workers are awaited.
const { execFileSync } = require('child_process');
const fs = require('fs');

const [D, listen, out] = process.argv.slice(1);
const real = (p) => {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
};
const text = execFileSync('pm2', ['jlist'], { encoding: 'utf8', maxBuffer: 256 << 20 });
const list = JSON.parse(text.split('\n').filter((l) => l.startsWith('[')).pop() || '[]');
const rd = real(D);
// deploy_dir or a directory of the app inside it; never tj-deploy's own (releases, current).
const ours = (c) => c === `${rd}/releases` || c.startsWith(`${rd}/releases/`) || c === `${rd}/current` || c.startsWith(`${rd}/.tj-deploy`);
const fromD = (c) => c === D || c === rd || (c.startsWith(`${rd}/`) && !ours(c));
const old = list.filter((p) => p.pm2_env && p.pm2_env.pm_cwd && fromD(real(p.pm2_env.pm_cwd)));
// What PM2 keeps about a running process, not how to start it: never copied into the snapshot
// (nor the env vars PM2 mirrors at the top level, nor the fields mapped below).
const RUNTIME = new Set(['pm_id', 'pid', 'status', 'restart_time', 'pm_uptime', 'created_at', 'unstable_restarts',
  'versioning', 'version', 'node_version', 'unique_id', 'prev_restart_delay', 'exit_code', 'km_link', 'vizion_running',
  'username', 'NODE_APP_INSTANCE', '_pm2_version', 'pm_exec_path', 'pm_cwd', 'pm_out_log_path', 'pm_err_log_path',
  'pm_log_path', 'pm_pid_path', 'exec_interpreter', 'node_args', 'instances', 'exec_mode', 'env', 'args', 'name']);
const apps = new Map();
for (const p of old) {
  const e = p.pm2_env;
  let a = apps.get(p.name);
  if (!a) {
    a = {};
    for (const [k, v] of Object.entries(e)) {
      if (!RUNTIME.has(k) && !k.startsWith('axm_') && !(e.env && k in e.env)) a[k] = v;
    }
    Object.assign(a, {
      name: p.name,
      script: e.pm_exec_path,
      cwd: e.pm_cwd,
      exec_mode: e.exec_mode === 'cluster_mode' ? 'cluster' : 'fork',
      instances: 0,
      node_args: [].concat(e.node_args || [], ['--require', listen]),
      args: e.args,
      env: e.env,
      out_file: e.pm_out_log_path,
      error_file: e.pm_err_log_path,
    });
    if (e.pm_log_path) a.log_file = e.pm_log_path;
    if (e.exec_interpreter) a.interpreter = e.exec_interpreter;
    apps.set(p.name, a);
  }
  a.instances += 1;
}
if (out !== '-') fs.writeFileSync(out, JSON.stringify({ apps: [...apps.values()] }), { mode: 0o600 });
for (const p of old) console.log(`old ${p.pm_id} ${p.name}`);
for (const p of list.filter((q) => !old.includes(q))) {
  const c = String((p.pm2_env && p.pm2_env.pm_cwd) || '?');
  console.log(`other ${p.pm_id} ${/\s/.test(c) ? '?' : c} ${p.name}`);
}
