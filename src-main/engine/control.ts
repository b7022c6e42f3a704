// A local control channel to the process that holds a data directory (a server or an agent), so that
// commands run on that directory (`bulwark update`, `component`, `rollout`, `agents ring`) ask the
// running process instead of failing on its lock — and never race its updates. HTTP over a Unix socket
// (a named pipe on Windows) that only the data directory's owner can open:
//   POST /update    joins or starts a run; answers with its record once the run (and, on a server, its
//                   distribution) is done
//   POST /change    an operator's pin, unpin or rollback (Engine.change); answers with its record
//   POST /rollout   {action: promote|halt|resume} (servers); answers with the rollout's state
//   POST /ring      {agent, ring} (servers); answers with the agent moved (one: a shared name is refused)
//   POST /remove    {agent} (servers); forgets the agent, answers with who it was
// Calls that change something carry `who` (the CLI's user@host) for the audit log.
// A refusal (a version not kept, metadata that does not verify, an unknown agent) answers 409 with
// {error, code}, for the command to report as its own.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import { createServer } from './node-http.js';
import os from 'node:os';
import path from 'node:path';
import type { ComponentChange } from './engine.js';
import { BulwarkError, describeError, type BulwarkErrorCode } from './errors.js';
import type { RunRecord } from './history.js';
import { bufferedRequest } from './http.js';
import { Agent } from './undici.js';

/** Unix socket paths are limited to about 100 bytes: long data directories get one in the temp dir. */
export function controlPath(dataDir: string): string {
  const hash = crypto.createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  if (process.platform === 'win32') return `\\\\.\\pipe\\bulwark-${hash}`;
  const inside = path.join(path.resolve(dataDir), 'control.sock');
  return Buffer.byteLength(inside) < 100 ? inside : path.join(os.tmpdir(), `bulwark-${hash}.sock`);
}

/** The calls a process answers, by name; what each takes and gives is JSON. */
export interface ControlHandlers {
  update(): Promise<RunRecord>;
  /** `who`: the CLI's user, for the audit log. */
  change(request: ComponentChange & { who?: unknown }): Promise<RunRecord>;
  rollout?(request: { action: 'promote' | 'halt' | 'resume'; who?: unknown }): Promise<unknown>;
  ring?(request: { agent: string; ring: string; who?: unknown }): Promise<unknown>;
  remove?(request: { agent: string; who?: unknown }): Promise<unknown>;
  /** A new console access secret (servers with a browser console). */
  consoleToken?(request: { who?: unknown }): Promise<unknown>;
}

const MAX_REQUEST = 64 * 1024;

export async function startControl(dataDir: string, handlers: ControlHandlers, log: (line: string) => void = () => {}): Promise<{ close(): Promise<void> }> {
  const socket = controlPath(dataDir);
  // The caller holds the data directory's lock, so a socket file here is a dead process's.
  if (process.platform !== 'win32') fs.rmSync(socket, { force: true });
  const calls = handlers as unknown as Record<string, ((body: unknown) => Promise<unknown>) | undefined>;
  const server = createServer((req, res) => {
    const name = /^\/([A-Za-z]+)$/.exec(req.url ?? '')?.[1];
    const handler = req.method === 'POST' && name ? calls[name] : undefined;
    if (!handler) {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST) chunks.push(chunk);
    });
    req.on('end', () => {
      let body: unknown = null;
      try {
        if (size > MAX_REQUEST) throw new Error('too large');
        if (size) body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end();
        return;
      }
      handler.call(handlers, body).then(
        (result) => {
          const text = JSON.stringify(result ?? null);
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
        },
        (error: unknown) => {
          const text = JSON.stringify({ error: describeError(error), ...(error instanceof BulwarkError ? { code: error.code } : {}) });
          res.writeHead(error instanceof BulwarkError ? 409 : 500, { 'content-type': 'application/json' }).end(text);
          if (!(error instanceof BulwarkError)) log(`control: ${name}: ${describeError(error)}`);
        },
      );
    });
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

/** A refusal the running process sent back, as the error it was there. */
export class RefusedError extends BulwarkError {}

/**
 * Call `name` on the process holding `dataDir`: its answer, undefined when no process answers (none
 * runs, or an older one without that call), or the refusal thrown as a RefusedError.
 */
export async function callControl<T>(dataDir: string, name: keyof ControlHandlers, body?: unknown, timeoutMs = 30 * 60_000): Promise<T | undefined> {
  const socket = controlPath(dataDir);
  if (process.platform !== 'win32' && !fs.existsSync(socket)) return undefined;
  const dispatcher = new Agent({ connect: { socketPath: socket } });
  let response;
  try {
    response = await bufferedRequest(`http://bulwark/${name}`, {
      method: 'POST',
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      dispatcher,
      timeoutMs,
      maxBytes: 16 * 1024 * 1024,
    });
  } catch {
    return undefined;
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
  if (response.status === 200) return JSON.parse(response.body.toString('utf8')) as T;
  if (response.status === 409) {
    const refusal = JSON.parse(response.body.toString('utf8')) as { error: string; code?: BulwarkErrorCode };
    throw new RefusedError(refusal.code ?? 'ERR_USAGE', refusal.error);
  }
  return undefined;
}

/** Ask the process holding `dataDir` to update; undefined when none answers. */
export async function requestUpdate(dataDir: string, timeoutMs = 30 * 60_000): Promise<RunRecord | undefined> {
  return callControl<RunRecord>(dataDir, 'update', undefined, timeoutMs);
}
