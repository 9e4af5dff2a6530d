'use strict';
// tj-deploy keep-alive drain, preloaded into PM2 workers with `node --require` (NODE_OPTIONS).
// Written to <deploy_dir>/.tj-deploy/drain.js by every reload; the app does not mention it.
//
// When the worker is told to stop (SIGINT, SIGTERM, PM2's 'shutdown' message) or a server is
// closed: stop accepting, answer every further request on an open connection with
// `Connection: close` and close that connection after its response, and let the process exit
// once no connection is open or TJ_DRAIN_TIMEOUT_MS has passed (then the idle ones are closed). The app's own handlers still run; an exit they ask for waits
// for the drain. Only http.Server is touched: PM2's own processes and other code are left alone.
(function tjDrain() {
  if (global.__tjDeployDrain) return;
  global.__tjDeployDrain = true;
  const http = require('http');
  const net = require('net');
  const ms = (v, d) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Math.max(0, Number(v)) : d);
  // Read when needed: PM2's cluster workers get their environment after preloads run.
  const timeoutMs = () => ms(process.env.TJ_DRAIN_TIMEOUT_MS, 1500);
  // Idle connections are closed only when drain_timeout ends, unless TJ_DRAIN_IDLE_MS says
  // sooner: closing them at once, or after 250 ms or 1 s of quiet, raced clients that picked
  // one just then (failed requests in 10 of 16, 9 of 44, 1 of 8 reloads); waiting lost none
  // in 14 (BENCHMARKS.md).
  const idleMs = () => ms(process.env.TJ_DRAIN_IDLE_MS, Infinity);
  let IDLE = Infinity;
  const K = Symbol('tjDrain');
  const servers = new Set();
  const sockets = new Set();
  let draining = false;
  let armed = false;
  let ticker = null;
  let deadline = 0;
  let started = 0;
  let signalOwned = false;
  let exitAsked = null;
  const realExit = process.exit.bind(process);

  // TJ_DRAIN_DEBUG=<absolute file>: lines appended there (PM2 may lose stderr at exit).
  function say(line) {
    const text = `tj-deploy drain: pid ${process.pid}: ${line}\n`;
    const to = process.env.TJ_DRAIN_DEBUG || '';
    try {
      if (to.startsWith('/')) require('fs').appendFileSync(to, text);
      else process.stderr.write(text);
    } catch {
      // Logging never stops the drain.
    }
  }

  const closing = (s) => draining || (s[K] && s[K].server[K] === 'closing');

  function track(server, socket) {
    servers.add(server);
    socket[K] = { server, active: 0, res: null, last: Date.now() };
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      check();
    });
  }

  function onRequest(server, req, res) {
    const st = req.socket && req.socket[K];
    if (!st) return;
    st.active += 1;
    st.res = res;
    if (closing(req.socket)) res.shouldKeepAlive = false;
    res.once('close', () => {
      st.active -= 1;
      st.last = Date.now();
      if (st.res === res) st.res = null;
    });
  }

  // Stops accepting without Node's own close of idle connections (a client may be sending on
  // one at that instant): idle connections are closed here, after a quiet period.
  function stopAccepting(server) {
    if (server[K] === 'closing') return false;
    server[K] = 'closing';
    IDLE = idleMs();
    for (const s of sockets) {
      const st = s[K];
      if (st.server === server && st.res && !st.res.headersSent) st.res.shouldKeepAlive = false;
    }
    tick();
    return true;
  }

  function tick() {
    if (!ticker) {
      ticker = setInterval(sweep, Math.max(10, Math.min(50, IDLE || 10)));
      ticker.unref();
    }
  }

  function sweep() {
    const now = Date.now();
    for (const s of sockets) {
      const st = s[K];
      if (closing(s) && st.active === 0 && now - st.last >= IDLE) {
        if (process.env.TJ_DRAIN_DEBUG) say(`idle ${now - st.last} ms: closed`);
        s.destroy();
      }
    }
    check();
  }

  function check() {
    if (!draining) return;
    let open = 0;
    for (const s of sockets) if (closing(s)) open += 1;
    if (open === 0) finish('drained');
    else if (Date.now() >= deadline) finish('timeout');
  }

  function finish(why) {
    const open = sockets.size;
    if (why === 'timeout') for (const s of sockets) s.destroy();
    if (why === 'timeout' || process.env.TJ_DRAIN_DEBUG) {
      say(`${why} after ${Date.now() - started} ms, ${open} connection(s) open${why === 'timeout' ? ' closed' : ''}`);
    }
    if (ticker) clearInterval(ticker);
    ticker = null;
    if (exitAsked !== null) realExit(exitAsked);
    else if (!signalOwned) realExit(0);
    else if (why === 'timeout') draining = false;
  }

  function drain(signal) {
    if (draining) return;
    draining = true;
    IDLE = idleMs();
    const TIMEOUT = timeoutMs();
    started = Date.now();
    deadline = Date.now() + TIMEOUT;
    // Whoever else listens decides how the process ends; with nobody, the default action of
    // the signal (exit) happens once drained.
    signalOwned = signal === 'shutdown'
      ? process.listenerCount('message') > 1
      : process.listenerCount(signal) > 1;
    for (const s of servers) if (stopAccepting(s) && s.listening) net.Server.prototype.close.call(s);
    if (process.env.TJ_DRAIN_DEBUG) say(`${signal}: ${sockets.size} connection(s) open`);
    const t = setTimeout(() => finish('timeout'), TIMEOUT);
    t.unref();
    tick();
    check();
  }

  function arm() {
    if (armed) return;
    armed = true;
    process.prependListener('SIGINT', () => drain('SIGINT'));
    process.prependListener('SIGTERM', () => drain('SIGTERM'));
    process.prependListener('message', (m) => {
      if (m === 'shutdown' || (m && m.type === 'shutdown')) drain('shutdown');
    });
    process.exit = function exit(code) {
      if (draining && sockets.size > 0) {
        exitAsked = code === undefined ? (process.exitCode || 0) : code;
        return undefined;
      }
      return realExit(code);
    };
  }

  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function tjEmit(ev, a, b) {
    if (ev === 'connection' && a && !a[K]) track(this, a);
    else if (ev === 'request') onRequest(this, a, b);
    else if (ev === 'listening') {
      servers.add(this);
      arm();
    }
    return emit.apply(this, arguments);
  };
  const close = http.Server.prototype.close;
  // Outside a drain, close() keeps Node's meaning (idle connections closed at once); the
  // requests still in flight get `Connection: close`.
  http.Server.prototype.close = function tjClose(cb) {
    if (!servers.has(this)) return close.apply(this, arguments);
    stopAccepting(this);
    if (!draining) return close.apply(this, arguments);
    return net.Server.prototype.close.call(this, cb);
  };
  const closeIdle = http.Server.prototype.closeIdleConnections;
  if (closeIdle) {
    http.Server.prototype.closeIdleConnections = function tjCloseIdle() {
      if (draining && this[K] === 'closing') return undefined;
      return closeIdle.apply(this, arguments);
    };
  }
})();
