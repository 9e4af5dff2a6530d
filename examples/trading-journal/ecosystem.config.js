'use strict';
// PM2 ecosystem for the trading-journal sample app.
//
// The app lives at <deploy_dir>/releases/<id>/ and <deploy_dir>/current points
// at it. PM2 remembers the cwd it was started with, so `cwd` is the `current`
// symlink path (never the resolved release path): a later
// `pm2 startOrReload ecosystem.config.js --update-env` then starts the new
// workers inside whatever release `current` points at.
const path = require('path');

const current = process.env.TJ_CURRENT || path.resolve(__dirname, '..', '..', 'current');

module.exports = {
  apps: [
    {
      name: process.env.TJ_APP_NAME || 'trading-journal',
      script: 'server.js',
      cwd: current,
      exec_mode: 'cluster',
      // Fleet tests run several hosts on two cores: TJ_INSTANCES=1 there.
      instances: Number(process.env.TJ_INSTANCES) || 2,
      wait_ready: true,
      listen_timeout: 10000,
      kill_timeout: 5000,
      autorestart: true,
      env: {
        NODE_ENV: 'production',
      },
    },
  ],
};
