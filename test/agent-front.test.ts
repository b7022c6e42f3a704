// The native front (src-main/distribution/agent-front.ts, native/agent_front.c) beyond what it shares
// with the fast path (test/fast-path.test.ts runs those cases on it too): what it keeps under a head
// and when it lets go of it, many connections at once, an agent leaving in the middle of a large
// answer, and a thread that ends with the front open. Real sockets on loopback, real worker threads.
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentFront, frontAddon } from '../src-main/distribution/agent-front.js';
import { AGENT_LISTEN_BACKLOG, IMMUTABLE, ResponseCache, SHORT_LIVED, threadServing } from '../src-main/distribution/agent-http.js';
import { until } from './helpers/cli.js';
import { freePort } from './helpers/proxies.js';

const addon = frontAddon();
const ADDON_FILE = new URL('../native/build/Release/agent_front.node', import.meta.url).pathname;

interface Lab {
  port: number;
  front: AgentFront;
  cache: ResponseCache;
  /** URLs that reached node:http (handed over). */
  slow: string[];
  server: http.Server;
}

const labs: Lab[] = [];
afterEach(async () => {
  for (const lab of labs.splice(0)) {
    lab.front.close();
    await new Promise((resolve) => lab.server.close(resolve));
  }
});


async function start(cache = new ResponseCache(), timeouts = { keepAliveMs: 65_000, headersTimeoutMs: 30_000 }): Promise<Lab> {
  if (addon instanceof Error) throw addon;
  const slow: string[] = [];
  // connectionsCheckingInterval: how often node:http looks for heads past headersTimeout (30 s by default).
  const server = http.createServer({ connectionsCheckingInterval: 200 }, (req, res) => {
    slow.push(req.url ?? '');
    if (!cache.answer(req, res)) res.writeHead(404, { 'content-length': 0 }).end();
  });
  server.keepAliveTimeout = timeouts.keepAliveMs;
  server.headersTimeout = timeouts.headersTimeoutMs;
  const port = await freePort();
  const front = new AgentFront(addon, { serving: { ...threadServing(), cache }, server });
  front.listen('127.0.0.1', port, AGENT_LISTEN_BACKLOG);
  const lab = { port, front, cache, slow, server };
  labs.push(lab);
  return lab;
}

/** One kept-alive client connection: `ask` sends a GET and resolves with the answer's body. */
async function connect(port: number): Promise<{ ask: (url: string) => Promise<Buffer>; socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = Buffer.alloc(0);
  let waiting: ((body: Buffer) => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const end = received.indexOf('\r\n\r\n');
    if (end < 0 || !waiting) return;
    const length = Number(/content-length: (\d+)/i.exec(received.subarray(0, end).toString('latin1'))?.[1] ?? 0);
    if (received.length < end + 4 + length) return;
    const body = received.subarray(end + 4, end + 4 + length);
    received = received.subarray(end + 4 + length);
    const resolve = waiting;
    waiting = undefined;
    resolve(body);
  });
  const ask = (url: string) =>
    new Promise<Buffer>((resolve, reject) => {
      waiting = resolve;
      socket.once('close', () => reject(new Error(`closed before the answer to ${url}`)));
      socket.write(`GET ${url} HTTP/1.1\r\nHost: agents\r\n\r\n`);
    });
  return { ask, socket };
}

const HEADERS = { 'content-type': 'application/json', 'cache-control': SHORT_LIVED };

