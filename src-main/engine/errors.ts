// Errors Bulwark reports. Each has a string-literal `code` that the CLI, the history and the console
// can match on, and keeps the underlying error as `cause`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type BulwarkErrorCode =
  | 'ERR_USAGE'
  | 'ERR_SETTINGS'
  | 'ERR_SOURCE'
  | 'ERR_NETWORK'
  | 'ERR_HTTP'
  | 'ERR_PROXY_AUTH'
  | 'ERR_COOLDOWN'
  | 'ERR_METADATA'
  | 'ERR_CORRUPT'
  | 'ERR_VERIFY'
  | 'ERR_DOWNGRADE'
  | 'ERR_STORE'
  | 'ERR_PUBLISH'
  | 'ERR_BUSY'
  | 'ERR_FILE'
  | 'ERR_CLOCK'
  | 'ERR_CONSUMER'
  | 'ERR_CONSUMER_CONFIG';

export class BulwarkError extends Error {
  constructor(
    readonly code: BulwarkErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A command line or API call was malformed. */
export class UsageError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_USAGE', message, options);
  }
}

/** A setting was invalid; the previous value is kept. `field` names it, e.g. "proxy.port". */
export class SettingsError extends BulwarkError {
  readonly field: string | undefined;

  constructor(message: string, options?: { cause?: unknown; field?: string }) {
    super('ERR_SETTINGS', message, options);
    this.field = options?.field;
  }
}

/** The update source is misconfigured or published something unusable (e.g. a bad catalogue). */
export class SourceError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SOURCE', message, options);
  }
}

/** The source could not be reached (DNS, connection, TLS, timeout); `familyMismatch` when IPv4 met IPv6-only or the reverse. */
export class NetworkError extends BulwarkError {
  readonly familyMismatch: boolean;

  constructor(message: string, options?: { cause?: unknown; familyMismatch?: boolean }) {
    super('ERR_NETWORK', message, options);
    this.familyMismatch = options?.familyMismatch ?? false;
  }
}

/** The source answered with an HTTP error status (through a proxy, `via` names it: a 5xx may be the proxy's own). */
export class HttpStatusError extends BulwarkError {
  constructor(
    readonly status: number,
    readonly url: string,
    options?: { cause?: unknown; via?: string },
  ) {
    super(
      'ERR_HTTP',
      options?.via && status >= 500 && status <= 504
        ? `the ${options.via} could not fetch ${url} (HTTP ${status}): the proxy failed to reach the update source, or the source failed`
        : `HTTP ${status} for ${url}`,
      options,
    );
  }
}

/** The proxy refused our credentials (407, or the 401 some proxies such as tinyproxy send instead). */
export class ProxyAuthError extends BulwarkError {
  readonly status: number;

  constructor(message: string, options: { cause?: unknown; status: number }) {
    super('ERR_PROXY_AUTH', message, options);
    this.status = options.status;
  }
}

/** The source asked us to wait (403/429 with Retry-After): `status` is set on the answer that started it. */
export class CooldownError extends BulwarkError {
  constructor(
    readonly until: Date,
    options?: { cause?: unknown; origin?: string; status?: number },
  ) {
    const who = options?.origin ?? 'the update source';
    super(
      'ERR_COOLDOWN',
      options?.status
        ? `${who} answered HTTP ${options.status} and asked Bulwark to wait; the next try is at ${until.toISOString()}`
        : `${who} asked to wait until ${until.toISOString()}; no request is sent before then`,
      options,
    );
  }
}

/** TUF metadata failed to load or verify (expired, bad signature, rollback...). */
export class MetadataError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_METADATA', message, options);
  }
}

/** Downloaded or stored data could not be decoded. */
export class CorruptDataError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CORRUPT', message, options);
  }
}

/** A file did not match its signed length or hash. */
export class VerificationError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VERIFY', message, options);
  }
}

/** The source offers a version lower than the installed one. */
export class DowngradeError extends BulwarkError {
  constructor(
    readonly installed: number,
    readonly offered: number,
  ) {
    super('ERR_DOWNGRADE', `the source offers version ${offered}, lower than the installed ${installed}; refused`);
  }
}

/** The local store (or the agent registry, `file`) could not be read or written. */
export class StoreError extends BulwarkError {
  readonly file: string | undefined;

  constructor(message: string, options?: { cause?: unknown; file?: string }) {
    super('ERR_STORE', message, options);
    this.file = options?.file;
  }
}

/** `bulwark publish` could not build the update source. */
export class PublishError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PUBLISH', message, options);
  }
}

