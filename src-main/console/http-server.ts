// The browser console: the renderer build and the console contract over HTTP, for servers without
// a desktop. Every request needs the access token (kept across restarts, see access.ts):
//   - opening /?token=… checks it, sets an HttpOnly SameSite=Strict cookie and redirects to /;
//   - API calls and events then carry the cookie (or an `Authorization: Bearer` header).
// No or wrong token: 401 — for the console's page, a sign-in page with a field for the token (no
// script, nothing of the console); for anything else, nothing but the error. Calls are `POST /api/call/<method>` (JSON in, JSON
// out, a custom header required so no other site's form can post); events are server-sent at
// `GET /api/events`. The Host header must name this server, against DNS rebinding.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import { createServer } from '../engine/node-http.js';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CONSOLE_EVENTS, type ApiErrorBody } from './contract.js';
import { ApiError, type ConsoleService } from './service.js';

export interface ConsoleServerOptions {
  service: ConsoleService;
  /** The built renderer (out/renderer). */
  rendererDir: string;
  /** Where to listen; loopback (127.0.0.1, else ::1) when absent. */
  host?: string;
  port?: number;
  /** The access token (the data directory's, access.ts); a random one when absent. */
  token?: string;
  log?: (line: string) => void;
}

export interface ConsoleServer {
  /** The URL to open, token included. */
  url: string;
  origin: string;
  token: string;
  /** Take a new access token (the old one and every cookie made from it are refused from now on). */
  setToken(token: string): void;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;
const COOKIE = 'bulwark_console';
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function cookieToken(req: http.IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === COOKIE) return value.join('=');
  }
  return undefined;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function fail(res: http.ServerResponse, status: number, code: ApiErrorBody['code'], error: string): void {
  send(res, status, { error, code } satisfies ApiErrorBody);
}

/** The sign-in page's own policy: no script at all, its inline style, and its one form sent here. */
const SIGN_IN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/**
 * What a browser gets for the console's page without a valid token: a page that says how to sign in
 * (not JSON), with a field for the token. Nothing of the console (no script, no data) is in it.
 */