describe.skipIf(addon instanceof Error)('native front', () => {
  it('answers a head it was given the answer to on every connection, and asks again once the cache entry it came from is replaced', async () => {
    const lab = await start();
    lab.cache.put('/index', Buffer.from('{"release":1}'), HEADERS, 'a'.repeat(64));
    const first = await connect(lab.port);
    const second = await connect(lab.port);
    expect((await first.ask('/index')).toString()).toBe('{"release":1}');
    expect((await second.ask('/index')).toString()).toBe('{"release":1}');
    // A new release replaces the entry: no connection gets the old answer after it.
    lab.cache.put('/index', Buffer.from('{"release":2}'), HEADERS, 'b'.repeat(64));
    expect((await second.ask('/index')).toString()).toBe('{"release":2}');
    expect((await first.ask('/index')).toString()).toBe('{"release":2}');
    // Dropped from the cache: node:http's to answer (404 here), and the connection is node:http's from then on.
    lab.cache.drop((url) => url === '/index');
    expect((await first.ask('/index')).length).toBe(0);
    expect(lab.slow).toEqual(['/index']);
    expect(lab.front.connections()).toBe(1);
    expect(lab.front.answered()).toBe(4);
    first.socket.destroy();
    second.socket.destroy();
    await until(() => lab.front.connections() === 0, 5_000, 'the front to see the second connection close');
  });

  it('answers 300 connections at once, 5 requests each, every body whole', async () => {
    const lab = await start();
    const small = crypto.randomBytes(3_139);
    const large = crypto.randomBytes(200_000);
    lab.cache.put('/small', small, { 'content-type': 'application/octet-stream', 'cache-control': IMMUTABLE }, 'c'.repeat(64));
    lab.cache.put('/large', large, { 'content-type': 'application/octet-stream', 'cache-control': IMMUTABLE }, 'd'.repeat(64));
    const clients = await Promise.all(Array.from({ length: 300 }, () => connect(lab.port)));
    const results = await Promise.all(
      clients.map(async (client, i) => {
        const bodies: boolean[] = [];
        for (let n = 0; n < 5; n++) {
          const url = (i + n) % 4 === 0 ? '/large' : '/small';
          bodies.push((await client.ask(url)).equals(url === '/large' ? large : small));
        }
        return bodies;
      }),
    );
    expect(results.flat().every(Boolean)).toBe(true);
    expect(lab.front.answered()).toBe(1_500);
    expect(lab.front.connections()).toBe(300);
    expect(lab.slow).toEqual([]);
    for (const client of clients) client.socket.destroy();
    await until(() => lab.front.connections() === 0, 5_000, 'the front to see every connection close');
  });

  it('an agent that leaves in the middle of a large answer costs the others nothing', async () => {
    const cache = new ResponseCache(64 * 1024 * 1024, 8 * 1024 * 1024);
    const lab = await start(cache);
    const large = crypto.randomBytes(6 * 1024 * 1024);
    cache.put('/large', large, { 'content-type': 'application/octet-stream', 'cache-control': IMMUTABLE }, 'e'.repeat(64));
    for (let i = 0; i < 5; i++) {
      const leaving = net.connect(lab.port, '127.0.0.1');
      await new Promise((resolve) => leaving.once('connect', resolve));
      leaving.write('GET /large HTTP/1.1\r\nHost: agents\r\n\r\n');
      await new Promise((resolve) => leaving.once('data', resolve));
      leaving.destroy();
    }
    const staying = await connect(lab.port);
    expect((await staying.ask('/large')).equals(large)).toBe(true);
    staying.socket.destroy();
    await until(() => lab.front.connections() === 0, 5_000, 'the front to see every connection close');
  });

  it('closes a silent connection after the head timeout and an idle one after keep-alive', async () => {
    const lab = await start(new ResponseCache(), { keepAliveMs: 1_500, headersTimeoutMs: 1_500 });
    lab.cache.put('/index', Buffer.from('{}'), HEADERS, 'a'.repeat(64));
    const silent = net.connect(lab.port, '127.0.0.1');
    const idle = await connect(lab.port);
    const closed = (socket: net.Socket) => new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    const from = Date.now();
    const silentClosed = closed(silent);
    const idleClosed = closed(idle.socket);
    // Kept alive by asking: each answer moves its deadline on.
    for (let i = 0; i < 3; i++) {
      await idle.ask('/index');
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    const [silentAt, idleAt] = await Promise.all([silentClosed, idleClosed]);
    // The deadlines are checked once a second.
    expect(silentAt - from).toBeGreaterThanOrEqual(1_400);
    expect(silentAt - from).toBeLessThan(10_000);
    expect(idleAt - from).toBeGreaterThanOrEqual(2 * 700 + 1_400);
  });

  it('a head handed over unfinished still has node:http\'s head deadline (the server it goes to listens nowhere)', async () => {
    const lab = await start(new ResponseCache(), { keepAliveMs: 65_000, headersTimeoutMs: 1_000 });
    const slow = net.connect(lab.port, '127.0.0.1');
    await new Promise((resolve) => slow.once('connect', resolve));
    const from = Date.now();
    const closed = new Promise<number>((resolve) => slow.once('close', () => resolve(Date.now())));
    slow.on('data', () => {});
    slow.on('error', () => {});
    // A byte every 300 ms, the head never ended: node:http answers 408 and closes once its deadline passes.
    slow.write('GET /index HTTP/1.1\r\nHo');
    const drip = setInterval(() => slow.write('x'), 300);
    try {
      const at = await closed;
      expect(at - from).toBeGreaterThanOrEqual(900);
      expect(at - from).toBeLessThan(10_000);
      expect(lab.front.connections()).toBe(0);
    } finally {
      clearInterval(drip);
      slow.destroy();
    }
  });

  it('a thread that ends with the front listening and holding connections ends cleanly, and a closed front lets its thread end by itself', async () => {
    const port = await freePort();
    // The worker loads the addon as file-thread.ts does and holds a connection when it is told to end.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.file);
      const front = addon.createFront({ keepAliveMs: 65000, headersTimeoutMs: 30000, onHead: () => [Buffer.from('HTTP/1.1 200 OK\\r\\n'), Buffer.from('content-length: 2\\r\\n\\r\\n'), Buffer.from('ok')], onHandOver: () => {} });
      addon.listen(front, '127.0.0.1', workerData.port, 511);
      parentPort.on('message', (message) => {
        if (message === 'close') { addon.close(front); parentPort.close(); }
      });
      parentPort.postMessage('listening');
    `;
    for (const ending of ['terminate', 'close'] as const) {
      const worker = new Worker(code, { eval: true, workerData: { file: ADDON_FILE, port } });
      await new Promise((resolve) => worker.once('message', resolve));
      const client = await connect(port);
      expect((await client.ask('/anything')).toString()).toBe('ok');
      const clientClosed = new Promise((resolve) => client.socket.once('close', resolve));
      const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
      if (ending === 'terminate') await worker.terminate();
      else worker.postMessage('close');
      expect(await exited).toBe(ending === 'terminate' ? 1 : 0);
      await clientClosed;
    }
    // The port is free again: nothing of the fronts listens.
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => probe.close(resolve));
  });

  it('closes a connection JavaScript does not take over instead of leaving its descriptor open', async () => {
    if (addon instanceof Error) throw addon;
    const port = await freePort();
    const front = addon.createFront({
      keepAliveMs: 65_000,
      headersTimeoutMs: 30_000,
      onHead: () => undefined,
      // Declines: the descriptor is the front's to close.
      onHandOver: () => false,
    });
    try {
      addon.listen(front, '127.0.0.1', port, 16);
      const client = net.connect(port, '127.0.0.1');
      client.on('data', () => {});
      const closed = new Promise((resolve) => client.once('close', resolve));
      client.write('GET /x HTTP/1.1\r\nHost: agents\r\n\r\n');
      await closed;
      await until(() => addon.connections(front) === 0, 5_000, 'the front to let the connection go');
    } finally {
      addon.close(front);
    }
  });

  it('refuses to listen where listen(2) refuses, with its code, and on what is not an IP address', async () => {
    const lab = await start();
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      expect(() => lab.front.listen('127.0.0.1', (taken.address() as AddressInfo).port, 16)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
      expect(() => lab.front.listen('agents.example', 9, 16)).toThrow(/host must be an IP address/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