/** Another process holds the data directory. */
export class BusyError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BUSY', message, options);
  }
}

/** A file in the data directory could not be read or written (permissions, disk full, not a file). */
export class FileError extends BulwarkError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_FILE', message, options);
  }
}

/** Where a consumer hand-off failed: checking the candidate, placing it, reloading the engine, or probing it. */
export type ConsumerStage = 'check' | 'place' | 'reload' | 'health';

/**
 * Whose failure it is: 'content' (the engine would not take this version: its check, reload or health
 * failed) halts a rollout; 'local' (this machine's: a full or read-only disk, permissions, a program
 * missing) marks only the machine it happened on.
 */
export type FailureKind = 'content' | 'local';

/** A component could not be handed to the engine that uses it (consumers.ts); the previous version stays. */
export class ConsumerError extends BulwarkError {
  /** The engine's own words (its command's output, trimmed), when it said something. */
  readonly engineMessage: string | undefined;
  /** When it happened (for a version refused earlier: when it was refused). */
  readonly at: string;

  constructor(
    readonly stage: ConsumerStage,
    readonly kind: FailureKind,
    /** The engine's name, for messages: "clamd". */
    readonly engine: string,
    message: string,
    options?: { cause?: unknown; engineMessage?: string; at?: string },
  ) {
    super('ERR_CONSUMER', message, options);
    this.engineMessage = options?.engineMessage;
    this.at = options?.at ?? new Date().toISOString();
  }
}

/** A consumers file is not valid: `file` and `entry` (a component id, when one is at fault) name the place. */
export class ConsumerConfigError extends BulwarkError {
  constructor(
    readonly file: string,
    readonly entry: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_CONSUMER_CONFIG', `${file}${entry ? `, entry "${entry}"` : ''}: ${message}`, options);
  }
}


/** This machine's clock disagrees with the update source's by more than its signed metadata allows. */
export class ClockError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CLOCK', message, options);
  }
}

/**
 * One line for a person: the message, plus the cause's when it adds something. A disk's refusal
 * somewhere in the causes (a read-only mount, permissions, a full disk: see diskTrouble) is said in
 * words with what to do, instead of the system's "EROFS: read-only file system, open '….tmp'".
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const trouble = diskTrouble(error);
  if (trouble) {
    if (trouble.error === error) return trouble.words;
    if (error.message.includes(trouble.words)) return error.message;
    // "cannot save schedule to …/settings.json: it is on a file system mounted read-only (EROFS): …"
    const named = trouble.file === undefined || error.message.includes(trouble.file);
    return `${error.message}: ${named ? troubleWords(trouble.kind, trouble.code, trouble.file, 'it') : trouble.words}`;
  }
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && !error.message.includes(cause) ? `${error.message}: ${cause}` : error.message;
}

/** The code a run record keeps for `error`: its own, or ERR_FILE for a disk's refusal the code did not wrap. */
export function errorCodeOf(error: unknown): BulwarkErrorCode | undefined {
  if (error instanceof BulwarkError) return error.code;
  return diskTrouble(error) ? 'ERR_FILE' : undefined;
}

export type DiskTroubleKind = 'read-only' | 'permission' | 'full' | 'damaged' | 'directory' | 'not-a-folder' | 'missing' | 'io';

export interface DiskTrouble {
  kind: DiskTroubleKind;
  /** The system's or SQLite's code (EROFS, SQLITE_FULL…). */
  code: string;
  /** The file, as people know it (a temporary file's target). */
  file: string | undefined;
  /** What is wrong with which file and what to do, in one sentence. */
  words: string;
  /** The error in the chain that carried the code. */
  error: Error;
}

const ERRNO_KINDS: Record<string, DiskTroubleKind> = {
  EROFS: 'read-only',
  EACCES: 'permission',
  EPERM: 'permission',
  ENOSPC: 'full',
  EDQUOT: 'full',
  EISDIR: 'directory',
  ENOTDIR: 'not-a-folder',
  EIO: 'io',
};

/** System calls whose errors are about sockets, names or processes, not files. */
const NOT_FILES = /^(connect|listen|bind|accept|getaddrinfo|getnameinfo|spawn|kill|uv_)/;

/** SQLite's result codes (node-sqlite3 puts them in `code`), by what they mean for the file. */
function sqliteKind(code: string, file: string | undefined): DiskTroubleKind | undefined {
  if (code === 'SQLITE_FULL') return 'full';
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') return 'damaged';
  // SQLite does not say why it cannot open, read or write a file (a directory in its place reads as an I/O error): ask the file system.
  // (A read-only connection's own refusal, with nothing wrong on disk, stays SQLite's words.)
  const fallback: Partial<Record<string, DiskTroubleKind>> = { SQLITE_IOERR: 'io', SQLITE_READONLY: undefined, SQLITE_PERM: 'permission', SQLITE_CANTOPEN: undefined };
  if (code in fallback) return (file ? probe(file) : undefined) ?? fallback[code];
  return undefined;
}

