'use strict';
// Trading journal sample app for tj-deploy. Node core modules only.
//
// Graceful shutdown for PM2 cluster mode (DESIGN.md §5): signal readiness with
// process.send('ready') once listening (ecosystem uses wait_ready), and on
// SIGINT/SIGTERM stop accepting, disconnect the cluster worker, let in-flight
// requests finish with `Connection: close`, then exit (fallback after ~3 s).

const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const path = require('path');

const APP_DIR = (() => {
  try {
    return fs.realpathSync(__dirname);
  } catch (_) {
    return __dirname;
  }
})();

// --- .env loading -----------------------------------------------------------

function parseEnv(text) {
  const out = {};
  for (const rawLine of text.split(/\r?\n/)) {
    let line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('export ')) line = line.slice(7).trim();
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    let value = line.slice(eq + 1).trim();
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    } else {
      // Unquoted: a " #" starts an inline comment.
      const hash = value.search(/\s#/);
      if (hash !== -1) value = value.slice(0, hash).trim();
    }
    out[key] = value;
  }
  return out;
}

function loadDotEnv(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (_) {
    return; // no .env: rely on the environment
  }
  const parsed = parseEnv(text);
  for (const [k, v] of Object.entries(parsed)) {
    if (!Object.prototype.hasOwnProperty.call(process.env, k)) process.env[k] = v;
  }
}

loadDotEnv(path.join(APP_DIR, '.env'));

const PORT = Number.parseInt(process.env.PORT || '3000', 10);
// HOST: listen on one address only (e.g. 127.0.0.1 behind a balancer or a reverse proxy).
const HOST = process.env.HOST || '';
// DATABASE_URL is read here only to show where it comes from; never log it.
const DATABASE_CONFIGURED = Boolean(process.env.DATABASE_URL);

const VERSION = (() => {
  try {
    return JSON.parse(fs.readFileSync(path.join(APP_DIR, 'package.json'), 'utf8')).version || null;
  } catch (_) {
    return null;
  }
})();

function readRevision() {
  try {
    const rev = fs.readFileSync(path.join(APP_DIR, 'REVISION'), 'utf8').trim();
    return rev || null;
  } catch (_) {
    return null;
  }
}

const BROKERS = [
  { id: 'ibkr', name: 'Interactive Brokers', country: 'US' },
  { id: 'schwab', name: 'Charles Schwab', country: 'US' },
  { id: 'degiro', name: 'DEGIRO', country: 'NL' },
  { id: 'saxo', name: 'Saxo Bank', country: 'DK' },
];

// --- fault modes (tests of tj-deploy's post-deploy watch) --------------------
// A file in the release turns one on, like UNHEALTHY: CRASH_AFTER holds seconds after which
// the worker crashes (and, restarted by PM2, crashes again), then optionally the one PM2
// instance (NODE_APP_INSTANCE) that crashes while the others serve; ERRORS_AFTER holds
// seconds after which every request but /api/health and /metrics answers 500; SLOW_AFTER
// holds "seconds delay_ms" after which every answer waits delay_ms (default 600).

const STARTED = Date.now();

function modeFile(name) {
  try {
    return fs.readFileSync(path.join(APP_DIR, name), 'utf8').trim().split(/\s+/).map(Number);
  } catch (_) {
    return null;
  }
}

const CRASH_AFTER = modeFile('CRASH_AFTER');
const ERRORS_AFTER = modeFile('ERRORS_AFTER');
const SLOW_AFTER = modeFile('SLOW_AFTER');

function after(mode) {
  return mode !== null && Date.now() - STARTED >= (mode[0] || 0) * 1000;
}

const CRASHES = CRASH_AFTER !== null
  && (CRASH_AFTER.length < 2 || String(CRASH_AFTER[1]) === process.env.NODE_APP_INSTANCE);
if (CRASHES) {
  setTimeout(() => {
    console.error(`pid ${process.pid}: CRASH_AFTER: crashing`);
    process.exit(1);
  }, (CRASH_AFTER[0] || 0) * 1000).unref();
}

// --- metrics (Prometheus text format) -----------------------------------------

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const ROUTES = ['/api/health', '/api/me', '/api/brokers', 'other'];
const requests = new Map(); // `${route}\0${status}` -> count
const durations = new Map(ROUTES.map((r) => [r, { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 }]));

function observe(route, status, seconds) {
  const r = ROUTES.includes(route) ? route : 'other';
  const key = `${r}\0${status}`;
  requests.set(key, (requests.get(key) || 0) + 1);
  const d = durations.get(r);
  BUCKETS.forEach((le, i) => {
    if (seconds <= le) d.buckets[i] += 1;
  });
  d.sum += seconds;
  d.count += 1;
}

function metricsText() {
  const lines = ['# HELP http_requests_total HTTP requests answered.', '# TYPE http_requests_total counter'];
  for (const [key, n] of requests) {
    const [route, status] = key.split('\0');
    lines.push(`http_requests_total{route="${route}",status="${status}"} ${n}`);
  }
  lines.push('# HELP http_request_duration_seconds Time to answer.', '# TYPE http_request_duration_seconds histogram');
  for (const [route, d] of durations) {
    BUCKETS.forEach((le, i) => lines.push(`http_request_duration_seconds_bucket{route="${route}",le="${le}"} ${d.buckets[i]}`));
    lines.push(`http_request_duration_seconds_bucket{route="${route}",le="+Inf"} ${d.count}`);
    lines.push(`http_request_duration_seconds_sum{route="${route}"} ${d.sum}`);
    lines.push(`http_request_duration_seconds_count{route="${route}"} ${d.count}`);
  }
  return lines.join('\n') + '\n';
}

