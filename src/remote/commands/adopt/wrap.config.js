'use strict';
// tj-deploy `setup --adopt`: the app's PM2 apps (TJ_ADOPT_BASE: the drain wrapper, or the app's
// own ecosystem file) with listen.js preloaded and TJ_ADOPT_SUFFIX appended to every name (the
// temporary copy that serves while the old app drains). Run with node, it prints the apps as
// JSON lines: {name, cluster: whether to wait until it listens}.
const path = require('path');

const listen = path.join(__dirname, 'listen.js');
let m = require(path.resolve(process.env.TJ_ADOPT_BASE));
if (m && m.__esModule && m.default) m = m.default;
const apps = Array.isArray(m) ? m : m && Array.isArray(m.apps) ? m.apps : m && m.script ? [m] : [];
const words = (v) => (Array.isArray(v) ? v.slice() : typeof v === 'string' && v.trim() ? v.trim().split(/\s+/) : []);
const suffix = process.env.TJ_ADOPT_SUFFIX || '';
for (const app of apps) {
  const script = String(app.script || 'app');
  app.name = (app.name || path.basename(script, path.extname(script))) + suffix;
  const interpreter = app.interpreter || app.exec_interpreter;
  if (interpreter && !/(^|\/)(node|nodejs)$/.test(interpreter)) continue;
  const own = [app.node_args, app.nodeArgs, app.interpreter_args, app.interpreterArgs].find((v) => v !== undefined);
  delete app.nodeArgs;
  delete app.interpreter_args;
  delete app.interpreterArgs;
  app.node_args = words(own).concat(['--require', listen]);
}
if (require.main === module) {
  for (const app of apps) {
    const mode = String(app.exec_mode || app.execMode || '');
    const script = String(app.script || '').split('/').pop();
    // A package manager as the script never listens itself: its child does, unseen.
    const pm = ['npm', 'yarn', 'pnpm', 'npx'].includes(script);
    const cluster = !pm && (mode.startsWith('cluster') || (!mode && app.instances !== undefined));
    console.log(JSON.stringify({ name: app.name, cluster }));
  }
}
module.exports = m;
