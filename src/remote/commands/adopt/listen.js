'use strict';
// tj-deploy `setup --adopt`: tells the handover when this worker listens. Preloaded into the
// workers the adoption starts; on a server's 'listening' it writes <this dir>/adopt-listen/<pid>
// while that directory exists (only during an adoption) and does nothing otherwise, so it is
// harmless when PM2 restarts the worker later with the same node_args.
(function tjListen() {
  if (global.__tjDeployListen) return;
  global.__tjDeployListen = true;
  const fs = require('fs');
  const net = require('net');
  const path = require('path');
  const mark = path.join(__dirname, 'adopt-listen', String(process.pid));
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function tjListenWrapped(...args) {
    this.once('listening', () => {
      try {
        fs.writeFileSync(mark, '');
      } catch {
        // Not adopting: nothing to tell.
      }
    });
    return listen.apply(this, args);
  };
})();
