// A local control channel to the process that holds a data directory (a server or an agent), so that
// `bulwark update --data DIR` asks the running process to update now instead of failing on its lock.
// HTTP over a Unix socket (a named pipe on Windows) that only the data directory's owner can open:
//   POST /update   joins or starts a run; answers with its record once the run (and, on a server,
//                  its distribution) is done
//   POST /change   an operator's pin, unpin or rollback (Engine.change); answers with its record
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { ComponentChange } from '../engine/engine.js';
import { BulwarkError, describeError } from '../engine/errors.js';
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
  change(request: ComponentChange): Promise<RunRecord>;
}

export async function startControl(dataDir: string, handlers: ControlHandlers, log: (line: string) => void = () => {}): Promise<{ close(): Promise<void> }> {
  const socket = controlPath(dataDir);
  // The caller holds the data directory's lock, so a socket file here is a dead process's.
  if (process.platform !== 'win32') fs.rmSync(socket, { force: true });
  const answer = (res: http.ServerResponse, work: Promise<RunRecord>) =>
    work.then(
      (record) => {
        const body = JSON.stringify(record);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      },
      (error: unknown) => {
        // Refusals (a version not kept, metadata that does not verify) go back to the command that asked.
        const body = JSON.stringify({ error: describeError(error), ...(error instanceof BulwarkError ? { code: error.code } : {}) });
        res.writeHead(error instanceof BulwarkError ? 409 : 500, { 'content-type': 'application/json' }).end(body);
        if (!(error instanceof BulwarkError)) log(`control: ${describeError(error)}`);
      },
    );
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/update') return void answer(res, handlers.update());
    if (req.method === 'POST' && req.url === '/change') {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        let request: ComponentChange;
        try {
          request = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ComponentChange;
        } catch {
          res.writeHead(400).end();
          return;
        }
        void answer(res, handlers.change(request));
      });
      return;
    }
    res.writeHead(404).end();
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

/** What the process holding a data directory answered: a record, or a refusal with its reason. */
export type ControlAnswer = { record: RunRecord } | { refused: string; code?: string };

/** Ask the process holding `dataDir` to make an operator's change; undefined when none answers. */
export async function requestChange(dataDir: string, request: ComponentChange): Promise<ControlAnswer | undefined> {
  const socket = controlPath(dataDir);
  if (process.platform !== 'win32' && !fs.existsSync(socket)) return undefined;
  const dispatcher = new Agent({ connect: { socketPath: socket } });
  try {
    const response = await bufferedRequest('http://bulwark/change', { method: 'POST', body: JSON.stringify(request), headers: { 'content-type': 'application/json' }, dispatcher, timeoutMs: 30 * 60_000, maxBytes: 16 * 1024 * 1024 });
    const json = JSON.parse(response.body.toString('utf8')) as RunRecord & { error?: string; code?: string };
    if (response.status === 200) return { record: json };
    return response.status === 409 ? { refused: json.error ?? 'refused', ...(json.code ? { code: json.code } : {}) } : undefined;
  } catch {
    return undefined;
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
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
