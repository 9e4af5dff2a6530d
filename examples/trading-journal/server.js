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
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '') || '/'}`;
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

server.listen(PORT, () => {
  console.log(`trading-journal ${VERSION} (${readRevision() || 'no revision'}) listening on :${PORT}, pid ${process.pid}`);
  if (typeof process.send === 'function') process.send('ready');
});

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