// --- HTTP --------------------------------------------------------------------

let shuttingDown = false;

function sendJson(res, status, body) {
  const payload = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(payload));
  res.setHeader('Cache-Control', 'no-store');
  if (shuttingDown) res.setHeader('Connection', 'close');
  res.end(payload);
}

// Echoes a JSON trade: the POST a deploy must not drop (a proxy does not retry it).
function saveTrade(req, res) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 65536) chunks.push(c);
  });
  req.on('end', () => {
    let trade;
    try {
      trade = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'body must be JSON' });
    }
    if (size > 65536 || !trade || typeof trade !== 'object') return sendJson(res, 422, { error: 'need a JSON object' });
    return sendJson(res, 201, { trade, revision: readRevision() });
  });
}

function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const pathname = url.pathname.replace(/\/+$/, '') || '/';
  const route = `${req.method} ${pathname}`;
  if (route === 'GET /metrics') {
    res.setHeader('Content-Type', 'text/plain; version=0.0.4');
    return res.end(metricsText());
  }
  const started = process.hrtime.bigint();
  res.on('finish', () => observe(pathname, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
  if (after(ERRORS_AFTER) && pathname !== '/api/health') {
    return sendJson(res, 500, { error: 'internal_error', mode: 'ERRORS_AFTER' });
  }
  if (after(SLOW_AFTER)) {
    return setTimeout(() => answer(route, url, req, res), SLOW_AFTER[1] || 600);
  }
  return answer(route, url, req, res);
}

function answer(route, url, req, res) {
  switch (route) {
    case 'GET /api/health':
    case 'HEAD /api/health': {
      const unhealthy = fs.existsSync(path.join(APP_DIR, 'UNHEALTHY'));
      return sendJson(res, unhealthy ? 503 : 200, {
        status: unhealthy ? 'unhealthy' : 'healthy',
        version: VERSION,
        // A release holding NO_REVISION answers like apps that do not report one.
        revision: fs.existsSync(path.join(APP_DIR, 'NO_REVISION')) ? undefined : readRevision(),
        pid: process.pid,
        uptime: process.uptime(),
        database: DATABASE_CONFIGURED ? 'configured' : 'missing',
      });
    }
    case 'GET /api/me':
      return sendJson(res, 401, { error: 'unauthorized' });
    case 'GET /api/brokers':
      return sendJson(res, 200, BROKERS);
    case 'POST /api/trades':
      return saveTrade(req, res);
    default:
      return sendJson(res, 404, { error: 'not_found', path: url.pathname });
  }
}

const server = http.createServer((req, res) => {
  try {
    handle(req, res);
  } catch (err) {
    console.error('request failed:', err && err.message);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
    else res.destroy();
  }
});
server.keepAliveTimeout = 5000;

server.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});

function listening() {
  console.log(`trading-journal ${VERSION} (${readRevision() || 'no revision'}) listening on ${HOST}:${PORT}, pid ${process.pid}`);
  if (typeof process.send === 'function') process.send('ready');
}
if (HOST) server.listen(PORT, HOST, listening);
else server.listen(PORT, listening);

// --- graceful shutdown -------------------------------------------------------

function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log(`${signal} received, pid ${process.pid}: draining`);

  // Fallback: never hang around longer than ~3 s (PM2 kill_timeout is 5 s).
  setTimeout(() => {
    console.log(`pid ${process.pid}: drain timeout, exiting`);
    process.exit(0);
  }, 3000).unref();

  // Exit only once (a) every connection has ended and (b) as a cluster worker,
  // the primary has acknowledged our disconnect. Exiting before (b) can drop a
  // connection the primary already handed to us over IPC: it would never be
  // answered (nor handed back), and the client would hang.
  const worker = cluster.worker;
  let drained = false;
  let detached = !(worker && worker.isConnected());
  const maybeExit = () => {
    if (drained && detached) {
      console.log(`pid ${process.pid}: drained, exiting`);
      process.exit(0);
    }
  };

  // Stop accepting; the callback runs once every connection has ended.
  server.close(() => {
    drained = true;
    maybeExit();
  });
  // Keep-alive sockets with no request in flight would keep us alive.
  if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();

  if (!detached) {
    // Tell the primary to stop routing connections here; 'disconnect' fires
    // after it has acknowledged (connections still in the IPC pipe are
    // handed back to it and go to another worker).
    process.once('disconnect', () => {
      detached = true;
      maybeExit();
    });
    try {
      worker.disconnect();
    } catch (err) {
      console.error(`worker.disconnect failed: ${err.message}`);
      detached = true;
      maybeExit();
    }
  }
}

process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
// PM2 may ask for a graceful stop through IPC instead of a signal.
process.on('message', (msg) => {
  if (msg === 'shutdown') shutdown('shutdown message');
});

module.exports = { parseEnv };
