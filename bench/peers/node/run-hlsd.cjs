// run-hlsd.cjs — starts @warren-bank/hls-proxy's own CLI (`hlsd`, its README's
// "How to: Run the server(s)") with the arguments given, changing one thing: hlsd
// hard-codes server.listen(port, '0.0.0.0'), and bench/run.sh must bind loopback only,
// so '0.0.0.0' is replaced by '127.0.0.1' before the CLI runs. Nothing else is touched.
//
//   node run-hlsd.cjs --port 18430 -v -1
'use strict';
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[1] === '0.0.0.0') args[1] = '127.0.0.1';
  return listen.apply(this, args);
};
require('@warren-bank/hls-proxy/hls-proxy/bin/hlsd.js');
