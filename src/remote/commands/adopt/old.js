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
const apps = new Map();
for (const p of old) {
  const e = p.pm2_env;
  const a = apps.get(p.name) || {
    name: p.name,
    script: e.pm_exec_path,
    cwd: e.pm_cwd,
    exec_mode: e.exec_mode === 'cluster_mode' ? 'cluster' : 'fork',
    instances: 0,
    node_args: [].concat(e.node_args || [], ['--require', listen]),
    args: e.args,
    env: e.env,
    kill_timeout: e.kill_timeout,
    wait_ready: e.wait_ready,
    listen_timeout: e.listen_timeout,
    max_memory_restart: e.max_memory_restart,
    out_file: e.pm_out_log_path,
    error_file: e.pm_err_log_path,
    merge_logs: e.merge_logs,
    log_date_format: e.log_date_format,
    autorestart: e.autorestart,
  };
  a.instances += 1;
  apps.set(p.name, a);
}
if (out !== '-') fs.writeFileSync(out, JSON.stringify({ apps: [...apps.values()] }), { mode: 0o600 });
for (const p of old) console.log(`old ${p.pm_id} ${p.name}`);
for (const p of list.filter((q) => !old.includes(q))) {
  const c = String((p.pm2_env && p.pm2_env.pm_cwd) || '?');
  console.log(`other ${p.pm_id} ${/\s/.test(c) ? '?' : c} ${p.name}`);
}
