'use strict';
// PM2's documented cluster config, nothing about draining: tj-deploy adds that.
const fs = require('fs');
const path = require('path');

// The port from the release's .env (linked from shared/), as the app has no dotenv of its own.
function port() {
  try {
    const m = fs.readFileSync(path.join(__dirname, '.env'), 'utf8').match(/^\s*PORT\s*=\s*["']?(\d+)/m);
    if (m) return m[1];
  } catch {
    // No .env: PORT from the environment.
  }
  return process.env.PORT || '3000';
}

module.exports = {
  apps: [
    {
      name: process.env.TJ_APP_NAME || 'plain',
      script: 'server.js',
      cwd: process.env.TJ_CURRENT || path.resolve(__dirname, '..', '..', 'current'),
      exec_mode: 'cluster',
      instances: 2,
      env: { PORT: port() },
    },
  ],
};
