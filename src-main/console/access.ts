// How the browser console is reached, kept across restarts in DATA/console.json (its owner's only):
// the access secret, and the address it was last served on. A bookmark and an open tab keep working
// after the server restarts; `bulwark console-url --data DIR` prints the sign-in address for the
// operator (so a service need not write the secret to its log), and `--rotate` replaces the secret.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FileError } from '../engine/errors.js';
import { writeFileAtomic } from '../engine/files.js';

export interface ConsoleAccess {
  token: string;
  /** Where the console listened last (absent until it was served once). */
  host?: string;
  port?: number;
}

const FILE = 'console.json';
const MODE = 0o600;

const newToken = () => crypto.randomBytes(24).toString('base64url');

/** The saved access, if any (undefined for a file that is missing or not ours). */
export function readConsoleAccess(dataDir: string): ConsoleAccess | undefined {
  try {
    const saved = JSON.parse(fs.readFileSync(path.join(dataDir, FILE), 'utf8')) as Partial<ConsoleAccess>;
    if (typeof saved.token !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(saved.token)) return undefined;
    const port = Number.isInteger(saved.port) && saved.port! > 0 && saved.port! < 65536 ? saved.port : undefined;
    return { token: saved.token, ...(typeof saved.host === 'string' && port ? { host: saved.host, port } : {}) };
  } catch {
    return undefined;
  }
}

function save(dataDir: string, access: ConsoleAccess): void {
  const file = path.join(dataDir, FILE);
  try {
    writeFileAtomic(file, JSON.stringify(access) + '\n', MODE);
    fs.chmodSync(file, MODE);
  } catch (error) {
    throw new FileError(file, `cannot save the console's access to ${file}`, { cause: error });
  }
}

/** The saved access, or a new secret saved now. */
export function consoleAccess(dataDir: string): ConsoleAccess {
  const saved = readConsoleAccess(dataDir);
  if (saved) return saved;
  const access = { token: newToken() };
  save(dataDir, access);
  return access;
}

/** Remember where the console listens, so the next start takes the same address. */
export function saveConsoleAddress(dataDir: string, host: string, port: number): void {
  const access = consoleAccess(dataDir);
  if (access.host !== host || access.port !== port) save(dataDir, { ...access, host, port });
}

/** Replace the secret: every signed-in browser must sign in again. */
export function rotateConsoleToken(dataDir: string): string {
  const access = { ...consoleAccess(dataDir), token: newToken() };
  save(dataDir, access);
  return access.token;
}

/** The address to sign in with (the token in the query, which the console trades for a cookie). */
export function signInUrl(access: ConsoleAccess): string | undefined {
  if (!access.port || access.host === undefined) return undefined;
  // A console listening everywhere is reached on this machine through loopback.
  const host = access.host === '0.0.0.0' ? '127.0.0.1' : access.host === '::' ? '::1' : access.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${access.port}/?token=${access.token}`;
}
