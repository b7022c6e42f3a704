// A small static file server for a published update source: the demo serves its source with it,
// and tests use it as the real HTTP server on loopback. Read-only, GET and HEAD, no directory
// listings, nothing outside the root.
import fs from 'node:fs';
import type http from 'node:http';
import { createServer } from '../engine/node-http.js';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export function staticHandler(root: string): RequestHandler {
  const base = path.resolve(root);
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let file: string;
    try {
      file = path.resolve(base, '.' + decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (!file.startsWith(base + path.sep)) {
      res.writeHead(404).end();
      return;
    }
    fs.stat(file, (error, stat) => {
      if (error || !stat.isFile()) {
        res.writeHead(404, { 'content-length': 0 }).end();
        return;
      }
      res.writeHead(200, { 'content-length': stat.size, 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
      if (req.method === 'HEAD') res.end();
      else fs.createReadStream(file).pipe(res);
    });
  };
}

export interface RunningServer {
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

export async function listen(handler: RequestHandler, host = '127.0.0.1', port = 0): Promise<RunningServer> {
  const server = createServer(handler);
  // Longer than undici's 2 s idle threshold, so clients reuse connections as they would with a CDN.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${hostPart}:${address.port}/`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
