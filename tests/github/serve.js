#!/usr/bin/env node
'use strict';
// Starts the fake GitHub and Prism (proxy mode with GitHub's OpenAPI description, --errors) in
// front of it, prints "ready <prism port> <fake port>" once both answer, and stops both when its
// stdin closes (so they never outlive the test process that started them).
// Usage: node serve.js <tools dir> <log file>
const { spawn } = require('child_process');
const net = require('net');
const fs = require('fs');
const path = require('path');

const [, , tools, logFile] = process.argv;
const spec = path.join(tools, 'node_modules/@octokit/openapi/generated/api.github.com.json');
const prismBin = path.join(tools, 'node_modules/.bin/prism');
for (const f of [spec, prismBin]) {
  if (!fs.existsSync(f)) { console.error(`missing ${f}: run .ci/setup`); process.exit(2); }
}
const free = () => new Promise((ok) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
const up = (port) => new Promise((ok) => { const c = net.connect(port, '127.0.0.1', () => { c.destroy(); ok(true); }); c.on('error', () => ok(false)); });

(async () => {
  const [fakePort, prismPort] = [await free(), await free()];
  const log = fs.openSync(logFile, 'a');
  const children = [
    spawn(process.execPath, [path.join(__dirname, 'fake.js'), spec, String(fakePort)], { stdio: ['ignore', log, log] }),
    spawn(prismBin, ['proxy', spec, `http://127.0.0.1:${fakePort}`, '--errors', '--port', String(prismPort), '--host', '127.0.0.1'], { stdio: ['ignore', log, log] }),
  ];
  const stop = () => { for (const c of children) { try { c.kill('SIGKILL'); } catch (_) {} } process.exit(0); };
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
  for (const c of children) c.on('exit', (code) => { console.error(`child exited ${code}`); stop(); });
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if ((await up(fakePort)) && (await up(prismPort))) { console.log(`ready ${prismPort} ${fakePort}`); return; }
    await new Promise((r) => setTimeout(r, 200));
  }
  console.error('prism did not start within 60 s');
  stop();
})();
