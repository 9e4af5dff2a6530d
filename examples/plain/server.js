'use strict';
// The plainest Node app (issue #19): http.createServer with no shutdown handling of its own,
// as most apps are written. tj-deploy's drain preload is what keeps its reloads lossless.
const http = require('http');
const fs = require('fs');
const path = require('path');

let revision = 'unknown';
try {
  revision = fs.readFileSync(path.join(__dirname, 'REVISION'), 'utf8').trim();
} catch {
  // Not deployed by tj-deploy.
}

http
  .createServer((req, res) => {
    const reply = (status, body) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/api/health') return reply(200, { status: 'healthy', revision });
    if (req.method === 'POST' && req.url === '/api/trades') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        try {
          reply(201, { trade: JSON.parse(Buffer.concat(chunks).toString('utf8')), revision });
        } catch {
          reply(400, { error: 'body must be JSON' });
        }
      });
      return undefined;
    }
    return reply(404, { error: 'not found' });
  })
  .listen(Number(process.env.PORT) || 3000, process.env.HOST || '127.0.0.1');
