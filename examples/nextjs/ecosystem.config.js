'use strict';
// PM2's documented cluster setup for Next.js: PM2 cluster mode require()s `script` inside each
// worker, so it must be Next's own entry point (never `npm`), started from the `current`
// symlink (PM2 keeps the resolved cwd), with no `wait_ready`: `next start` never sends 'ready'.
const fs = require('fs');
const path = require('path');

const current = process.env.TJ_CURRENT || path.resolve(__dirname, '..', '..', 'current');

// `next start` takes its port from the command line or PORT, not from .env: read it there.
function port() {
  try {
    const m = fs.readFileSync(path.join(__dirname, '.env'), 'utf8').match(/^\s*(?:export\s+)?PORT\s*=\s*["']?(\d+)/m);
    if (m) return m[1];
  } catch {
    // No .env: Next's default.
  }
  return process.env.PORT || '3000';
}

module.exports = {
  apps: [
    {
      name: process.env.TJ_APP_NAME || 'trading-journal',
      script: 'node_modules/next/dist/bin/next',
      args: `start -p ${port()}`,
      cwd: current,
      exec_mode: 'cluster',
      instances: 2,
      kill_timeout: 5000,
      env: {
        NODE_ENV: 'production',
        NEXT_TELEMETRY_DISABLED: '1',
      },
    },
  ],
};
