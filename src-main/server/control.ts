// A local control channel to the process that holds a data directory (a server or an agent), so that
// `bulwark update --data DIR` asks the running process to update now instead of failing on its lock.
// HTTP over a Unix socket (a named pipe on Windows) that only the data directory's owner can open:
//   POST /update   joins or starts a run; answers with its record once the run (and, on a server,
//                  its distribution) is done
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { RunRecord } from '../engine/history.js';
import { bufferedRequest } from '../engine/http.js';
import { Agent } from '../engine/undici.js';

/** Unix socket paths are limited to about 100 bytes: long data directories get one in the temp dir. */
export function controlPath(dataDir: string): string {
  const hash = crypto.createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  if (process.platform === 'win32') return `\\\\.\\pipe\\bulwark-${hash}`;
  const inside = path.join(path.resolve(dataDir), 'control.sock');
  return Buffer.byteLength(inside) < 100 ? inside : path.join(os.tmpdir(), `bulwark-${hash}.sock`);
}

export interface ControlHandlers {
  update(): Promise<RunRecord>;
}

export async function startControl(dataDir: string, handlers: ControlHandlers, log: (line: string) => void = () => {}): Promise<{ close(): Promise<void> }> {
  const socket = controlPath(dataDir);
  // The caller holds the data directory's lock, so a socket file here is a dead process's.
  if (process.platform !== 'win32') fs.rmSync(socket, { force: true });
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/update') {
      res.writeHead(404).end();
      return;
    }
    handlers.update().then(
      (record) => {
        const body = JSON.stringify(record);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      },
      (error: unknown) => {
        log(`control: update failed: ${(error as Error).message}`);
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  if (process.platform !== 'win32') fs.chmodSync(socket, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          if (process.platform !== 'win32') fs.rmSync(socket, { force: true });
          resolve();
        });
      }),
  };
}

/** Ask the process holding `dataDir` to update; undefined when none answers. */
export async function requestUpdate(dataDir: string, timeoutMs = 30 * 60_000): Promise<RunRecord | undefined> {
  const socket = controlPath(dataDir);
  if (process.platform !== 'win32' && !fs.existsSync(socket)) return undefined;
  const dispatcher = new Agent({ connect: { socketPath: socket } });
  try {
    const response = await bufferedRequest('http://bulwark/update', { method: 'POST', dispatcher, timeoutMs, maxBytes: 16 * 1024 * 1024 });
    return response.status === 200 ? (JSON.parse(response.body.toString('utf8')) as RunRecord) : undefined;
  } catch {
    return undefined;
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}