/** Why `file` cannot be opened for writing, asked of the file system. */
function probe(file: string): DiskTroubleKind | undefined {
  const dir = path.dirname(file);
  if (!fs.existsSync(file)) return 'missing';
  try {
    // SQLite says "I/O error" when its shared memory cannot grow on a full disk.
    const space = fs.statfsSync(dir);
    if (space.bavail * space.bsize < 64 * 1024) return 'full';
  } catch {
    // no answer: go on asking
  }
  if (fs.statSync(file, { throwIfNoEntry: false })?.isDirectory()) return 'directory';
  for (const target of [file, dir]) {
    try {
      if (fs.existsSync(target)) fs.accessSync(target, fs.constants.W_OK);
    } catch (error) {
      return ERRNO_KINDS[(error as NodeJS.ErrnoException).code ?? ''];
    }
  }
  return undefined;
}

/** A temporary file names its target: ".history.jsonl.0a1b2c3d4e5f.tmp" (ours) and "settings.json.tmp-5f0e…" (conf's) are their files'. */
function shownFile(file: string): string {
  return file.replace(/([\\/])\.([^\\/]+)\.[0-9a-f]{12}\.tmp$/, '$1$2').replace(/\.tmp-[0-9a-f]+$/, '');
}

/** What is wrong and what to do; `subject` names the file ("it" where the message around it already did). */
function troubleWords(kind: DiskTroubleKind, code: string, file: string | undefined, subject: string): string {
  const where = file ? path.dirname(shownFile(file)) : "Bulwark's data directory";
  switch (kind) {
    case 'read-only':
      return `${subject} is on a file system mounted read-only (${code}): remount that file system read-write, or move Bulwark's data directory to a writable disk`;
    case 'permission': {
      const user = os.userInfo({ encoding: 'utf8' });
      return `${user.username} (uid ${user.uid}), the user running Bulwark, may not write ${subject} (${code}): run Bulwark as the owner of ${where}, or give that user write access to it (chown -R)`;
    }
    case 'full':
      return `the disk holding ${subject} is full (no space left on device, ${code}): free space on it (df -h ${where}), then try again`;
    case 'damaged':
      return `${subject} is damaged: it is not a valid SQLite database (${code})`;
    case 'directory':
      return `${subject} is a directory, not a file (${code})`;
    case 'not-a-folder':
      return `a part of the path of ${subject} is a file, not a folder (${code})`;
    case 'missing':
      return fs.existsSync(where) ? `${subject} does not exist (${code})` : `the folder ${where} does not exist (${code}): create it, or correct the data directory (--data)`;
    case 'io':
      return `the disk holding ${subject} failed to read or write (${code}): check the disk (dmesg, smartctl) before going on`;
  }
}

/**
 * A disk's refusal in `error` or its causes (about the file `about`, when the error does not name it) — a system error (EROFS, EACCES, ENOSPC…) or SQLite's
 * (SQLITE_CANTOPEN, SQLITE_FULL, SQLITE_READONLY…) — in words: which file, what is wrong, what to do.
 */
export function diskTrouble(error: unknown, about?: string): DiskTrouble | undefined {
  let file = about;
  for (let e = error as (Error & { code?: unknown; path?: unknown; file?: unknown; syscall?: unknown; cause?: unknown }) | undefined; e instanceof Error; e = e.cause as typeof e) {
    if (typeof e.file === 'string' && e.file) file = e.file;
    // A socket's or a process's EACCES is no file's.
    if (typeof e.code !== 'string' || (typeof e.syscall === 'string' && NOT_FILES.test(e.syscall))) continue;
    if (typeof e.path === 'string') file = e.path;
    // Extended SQLite codes (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED…) by their primary code.
    const kind = e.code.startsWith('SQLITE_') ? sqliteKind(/^SQLITE_(IOERR|READONLY|CANTOPEN|CORRUPT)/.exec(e.code)?.[0] ?? e.code, file) : ERRNO_KINDS[e.code];
    if (kind) return { kind, code: e.code, file: file && shownFile(file), words: troubleWords(kind, e.code, file, file ? shownFile(file) : 'a file Bulwark uses'), error: e };
  }
  return undefined;
}
