// One plain TCP connect (no Happy Eyeballs), to tell a black hole from a refusal:
//   node connect-probe.mjs HOST PORT TIMEOUT_MS
// Resolves HOST the way net.connect does (getaddrinfo with AI_ADDRCONFIG, the resolver's order),
// connects to the FIRST address only, and prints one JSON line:
//   {"addresses":[{address,family}…],"address","outcome":"connected"|"timeout"|"error","code"?,"ms"}
import dns from 'node:dns';
import net from 'node:net';

const [host, portText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const timeoutMs = Number(timeoutText);
if (!host || !(port > 0) || !(timeoutMs > 0)) {
  process.stderr.write('usage: connect-probe.mjs HOST PORT TIMEOUT_MS\n');
  process.exit(2);
}
const addresses = await dns.promises.lookup(host, { all: true, hints: dns.ADDRCONFIG });
const address = addresses[0].address;
const started = performance.now();
const result = await new Promise((resolve) => {
  const socket = net.connect({ host: address, port, autoSelectFamily: false });
  const timer = setTimeout(() => finish({ outcome: 'timeout' }), timeoutMs);
  const finish = (outcome) => {
    clearTimeout(timer);
    socket.destroy();
    resolve({ ...outcome, ms: Math.round(performance.now() - started) });
  };
  socket.once('connect', () => finish({ outcome: 'connected' }));
  socket.once('error', (error) => finish({ outcome: 'error', code: error.code }));
});
process.stdout.write(JSON.stringify({ addresses, address, ...result }) + '\n');
