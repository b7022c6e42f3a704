// A published update source served over HTTP by the project's own static server (the compiled
// src-main/demo/static-server.js), for running inside a network namespace:
//   node serve-static.mjs ROOT HOST PORT
// Prints "listening URL" once it accepts connections, then one "request ADDRESS METHOD PATH" line
// per request, so a test can tell who fetched what (the proxy, or the server directly).
import { listen, staticHandler } from '../../out/main/demo/static-server.js';

const [root, host, port] = process.argv.slice(2);
if (!root || !host || !port) {
  process.stderr.write('usage: serve-static.mjs ROOT HOST PORT\n');
  process.exit(2);
}
const serveFile = staticHandler(root);
const server = await listen(
  (req, res) => {
    process.stdout.write(`request ${req.socket.remoteAddress} ${req.method} ${req.url}\n`);
    serveFile(req, res);
  },
  host,
  Number(port),
);
process.stdout.write(`listening ${server.url}\n`);
const stop = () => void server.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
