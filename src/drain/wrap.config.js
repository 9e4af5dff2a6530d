'use strict';
// tj-deploy: the app's own PM2 ecosystem file (TJ_DRAIN_ECOSYSTEM, relative to the reload's
// cwd; .json, .config.js or .config.cjs) with the keep-alive drain preloaded into each Node
// app through node_args. PM2 gives cluster workers their environment only after Node has started, so NODE_OPTIONS from the
// reload cannot reach them; node_args can, and PM2 updates them on every startOrReload.
const path = require('path');

const drain = path.join(__dirname, 'drain.js');
const file = process.env.TJ_DRAIN_ECOSYSTEM;
// PM2 reads a file whose name holds `.json` as a JavaScript expression, not as strict JSON.
let m = file.includes('.json')
  ? require('vm').runInThisContext('(' + require('fs').readFileSync(path.resolve(file), 'utf8') + ')')
  : require(path.resolve(file));
if (m && m.__esModule && m.default) m = m.default;
const apps = Array.isArray(m) ? m : m && Array.isArray(m.apps) ? m.apps : m && m.script ? [m] : [];
const words = (v) => (Array.isArray(v) ? v.slice() : typeof v === 'string' && v.trim() ? v.trim().split(/\s+/) : []);
for (const app of apps) {
  const interpreter = app.interpreter || app.exec_interpreter;
  if (interpreter && !/(^|\/)(node|nodejs)$/.test(interpreter)) continue;
  // PM2 reads node_args under three names, the first set winning: keep the app's own flags
  // whichever name it used.
  const own = [app.node_args, app.nodeArgs, app.interpreter_args, app.interpreterArgs].find((v) => v !== undefined);
  const args = words(own);
  delete app.nodeArgs;
  delete app.interpreter_args;
  delete app.interpreterArgs;
  app.node_args = args.concat(['--require', drain]);
  app.env = Object.assign({}, app.env, { TJ_DRAIN_TIMEOUT_MS: process.env.TJ_DRAIN_TIMEOUT_MS || '1500' });
}
module.exports = m;
