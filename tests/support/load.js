#!/usr/bin/env node
'use strict';
// Load generator for reload tests: node load.js <url> [concurrency=8] [seconds=10] [post_path]
// Without post_path every request uses a fresh connection (agent:false, Connection: close).
// With post_path (issue #19) the clients keep their connections open (http.Agent keepAlive,
// one socket per client) and send half GETs of <url>, half JSON POSTs of a trade to post_path.
// Any non-2xx status, connection error or timeout counts as a failure.
// SIGTERM stops it early.
// Prints {"requests":N,"failures":N,"errors":{...},"revisions":{rev:count}} and exits 0.
// Only loopback targets are allowed.

const http = require('http');

const [, , target, concArg, durArg, postPath] = process.argv;
if (!target) {
  console.error('usage: node load.js <url> [concurrency] [duration_seconds]');
  process.exit(2);
}
const url = new URL(target);
if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
  console.error('load.js: only http://127.0.0.1 / localhost targets are allowed');
  process.exit(2);
}
const concurrency = Math.max(1, Math.min(256, Number.parseInt(concArg || '8', 10) || 8));
const duration = Math.max(0.1, Math.min(120, Number.parseFloat(durArg || '10') || 10));
const deadline = Date.now() + duration * 1000;
const keepAlive = Boolean(postPath);
const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
const TRADE = JSON.stringify({ symbol: 'AAPL', side: 'buy', qty: 1, price: 100 });
let sent = 0;

const stats = { requests: 0, failures: 0, errors: {}, revisions: {} };

function fail(kind) {
  stats.failures += 1;
  stats.errors[kind] = (stats.errors[kind] || 0) + 1;
}

function once() {
  return new Promise((resolve) => {
    let settled = false;
    const done = () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    const post = keepAlive && sent++ % 2 === 1;
    const req = http.request(
      {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || 80,
        method: post ? 'POST' : 'GET',
        path: post ? postPath : url.pathname + url.search,
        agent,
        headers: post
          ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(TRADE) }
          : keepAlive ? {} : { Connection: 'close' },
        timeout: 5000,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (e) => {
          if (settled) return;
          stats.requests += 1;
          fail(`response:${e.code || e.message}`);
          done();
        });
        res.on('end', () => {
          if (settled) return;
          stats.requests += 1;
          if (res.statusCode < 200 || res.statusCode > 299) {
            fail(`${post ? 'POST' : 'GET'} status:${res.statusCode}`);
          } else {
            try {
              const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              if (body && Object.prototype.hasOwnProperty.call(body, 'revision')) {
                const rev = String(body.revision);
                stats.revisions[rev] = (stats.revisions[rev] || 0) + 1;
              }
            } catch (_) {
              // Non-JSON 2xx bodies are fine; nothing to tally.
            }
          }
          done();
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => {
      if (settled) return;
      stats.requests += 1;
      // A keep-alive request that failed on a connection it reused, or on a fresh one.
      const fresh = keepAlive && !req.reusedSocket ? ' (new connection)' : '';
      fail(`${post ? 'POST ' : ''}${e.code || e.message}${fresh}`);
      done();
    });
    req.end(post ? TRADE : undefined);
  });
}

// LOAD_PAUSE_MS=N: each client waits a random 0..N ms between requests, so keep-alive
// connections sit idle at times, as real clients' do (how the drain closes idle ones matters).
const pause = Math.max(0, Number(process.env.LOAD_PAUSE_MS) || 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function worker() {
  while (Date.now() < deadline) {
    await once();
    if (pause) await sleep(Math.random() * pause);
  }
}

function finish() {
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  process.exit(0);
}

// SIGTERM ends the load early with the stats so far (requests in flight are not counted), so
// a test can cover exactly the run it measures.
process.on('SIGTERM', finish);

Promise.all(Array.from({ length: concurrency }, worker)).then(finish);
