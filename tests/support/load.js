#!/usr/bin/env node
'use strict';
// Load generator for reload tests: node load.js <url> [concurrency=8] [seconds=10]
// Every request uses a fresh connection (agent:false, Connection: close).
// Any non-2xx status, connection error or timeout counts as a failure.
// SIGTERM stops it early.
// Prints {"requests":N,"failures":N,"errors":{...},"revisions":{rev:count}} and exits 0.
// Only loopback targets are allowed.

const http = require('http');

const [, , target, concArg, durArg] = process.argv;
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
    const req = http.get(
      {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || 80,
        path: url.pathname + url.search,
        agent: false,
        headers: { Connection: 'close' },
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
            fail(`status:${res.statusCode}`);
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
      fail(e.code || e.message);
      done();
    });
  });
}

async function worker() {
  while (Date.now() < deadline) {
    await once();
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
