'use strict';
// tj-deploy `setup --adopt`: waits until every process of the named PM2 apps is online and,
// for cluster apps, listening (listen.js marked its pid). argv: apps as JSON lines, the mark
// directory, the time limit in ms. Prints `listening <pid>` per process; exit 1 on timeout.
const { execFileSync } = require('child_process');
const fs = require('fs');

const [lines, dir, limit] = process.argv.slice(1);
const apps = lines.split('\n').filter(Boolean).map((l) => JSON.parse(l));
const deadline = Date.now() + Number(limit);

function list() {
  const out = execFileSync('pm2', ['jlist'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  return JSON.parse(out.split('\n').filter((l) => l.startsWith('[')).pop() || '[]');
}

function waiting(procs) {
  const left = [];
  for (const app of apps) {
    const ps = procs.filter((p) => p.name === app.name);
    if (!ps.length) left.push(`${app.name}: no process`);
    for (const p of ps) {
      const st = p.pm2_env && p.pm2_env.status;
      if (st !== 'online') left.push(`${app.name} pid ${p.pid}: ${st}`);
      else if (app.cluster && !fs.existsSync(`${dir}/${p.pid}`)) left.push(`${app.name} pid ${p.pid}: not listening yet`);
    }
  }
  return left;
}

(function loop() {
  let procs;
  let left;
  try {
    procs = list();
    left = waiting(procs);
  } catch (e) {
    left = [`pm2 jlist: ${e.message.split('\n')[0]}`];
  }
  if (!left.length) {
    for (const p of procs.filter((q) => apps.some((a) => a.name === q.name))) console.log(`listening ${p.pid}`);
    return;
  }
  if (Date.now() > deadline) {
    console.error(`not every new worker listens after ${limit} ms: ${left.join(', ')}`);
    process.exit(1);
  }
  setTimeout(loop, 200);
})();
