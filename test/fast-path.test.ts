// The fast path in front of the agents' HTTP servers (src-main/distribution/fast-path.ts): what the
// response cache holds is answered on the socket, byte for byte what node:http answers; every other
// request — and every request after it on that connection — reaches node:http, which answers or
// refuses it as without the fast path. The same cases run again with the native front (agent-front.ts,
// native/agent_front.c) taking the connections before the fast path, as a file thread has it. Real
// servers on loopback, raw sockets as clients.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentFront, frontAddon } from '../src-main/distribution/agent-front.js';
import { AGENT_LISTEN_BACKLOG, ResponseCache, threadServing } from '../src-main/distribution/agent-http.js';
import { FastPath, PlainHeads, readPlainHead } from '../src-main/distribution/fast-path.js';
import { until } from './helpers/cli.js';
import { freePort } from './helpers/proxies.js';

const SMALL = Buffer.alloc(3_500, 'a');
const LARGE = Buffer.alloc(100_000, 'b');
const HEADERS = { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=31536000, immutable', 'accept-ranges': 'bytes' };

interface Lab {
  port: number;
  server: http.Server;
  fastPath: FastPath;
  front: AgentFront | undefined;
  /** Requests answered by the fast path (and the native front, when it runs). */
  fast: () => number;
  /** URLs that reached node:http's request listener. */
  slow: string[];
  /** End every connection, the native front's too. */
  closeAll: () => void;
}

const labs: Lab[] = [];
afterEach(async () => {
  for (const lab of labs.splice(0)) {
    lab.closeAll();
    await new Promise((resolve) => lab.server.close(resolve));
  }
});

/** Who takes the connections: the fast path on node's own listening socket, or the native front before it. */
type Mode = 'fast path' | 'native front';
const addon = frontAddon();
const MODES: Mode[] = addon instanceof Error ? ['fast path'] : ['fast path', 'native front'];
let mode: Mode = 'fast path';


async function start(configure: (server: http.Server) => void = () => {}, cache = new ResponseCache()): Promise<Lab> {
  cache.put('/small', SMALL, HEADERS, 'e'.repeat(64));
  cache.put('/large', LARGE, HEADERS, 'f'.repeat(64));
  const slow: string[] = [];
  // node:http's side answers from the same cache, as the agents' request listener does.
  const server = http.createServer((req, res) => {
    slow.push(req.url ?? '');
    if (!cache.answer(req, res)) res.writeHead(404, { 'content-length': 0 }).end();
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 30_000;
  configure(server);
  let fast = 0;
  const heads = new PlainHeads();
  const fastPath = new FastPath(server, cache, heads, () => fast++);
  let front: AgentFront | undefined;
  let port: number;
  if (mode === 'native front' && !(addon instanceof Error)) {
    port = await freePort();
    front = new AgentFront(addon, { serving: { ...threadServing(), cache, heads }, server });
    front.listen('127.0.0.1', port, AGENT_LISTEN_BACKLOG);
  } else {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  }
  const lab: Lab = {
    port,
    server,
    fastPath,
    front,
    fast: () => (fast += front?.answered() ?? 0),
    slow,
    closeAll: () => {
      front?.close();
      fastPath.closeAllConnections();
    },
  };
  labs.push(lab);
  return lab;
}

interface Answer {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** When the client had read it whole (Date.now()). */
  at: number;
}

/**
 * Write `parts` on one connection (a pause between them) and read `count` answers; HEAD answers
 * and 304s have no body. Resolves with the answers and whether the server then closed the connection.
 */
function exchange(port: number, parts: string[], count: number, { heads = 0, readAfterMs = 0, end = false } = {}): Promise<{ answers: Answer[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const answers: Answer[] = [];
    let headsLeft = heads;
    const parse = () => {
      for (;;) {
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine = '', ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
        const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
        const status = Number(statusLine.split(' ')[1]);
        const bodyless = status === 304 || (status === 200 && headsLeft > 0 && answers.length < heads);
        const length = bodyless ? 0 : Number(headers.get('content-length') ?? 0);
        if (received.length < end + 4 + length) return;
        if (bodyless && status === 200) headsLeft--;
        answers.push({ status, headers, body: received.subarray(end + 4, end + 4 + length), at: Date.now() });
        received = received.subarray(end + 4 + length);
        if (answers.length === count) {
          socket.removeAllListeners('close');
          // Closed by the server right after its last answer (Connection: close), or still open?
          setTimeout(() => {
            resolve({ answers, closed: socket.readableEnded || socket.destroyed });
            socket.destroy();
          }, 100);
        }
      }
    };
    socket.pause();
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      parse();
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed after ${answers.length} of ${count} answers`)));
    socket.once('connect', async () => {
      for (const [i, part] of parts.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, 50));
        socket.write(part, 'latin1');
      }
      if (end) socket.end();
      setTimeout(() => socket.resume(), readAfterMs);
    });
  });
}

const get = (url: string, fields = 'Host: agents\r\n') => `GET ${url} HTTP/1.1\r\n${fields}\r\n`;

describe.each(MODES)('%s', (each) => {
  beforeEach(() => {
    mode = each;
  });

  it('answers a cached file with the status line, fields and body node:http gives it', async () => {
    const lab = await start();
    const sent = Date.now();
    // Content-Length: 0 on a GET is valid and leaves the request to node:http.
    const { answers, closed } = await exchange(lab.port, [get('/small'), get('/small', 'Host: agents\r\nContent-Length: 0\r\n')], 2);
    expect(lab.fast()).toBe(1);
    expect(lab.slow).toEqual(['/small']);
    const [fast, slow] = answers as [Answer, Answer];
    expect(fast.status).toBe(200);
    expect(fast.body.equals(SMALL)).toBe(true);
    expect(slow.body.equals(SMALL)).toBe(true);
    // Every field the same, Date aside: the two answers may fall in different seconds (a loaded machine).
    const { date: fastDate, ...fastFields } = Object.fromEntries(fast.headers);
    const { date: slowDate, ...slowFields } = Object.fromEntries(slow.headers);
    expect(fastFields).toEqual(slowFields);
    expect(Object.keys(fastFields).sort()).toEqual(['accept-ranges', 'cache-control', 'connection', 'content-length', 'content-type', 'etag', 'keep-alive']);
    expect(fast.headers.get('etag')).toBe(`"${'e'.repeat(64)}"`);
    expect(fast.headers.get('keep-alive')).toBe('timeout=65');
    // Each Date is an IMF-fixdate (RFC 9110 §5.6.7) naming the second its answer was made in: not
    // before the requests were sent, not after the answer was read, and the fast answer's not after node:http's.
    const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;
    for (const [answer, date] of [[fast, fastDate], [slow, slowDate]] as const) {
      expect(date).toMatch(IMF_FIXDATE);
      expect(Date.parse(date!)).toBeGreaterThanOrEqual(Math.floor(sent / 1000) * 1000);
      expect(Date.parse(date!)).toBeLessThanOrEqual(answer.at);
    }
    expect(Date.parse(fastDate!)).toBeLessThanOrEqual(Date.parse(slowDate!));
    expect(closed).toBe(false);
  });

  it('answers HEAD, a matching If-None-Match with 304, and large files, on one kept-alive connection', async () => {
    const lab = await start();
    const requests = ['HEAD /small HTTP/1.1\r\nHost: agents\r\n\r\n', get('/small', `Host: agents\r\nIf-None-Match: "${'e'.repeat(64)}"\r\n`), get('/large'), get('/small', 'host: agents\r\nIF-NONE-MATCH: "other"\r\nConnection: Keep-Alive\r\n')];
    const { answers, closed } = await exchange(lab.port, requests, 4, { heads: 1 });
    expect(answers.map((a) => a.status)).toEqual([200, 304, 200, 200]);
    expect(answers[0]!.headers.get('content-length')).toBe(String(SMALL.length));
    expect(answers[0]!.body.length).toBe(0);
    expect(answers[1]!.headers.get('etag')).toBe(`"${'e'.repeat(64)}"`);
    expect(answers[1]!.headers.get('cache-control')).toBe(HEADERS['cache-control']);
    expect(answers[2]!.body.equals(LARGE)).toBe(true);
    expect(answers[3]!.body.equals(SMALL)).toBe(true);
    expect(lab.fast()).toBe(4);
    expect(lab.slow).toEqual([]);
    expect(closed).toBe(false);
  });

  it('answers an agent that ends its side after its requests, then ends the connection', async () => {
    const lab = await start();
    const { answers, closed } = await exchange(lab.port, [get('/small') + get('/large')], 2, { end: true });
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers[1]!.body.equals(LARGE)).toBe(true);
    expect(lab.fast()).toBe(2);
    expect(closed).toBe(true);
  });

  it('hands a connection to node:http at its first request not cached, the rest in order', async () => {
    const lab = await start();
    const { answers } = await exchange(lab.port, [get('/small') + get('/missing') + get('/small')], 3);
    expect(answers.map((a) => a.status)).toEqual([200, 404, 200]);
    expect(answers[2]!.body.equals(SMALL)).toBe(true);
    expect(lab.fast()).toBe(1);
    expect(lab.slow).toEqual(['/missing', '/small']);
  });

  // Each of these is node:http's to answer or refuse, as if there were no fast path.
  const leftToNodeHttp: [string, string[], number][] = [
    ['HTTP/1.0', ['GET /small HTTP/1.0\r\nHost: agents\r\n\r\n'], 200],
    ['a head split over two reads', ['GET /small HTTP/1.1\r\nHo', 'st: agents\r\n\r\n'], 200],
    ['a Range', [get('/small', 'Host: agents\r\nRange: bytes=0-9\r\n')], 206],
    ['a chunked body', [get('/small', 'Host: agents\r\nTransfer-Encoding: chunked\r\n') + '0\r\n\r\n'], 200],
    ['Connection: close', [get('/small', 'Host: agents\r\nConnection: close\r\n')], 200],
    ['no Host', [get('/small', '')], 400],
    ['two Hosts', [get('/small', 'Host: a\r\nHost: b\r\n')], 200],
    ['a space before the colon', [get('/small', 'Host : agents\r\n')], 400],
    ['a control character in a value', [get('/small', 'Host: agents\r\nX-Note: a\x01b\r\n')], 400],
    ['a folded line', [get('/small', 'Host: agents\r\nX-Note: a\r\n b\r\n')], 400],
    ['a bare LF inside the head', ['GET /small HTTP/1.1\r\nHost: agents\nX-Note: a\r\n\r\n'], 400],
    ['a head over 16 kB', [get('/small', `Host: agents\r\nX-Pad: ${'p'.repeat(20_000)}\r\n`)], 431],
    ['a lowercase method', ['get /small HTTP/1.1\r\nHost: agents\r\n\r\n'], 400],
  ];
  for (const [what, parts, status] of leftToNodeHttp) {
    it(`leaves ${what} to node:http (${status})`, async () => {
      const lab = await start();
      const { answers } = await exchange(lab.port, parts, 1);
      expect(answers[0]!.status).toBe(status);
      expect(lab.fast()).toBe(0);
      if (status < 400) expect(lab.slow).toEqual(['/small']);
    });
  }

  it('answers a file held open (over the in-memory limit) by positioned reads: whole on the fast path, in order after others, a range through node:http; it stays readable once removed from disk and is closed when evicted', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-open-'));
    try {
      const random = crypto.randomBytes(3 * 1024 * 1024 + 17); // over the 1 MiB limit below, and not a multiple of the read size
      const files = ['big-a', 'big-b', 'big-c'].map((name) => path.join(dir, name));
      for (const file of files) fs.writeFileSync(file, random);
      const cache = new ResponseCache(64 * 1024 * 1024, 64 * 1024, 1024 * 1024, 4 * 1024 * 1024, 2);
      cache.put('/small', SMALL, HEADERS, 'e'.repeat(64));
      const openFds = () => fs.readdirSync('/proc/self/fd').filter((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir); } catch { return false; } }).length;
      expect(cache.keep('/big-a', files[0]!, HEADERS, 'a'.repeat(64))!.body).toBeUndefined();
      const lab = await start(() => {}, cache);
      fs.rmSync(files[0]!); // pruned from disk: the file held open still answers
      const { answers } = await exchange(lab.port, [get('/small') + get('/big-a'), get('/big-a'), get('/big-a', 'Host: agents\r\nRange: bytes=1048570-1048579\r\n'), get('/small')], 5);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 206, 200]);
      for (const whole of [answers[1]!, answers[2]!]) {
        expect(whole.body.equals(random)).toBe(true);
        expect(whole.headers.get('content-length')).toBe(String(random.length));
      }
      expect(answers[3]!.body.equals(random.subarray(1048570, 1048580))).toBe(true);
      expect(answers[3]!.headers.get('content-range')).toBe(`bytes 1048570-1048579/${random.length}`);
      expect(lab.fast()).toBe(3);
      expect(lab.slow).toEqual(['/big-a', '/small']);
      expect(openFds()).toBe(1);
      // The answers, one after another, read through one buffer, kept for the next.
      expect(cache.chunks.bytesRead).toBe(2 * random.length + 10);
      expect(cache.chunks.kept).toBe(1);
      // Two held open at most: the oldest is closed when a third comes.
      cache.keep('/big-b', files[1]!, HEADERS, 'b'.repeat(64));
      cache.keep('/big-c', files[2]!, HEADERS, 'c'.repeat(64));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(openFds()).toBe(2);
      const again = await exchange(lab.port, [get('/big-a'), get('/big-c')], 2);
      expect(again.answers.map((a) => a.status)).toEqual([404, 200]);
      expect(again.answers[1]!.body.equals(random)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads each held-open answer through one buffer, kept for the next answer, but not one whose answer was cut short (a write may still hold it); lets them go when told', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-chunks-'));
    try {
      const random = crypto.randomBytes(8 * 1024 * 1024); // more than the socket buffers hold for a client that reads nothing
      fs.writeFileSync(path.join(dir, 'big'), random);
      const cache = new ResponseCache(64 * 1024 * 1024, 64 * 1024, 1024 * 1024);
      cache.keep('/big', path.join(dir, 'big'), HEADERS, 'a'.repeat(64));
      const lab = await start(() => {}, cache);
      const serverSides: net.Socket[] = [];
      lab.server.on('connection', (socket: net.Socket) => serverSides.push(socket));
      const first = await exchange(lab.port, [get('/big')], 1);
      expect(first.answers[0]!.body.equals(random)).toBe(true);
      expect(cache.chunks.kept).toBe(1);
      // A client that asks and reads nothing: its answer stalls with a write in flight, in the kept buffer.
      const client = net.connect(lab.port, '127.0.0.1', () => client.write(get('/big')));
      await until(() => cache.chunks.bytesRead > random.length, 5_000, 'the second answer to start');
      expect(cache.chunks.kept).toBe(0);
      const closed = new Promise((resolve) => serverSides.at(-1)!.once('close', resolve));
      client.destroy();
      await closed;
      await new Promise((resolve) => setImmediate(resolve));
      expect(cache.chunks.kept).toBe(0);
      const next = await exchange(lab.port, [get('/big')], 1);
      expect(next.answers[0]!.body.equals(random)).toBe(true);
      expect(cache.chunks.kept).toBe(1);
      cache.chunks.release();
      expect(cache.chunks.kept).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an agent that does not read its answers is left to node:http\'s back-pressure, every answer still in order', async () => {
    const lab = await start();
    const count = 300; // 30 MB of answers: more than the socket buffers hold
    const { answers } = await exchange(lab.port, [Array.from({ length: count }, () => get('/large')).join('')], count, { readAfterMs: 300 });
    expect(answers.every((a) => a.status === 200 && a.body.equals(LARGE))).toBe(true);
    if (lab.front) {
      // The front writes what the socket takes and the rest as it drains, reading no request meanwhile.
      expect(lab.fast()).toBe(count);
      expect(lab.slow).toEqual([]);
      return;
    }
    expect(lab.fast()).toBeGreaterThan(0);
    expect(lab.fast()).toBeLessThan(count);
    expect(lab.fast() + lab.slow.length).toBe(count);
  });

  it('closes an idle connection after keepAliveTimeout, a silent one after headersTimeout', async () => {
    const lab = await start((server) => {
      server.keepAliveTimeout = 300;
      server.headersTimeout = 300;
    });
    const closedWithin = (socket: net.Socket) => {
      const from = Date.now();
      return new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - from)));
    };
    const silent = net.connect(lab.port, '127.0.0.1');
    const idle = net.connect(lab.port, '127.0.0.1');
    idle.on('data', () => {});
    idle.write(get('/small'));
    const [silentMs, idleMs] = await Promise.all([closedWithin(silent), closedWithin(idle)]);
    expect(lab.fast()).toBe(1);
    expect(silentMs).toBeLessThan(5_000);
    expect(idleMs).toBeLessThan(5_000);
  });

  it('closeAllConnections ends the connections on the fast path and those handed to node:http, so that the server can close', async () => {
    const lab = await start();
    const open = async (request: string) => {
      const socket = net.connect(lab.port, '127.0.0.1');
      const closed = new Promise((resolve) => socket.on('close', resolve));
      await new Promise<void>((resolve) => socket.once('data', () => resolve()).write(request));
      return { closed };
    };
    const closed = [(await open(get('/small'))).closed, (await open(get('/missing'))).closed];
    expect(lab.fast()).toBe(1);
    expect(lab.slow).toEqual(['/missing']);
    lab.closeAll();
    await Promise.all(closed);
    labs.splice(labs.indexOf(lab), 1);
    await new Promise((resolve) => lab.server.close(resolve));
  });
});

describe('readPlainHead', () => {
  it('holds content-addressed files of a few MB for the fast path, in their own budget', () => {
    const cache = new ResponseCache(64 * 1024 * 1024, 1024 * 1024, 8 * 1024 * 1024, 5 * 1024 * 1024);
    const twoMb = (fill: string) => Buffer.alloc(2 * 1024 * 1024, fill);
    cache.put('/a', twoMb('a'), HEADERS, 'a'.repeat(64));
    cache.put('/changing', twoMb('c'), { ...HEADERS, 'cache-control': 'no-cache' }, 'c'.repeat(64));
    cache.put('/small', SMALL, HEADERS, 'e'.repeat(64));
    cache.put('/b', twoMb('b'), HEADERS, 'b'.repeat(64));
    cache.put('/too-large', Buffer.alloc(9 * 1024 * 1024), HEADERS, 'd'.repeat(64));
    const socket = { write: () => true } as unknown as net.Socket;
    const held = (url: string) => cache.answerOnSocket(socket, { method: 'HEAD', url, ifNoneMatch: undefined }, '');
    expect(['/a', '/b', '/small', '/changing', '/too-large'].map(held)).toEqual([true, true, true, false, false]);
    cache.put('/c', twoMb('c'), HEADERS, 'f'.repeat(64)); // over the 5 MB budget: the oldest large one goes, the small one stays
    expect(['/a', '/b', '/c', '/small'].map(held)).toEqual([false, true, true, true]);
  });

  it('reads method, target and If-None-Match; trims optional whitespace', () => {
    expect(readPlainHead('GET /a/b.json?x=1 HTTP/1.1\r\nHost: h\r\nIf-None-Match: \t"x" \r\nAccept: */*')).toEqual({ method: 'GET', url: '/a/b.json?x=1', ifNoneMatch: '"x"' });
    expect(readPlainHead('HEAD / HTTP/1.1\r\nhost:h')).toEqual({ method: 'HEAD', url: '/', ifNoneMatch: undefined });
  });

  it('takes nothing unusual', () => {
    for (const head of [
      'POST / HTTP/1.1\r\nHost: h',
      'GET http://h/ HTTP/1.1\r\nHost: h',
      'GET * HTTP/1.1\r\nHost: h',
      'GET /a b HTTP/1.1\r\nHost: h',
      'GET /é HTTP/1.1\r\nHost: h',
      'GET / HTTP/1.1 \r\nHost: h',
      '\r\nGET / HTTP/1.1\r\nHost: h',
      'GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: "a"\r\nIf-None-Match: "b"',
      'GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket',
      'GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue',
      'GET / HTTP/1.1\r\nHost: h\r\n: empty name',
      'GET / HTTP/1.1\r\nHost: h\r\nX-Note: a\x7fb',
    ]) {
      expect(readPlainHead(head), JSON.stringify(head)).toBeUndefined();
    }
  });
});

describe('PlainHeads', () => {
  const head = (n: number) => `GET /targets/${n} HTTP/1.1\r\nHost: h`;

  it('reads a head once and remembers what it read as, a refusal too; a long head is read each time', () => {
    const heads = new PlainHeads();
    const first = heads.read(head(1));
    expect(first).toEqual({ method: 'GET', url: '/targets/1', ifNoneMatch: undefined });
    // The very object read the first time: not read again.
    expect(heads.read(head(1))).toBe(first);
    expect(heads.read('POST / HTTP/1.1\r\nHost: h')).toBeUndefined();
    expect(heads.read('POST / HTTP/1.1\r\nHost: h')).toBeUndefined();
    const long = `${head(2)}\r\nX-Note: ${'a'.repeat(600)}`;
    const once = heads.read(long);
    expect(once).toEqual({ method: 'GET', url: '/targets/2', ifNoneMatch: undefined });
    expect(heads.read(long)).not.toBe(once);
    expect(heads.read(long)).toEqual(once);
  });

  it('is emptied when full (256 heads), so a stream of distinct heads holds at most that many', () => {
    const heads = new PlainHeads();
    const first = heads.read(head(0));
    for (let i = 1; i < 256; i++) heads.read(head(i));
    expect(heads.read(head(0))).toBe(first);
    heads.read(head(256)); // the 257th: the heads read so far are forgotten
    expect(heads.read(head(0))).not.toBe(first);
  });
});