function signInPage(res: http.ServerResponse, wrongToken: boolean): void {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Bulwark</title>
<style>
:root{color-scheme:light dark;font-family:system-ui,sans-serif;line-height:1.5}
body{margin:0;display:grid;min-height:100vh;place-items:center;background:Canvas;color:CanvasText}
main{max-width:30rem;margin:1rem;padding:1.25rem 1.5rem;border:1px solid color-mix(in srgb,CanvasText 20%,Canvas);border-radius:.6rem}
h1{font-size:1.3rem;margin:0 0 .5rem}p{margin:.5rem 0}code{font-size:.9em;overflow-wrap:anywhere}
label{display:block;font-weight:600;margin-top:1rem}input{box-sizing:border-box;width:100%;font:inherit;padding:.4rem .5rem;margin:.25rem 0 .75rem}
button{font:inherit;font-weight:600;padding:.4rem 1rem}.error{color:#b3261e;font-weight:600}
@media (prefers-color-scheme:dark){.error{color:#f2b8b5}}
</style></head>
<body><main>
<h1>Sign in to the Bulwark console</h1>
${wrongToken ? '<p class="error" role="alert">That access token is not this server\'s: it was mistyped, or replaced since.</p>' : ''}
<p>Open the address the server prints, or paste its access token here. On the server, this prints the address:</p>
<p><code>bulwark console-url --data DIR</code></p>
<form method="get" action="/">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required>
<button type="submit">Sign in</button>
</form>
</main></body></html>`;
  res.writeHead(401, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'content-security-policy': SIGN_IN_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  res.end(html);
}

/** A browser opening the console's page (not its API, events or files): it gets the sign-in page. */
const opensPage = (req: http.IncomingMessage, pathname: string) => req.method === 'GET' && (pathname === '/' || pathname === '/index.html');

/** A request body over MAX_BODY: refused (400) and the connection closed after the answer. */
class BodyTooLarge extends ApiError {
  constructor(message: string) {
    super(400, message);
  }
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new BodyTooLarge(`request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'request body is not valid JSON');
  }
}

export async function startConsoleServer(options: ConsoleServerOptions): Promise<ConsoleServer> {
  let token = options.token ?? crypto.randomBytes(24).toString('base64url');
  const rendererDir = path.resolve(options.rendererDir);
  if (!fs.existsSync(path.join(rendererDir, 'index.html'))) {
    throw new Error(`the console is not built (${path.join(rendererDir, 'index.html')} is missing): run npm run build`);
  }
  const log = options.log ?? (() => {});
  const allowedHosts = new Set<string>();
  const streams = new Set<http.ServerResponse>();

  const authorized = (req: http.IncomingMessage) => {
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const presented = bearer ?? cookieToken(req);
    return presented !== undefined && safeEqual(presented, token);
  };

  const serveFile = (res: http.ServerResponse, pathname: string) => {
    const file = path.resolve(rendererDir, '.' + (pathname === '/' ? '/index.html' : pathname));
    if (!file.startsWith(rendererDir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      fail(res, 404, 'not-found', 'not found');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
  };

  const server = createServer((req, res) => {
    void (async () => {
      if (!allowedHosts.has((req.headers.host ?? '').toLowerCase())) {
        fail(res, 400, 'bad-request', 'unexpected Host header');
        return;
      }
      const url = new URL(req.url ?? '/', 'http://console');
      const offered = url.searchParams.get('token');
      if (req.method === 'GET' && offered !== null) {
        if (!safeEqual(offered, token)) {
          if (opensPage(req, url.pathname)) signInPage(res, offered !== '');
          else fail(res, 401, 'unauthorized', 'missing or wrong access token');
          return;
        }
        url.searchParams.delete('token');
        res.writeHead(303, {
          'set-cookie': `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`,
          location: url.pathname + (url.search || '') + (url.hash || ''),
          'cache-control': 'no-store',
        });
        res.end();
        return;
      }
      if (!authorized(req)) {
        // A cookie from a replaced token is "wrong", no cookie at all is "not signed in yet".
        if (opensPage(req, url.pathname)) signInPage(res, cookieToken(req) !== undefined);
        else fail(res, 401, 'unauthorized', 'missing or wrong access token');
        return;
      }
      if (url.pathname === '/api/events' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(': connected\n\n');
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      }
      const call = /^\/api\/call\/([A-Za-z]+)$/.exec(url.pathname);
      if (call) {
        if (req.method !== 'POST') {
          fail(res, 405, 'bad-request', 'use POST');
          return;
        }
        if (req.headers['x-bulwark-console'] !== '1' || !(req.headers['content-type'] ?? '').startsWith('application/json')) {
          fail(res, 400, 'bad-request', 'calls need content-type: application/json and x-bulwark-console: 1');
          return;
        }
        try {
          const result = await options.service.call(call[1]!, await readJson(req), { via: 'console', who: `browser at ${req.socket.remoteAddress ?? 'an unknown address'}` });
          send(res, 200, result ?? null);
        } catch (error) {
          // The rest of an over-long body is never read: the connection cannot carry another request.
          if (error instanceof BodyTooLarge) res.setHeader('connection', 'close');
          if (error instanceof ApiError) fail(res, error.status, error.status === 404 ? 'not-found' : 'bad-request', error.message);
          else {
            log(`console call ${call[1]} failed: ${(error as Error).message}`);
            fail(res, 500, 'internal', 'internal error; see the server log');
          }
        }
        return;
      }
      if (req.method === 'GET' && !url.pathname.startsWith('/api/')) {
        serveFile(res, url.pathname);
        return;
      }
      fail(res, 404, 'not-found', 'not found');
    })();
  });

  const unsubscribe = options.service.on((event, payload) => {
    if (!CONSOLE_EVENTS.includes(event)) return;
    const message = `event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`;
    for (const stream of streams) stream.write(message);
  });
  // Keep idle proxies and browsers from dropping the event stream.
  const heartbeat = setInterval(() => {
    for (const stream of streams) stream.write(': ping\n\n');
  }, 25_000);
  heartbeat.unref();

  const listenOn = (host: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  if (options.host) await listenOn(options.host);
  else {
    // Loopback by default: IPv4's, or on a host without IPv4 (a pure IPv6 server) IPv6's.
    await listenOn('127.0.0.1').catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EADDRNOTAVAIL' && error.code !== 'EAFNOSUPPORT') throw error;
      return listenOn('::1');
    });
  }
  const address = server.address() as AddressInfo;
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const origin = `http://${hostPart}:${address.port}`;
  allowedHosts.add(`${hostPart}:${address.port}`.toLowerCase());
  allowedHosts.add(`localhost:${address.port}`);
  if (address.address === '0.0.0.0' || address.address === '::') {
    // Listening everywhere: accept this machine's own names too (the token still guards access).
    const { networkInterfaces, hostname } = await import('node:os');
    allowedHosts.add(`${hostname().toLowerCase()}:${address.port}`);
    for (const list of Object.values(networkInterfaces())) {
      for (const nic of list ?? []) allowedHosts.add(`${nic.family === 'IPv6' ? `[${nic.address}]` : nic.address}:${address.port}`.toLowerCase());
    }
  }
  const handle: ConsoleServer = {
    url: `${origin}/?token=${token}`,
    origin,
    token,
    setToken(next) {
      token = next;
      handle.token = next;
      handle.url = `${origin}/?token=${next}`;
      // Open event streams were let in with the old token: they end, and must come back with the new one.
      for (const stream of streams) stream.end();
      streams.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(heartbeat);
        unsubscribe();
        // End the event streams cleanly (browsers log a cut chunked stream), waiting half a second at most.
        const ended = [...streams].map((stream) => new Promise<void>((done) => stream.end(done)));
        void Promise.race([Promise.all(ended), new Promise((done) => setTimeout(done, 500))]).then(() => {
          server.closeAllConnections();
          server.close(() => resolve());
        });
      }),
  };
  return handle;
}
