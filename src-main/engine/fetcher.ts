// The one way Bulwark downloads from an update source (the vendor's, or for an agent its server): a
// tuf-js Fetcher over undici (so a proxy plugs in as a Dispatcher). It
//   - counts every byte received, headers included;
//   - writes downloads into a temporary folder of the data directory (never the system's), streaming
//     to disk without ever pausing the HTTP parser (see http.ts);
//   - stops a body at the length the caller allows (an endless response costs that much, no more);
//   - resumes interrupted downloads of immutable (content-addressed) files with a Range request, uses
//     a partial file that turns out complete (416 naming its very length) once it verifies, and drops
//     partial files of component versions no longer wanted (dropPartials);
//   - remembers server cool-downs: a 403 or 429 with Retry-After stops all requests to that origin
//     until the time given, across runs (like freshclam), capped at MAX_COOLDOWN_MS.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import type { Fetcher } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import type { Dispatcher } from 'undici';
import { CooldownError, diskTrouble, FileError, HttpStatusError, NetworkError, ProxyAuthError } from './errors.js';
import { writeFileAtomic } from './files.js';
import { streamRequest } from './http.js';
import { STATUS_CODES } from './node-http.js';
import { errorCode, explainUnreachable } from './network.js';

export interface FetcherOptions {
  /** undici dispatcher (Agent, ProxyAgent...); a plain Agent when absent. */
  dispatcher?: Dispatcher;
  timeoutMs: number;
  /** Where downloads are written while they arrive (inside the data directory). */
  tempDir: string;
  /** File where cool-downs persist between runs; memory only when absent. */
  cooldownFile?: string;
  /** Immutable URLs (content-addressed files) whose interrupted downloads may be resumed. */
  resumable?: (url: string) => boolean;
  /** Extra request headers (an agent's credential for its server). */
  headers?: Record<string, string>;
  userAgent?: string;
  now?: () => number;
  /**
   * HTTP caches of a source (an agent's mirrors of its server): a URL under `of` is tried at each of
   * `bases` in turn, then at the source itself. Whatever a mirror serves is verified like the rest.
   */
  mirrors?: { of: string; bases: string[] };
  /** What to do about an address-family mismatch, where it is not the settings' Proxy tab (an agent's --proxy). */
  familyRemedy?: string;
  /** How requests travel, for messages: "proxy http://…:3128" or "direct connection". */
  route?: string;
}

/** The longest cool-down honoured, whatever the server (or a hand-edited cooldown.json) asks: a day. */
export const MAX_COOLDOWN_MS = 86_400_000;

/** Parse Retry-After (seconds or an HTTP date) into an absolute time. */
export function retryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const seconds = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined;
  return now + Math.min(seconds, MAX_COOLDOWN_MS);
}

function headerBytes(statusCode: number, headers: IncomingHttpHeaders): number {
  let bytes = `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\n\r\n`.length;
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value ?? '']) bytes += name.length + 4 + Buffer.byteLength(v);
  }
  return bytes;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Read the cool-downs file: only numbers, and none further ahead than MAX_COOLDOWN_MS after the file
 * was written (a hand-edit cannot block updates for years; measured from the write, not from now, so
 * the cap does not move on with every read and a capped cool-down does end).
 */
export function readCooldowns(file: string, now = Date.now()): Record<string, number> {
  try {
    const written = Math.min(fs.statSync(file).mtimeMs, now);
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    if (!data || typeof data !== 'object' || Array.isArray(data)) return {};
    const cooldowns: Record<string, number> = {};
    for (const [origin, value] of Object.entries(data)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const until = Math.min(value, written + MAX_COOLDOWN_MS);
      if (until > now) cooldowns[origin] = until;
    }
    return cooldowns;
  } catch {
    // Missing or damaged: only the cool-down is lost; the next 429 recreates it.
    return {};
  }
}

/** How long a partial download is kept for resuming. */
const PARTIAL_MAX_AGE_MS = 86_400_000;

/**
 * Clean the download folder before a run: temporary files of runs that were killed, and partial
 * downloads too old to be worth resuming.
 */
export function sweepDownloads(dir: string, now = Date.now()): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      if (name.endsWith('.tmp') || (name.endsWith('.part') && now - fs.statSync(file).mtimeMs > PARTIAL_MAX_AGE_MS)) fs.rmSync(file, { force: true });
    } catch {
      // gone already
    }
  }
}

/** The cool-down the source at `url` asked for, as recorded in a data directory (status, test-connection, the console). */
export function cooldownFor(dataDir: string, url: string, now = Date.now()): Date | undefined {
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    return undefined;
  }
  const until = readCooldowns(path.join(dataDir, 'cooldown.json'), now)[origin];
  return until ? new Date(until) : undefined;
}

/** What a server's clock said (its Date header) and when that answer arrived by ours. */
export interface ServerClock {
  origin: string;
  /** The server's time (ms), to the second. */
  server: number;
  /** This machine's time (ms) when the answer arrived. */
  local: number;
}

export class HttpFetcher implements Fetcher {
  /** Bytes received since creation: status lines, headers and bodies. */
  bytesReceived = 0;
  /** The last Date header an answer carried: tells this machine's clock from the source's when metadata looks expired. */
  serverClock: ServerClock | undefined;
  /**
   * The component version the downloads now under way are for (set by the run around each
   * component): it names their partial files, so that one of a version no longer wanted is known.
   */
  partOf: { id: string; version: number } | undefined;
  private readonly cooldowns: Record<string, number>;

  constructor(private readonly options: FetcherOptions) {
    this.cooldowns = options.cooldownFile ? readCooldowns(options.cooldownFile, this.now()) : {};
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** When the source at `url` asked us to wait until, if that is still ahead. */
  cooldownUntil(url: string): Date | undefined {
    const until = this.cooldowns[new URL(url).origin];
    return until && until > this.now() ? new Date(until) : undefined;
  }

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    return this.downloadFile(url, maxLength, async (file) => fs.promises.readFile(file));
  }

  /**
   * Download `url` (at most `maxLength` body bytes) to a temporary file, hand it to `handler`, and
   * delete it afterwards. A resumable download broken off by the network keeps its partial file for
   * the next attempt, which asks only for the rest.
   */
  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const { mirrors } = this.options;
    const candidates = mirrors && url.startsWith(mirrors.of) ? [...mirrors.bases.map((base) => base + url.slice(mirrors.of.length)), url] : [url];
    for (const [index, candidate] of candidates.entries()) {
      try {
        return await this.downloadOne(candidate, maxLength, handler);
      } catch (error) {
        // A mirror that fails in any way (unreachable, an error status, a file that does not verify)
        // hands over to the next, and the last to the source itself, whose answer stands.
        if (index === candidates.length - 1) throw error;
      }
    }
    throw new Error('unreachable');
  }

  private async downloadOne<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const until = this.cooldownUntil(url);
    if (until) throw new CooldownError(until, { origin: new URL(url).origin });
    fs.mkdirSync(this.options.tempDir, { recursive: true });
    const resumable = this.options.resumable?.(url) ?? false;
    const file = resumable ? path.join(this.options.tempDir, partialName(url, this.partOf)) : path.join(this.options.tempDir, `.${crypto.randomBytes(8).toString('hex')}.tmp`);
    let keepPartial = false;
    try {
      const resumed = await this.receive(url, file, maxLength, resumable);
      try {
        return await handler(file);
      } catch (error) {
        // What an earlier run left may be what fails the check (a partial damaged on disk): once, afresh.
        if (!resumed || error instanceof NetworkError || diskTrouble(error)) throw error;
        fs.rmSync(file, { force: true });
        await this.receive(url, file, maxLength, false);
        return await handler(file);
      }
    } catch (error) {
      // Only a download the network broke off is worth resuming; anything that arrived whole and
      // failed its check, or was refused, starts afresh.
      keepPartial = resumable && error instanceof NetworkError;
      throw error;
    } finally {
      if (!keepPartial) fs.rmSync(file, { force: true });
    }
  }

  /**
   * Partial downloads in the download folder whose component version `wanted` no longer wants (a newer
   * version came out, the component was pinned, or it got there another way): removed now rather than
   * kept for a day.
   */
  dropPartials(wanted: (id: string, version: number) => boolean): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.options.tempDir);
    } catch {
      return;
    }
    for (const name of names) {
      const of = PARTIAL.exec(name);
      if (of && !wanted(of[1]!, Number(of[2]))) fs.rmSync(path.join(this.options.tempDir, name), { force: true });
    }
  }

  /** Download `url` into `file`; resolves with whether it went on from a partial file an earlier attempt left. */
  private async receive(url: string, file: string, maxLength: number, resumable: boolean): Promise<boolean> {
    let offset = resumable && fs.existsSync(file) ? fs.statSync(file).size : 0;
    if (offset > maxLength) {
      fs.rmSync(file, { force: true });
      offset = 0;
    }
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent ?? 'Bulwark', ...this.options.headers };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const fd = fs.openSync(file, offset > 0 ? 'r+' : 'w', 0o600);
    let position = offset;
    let refused: Error | undefined;
    /** The partial file already held the whole file: the server says so (416, naming that length), and the body is not ours. */
    let complete = false;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await streamRequest(
            url,
            {
              headers,
              timeoutMs: this.options.timeoutMs,
              ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
              signal: AbortSignal.timeout(this.options.timeoutMs * 10),
            },
            {
              head: ({ status, headers: responseHeaders }) => {
                this.bytesReceived += headerBytes(status, responseHeaders);
                const date = Date.parse(header(responseHeaders, 'date') ?? '');
                if (Number.isFinite(date)) this.serverClock = { origin: new URL(url).origin, server: date, local: this.now() };
                if (status === 206 && offset > 0 && new RegExp(`^bytes ${offset}-`).test(header(responseHeaders, 'content-range') ?? '')) return;
                if (status === 200) {
                  // No Range support (or a fresh download): start from the beginning.
                  position = 0;
                  fs.ftruncateSync(fd, 0);
                  return;
                }
                if (status === 416 && offset > 0) {
                  // RFC 9110 §15.5.17: "bytes */LENGTH" — a partial of exactly that length is the whole file, to be verified.
                  if (new RegExp(`^bytes \\*/${offset}$`).test(header(responseHeaders, 'content-range') ?? '')) {
                    complete = true;
                    return;
                  }
                  throw (refused = new RangeRefused());
                }
                throw (refused = this.refusal(url, status, responseHeaders));
              },
              data: (chunk) => {
                this.bytesReceived += chunk.length;
                if (complete) return;
                if (position + chunk.length > maxLength) {
                  throw (refused = new DownloadLengthMismatchError(`${url} is longer than the ${maxLength} bytes allowed`));
                }
                try {
                  fs.writeSync(fd, chunk, 0, chunk.length, position);
                } catch (cause) {
                  // This machine's disk, not the source: a full disk must not read as an unreachable source.
                  throw (refused = new FileError(file, `cannot save the download of ${url} in ${this.options.tempDir}`, { cause }));
                }
                position += chunk.length;
              },
            },
          );
          break;
        } catch (cause) {
          if (refused instanceof RangeRefused) {
            // The partial file no longer fits what the server has: download it whole.
            delete headers.range;
            offset = position = 0;
            fs.ftruncateSync(fd, 0);
            refused = undefined;
            continue;
          }
          if (refused) throw refused;
          // A kept-alive connection closed under us as it was reused (tinyproxy closes after every
          // response without "Connection: close"): a GET is safe to send again, once, on a new one.
          if (attempt === 1 && position === offset && staleConnection(cause)) continue;
          throw await this.unreachable(url, cause, position > offset);
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return offset > 0;
  }

  /** The error for an answer other than the file: an HTTP status, a proxy refusal, a cool-down. */
  private refusal(url: string, status: number, headers: IncomingHttpHeaders): Error {
    const origin = new URL(url).origin;
    const viaProxy = this.viaProxy();
    if (viaProxy && (status === 407 || (status === 401 && this.proxyAnswered(headers)))) {
      return new ProxyAuthError(`the ${this.options.route} refused the credentials (authentication failed, HTTP ${status}) for ${origin}`, { status });
    }
    const wait = retryAfter(header(headers, 'retry-after'), this.now());
    if ((status === 429 || status === 403) && wait) {
      this.cooldowns[origin] = wait;
      if (this.options.cooldownFile) writeFileAtomic(this.options.cooldownFile, JSON.stringify(this.cooldowns));
      return new CooldownError(new Date(wait), { origin, status });
    }
    // tuf-js needs its own error type: a 403/404 on the next root version ends the root walk (spec §5.3.3).
    const error = new DownloadHTTPError(`HTTP ${status} for ${url}`, status);
    error.cause = new HttpStatusError(status, url, viaProxy && status >= 500 ? { via: this.options.route! } : {});
    return error;
  }

  private viaProxy(): boolean {
    return Boolean(this.options.route && this.options.route !== 'direct connection');
  }

  /**
   * A 401 that the proxy wrote, not the source behind it: tinyproxy answers wrong proxy credentials
   * with 401 (not 407). Such an answer names the proxy's realm or carries Proxy-Authenticate; update
   * sources are static files and never ask for credentials of their own.
   */
  private proxyAnswered(headers: IncomingHttpHeaders): boolean {
    return headers['proxy-authenticate'] !== undefined || /proxy/i.test(header(headers, 'www-authenticate') ?? '') || /proxy/i.test(header(headers, 'server') ?? '');
  }

  private async unreachable(url: string, cause: unknown, brokeOff: boolean): Promise<NetworkError | ProxyAuthError> {
    const origin = new URL(url).origin;
    const via = this.viaProxy() ? ` through the ${this.options.route}` : '';
    // undici's ProxyAgent turns the proxy's own refusals into errors: a 407, or a tunnel it would not open.
    const refused = /Proxy Authentication Required \((\d{3})\)|Proxy response \((\d{3})\)/.exec(messageChain(cause));
    if (refused && this.viaProxy()) {
      const status = Number(refused[1] ?? refused[2]);
      if (status === 407) return new ProxyAuthError(`the ${this.options.route} refused the request for ${origin}: it wants valid credentials (HTTP 407)`, { status, cause });
      return new NetworkError(`the ${this.options.route} would not connect to ${origin} (HTTP ${status})`, { cause });
    }
    if (brokeOff) return new NetworkError(`the download from ${origin}${via} broke off: ${networkReason(cause)}`, { cause });
    // A direct connection that failed may be an address-family mismatch: say so, the same way
    // test-connection and the reminders do.
    const mismatch = this.viaProxy() ? undefined : await explainUnreachable(new URL(url).hostname, cause, this.options.familyRemedy ? { remedy: this.options.familyRemedy } : {});
    // The mismatch is the explanation; the system's own words (getaddrinfo EAI_AGAIN…) only in parentheses.
    if (mismatch) return new NetworkError(`cannot reach ${origin}: ${mismatch.message} (${errorCode(cause) ?? networkReason(cause)}). ${mismatch.action}`, { familyMismatch: true });
    return new NetworkError(`cannot reach ${origin}${via}: ${networkReason(cause)}`, { cause });
  }
}

/** The messages of an error and its causes, joined. */
function messageChain(error: unknown): string {
  const parts: string[] = [];
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) if (e.message) parts.push(e.message);
  return parts.join(': ');
}

/** A partial download's name: the component version it is for, when known, and the URL's hash. */
function partialName(url: string, of: { id: string; version: number } | undefined): string {
  const hash = crypto.createHash('sha256').update(url).digest('hex').slice(0, 32);
  return of ? `${of.id.replace(/[^A-Za-z0-9_-]/g, '_')}.${of.version}.${hash}.part` : `${hash}.part`;
}

const PARTIAL = /^([A-Za-z0-9_-]+)\.(\d+)\.[0-9a-f]{32}\.part$/;

/** The server would not serve the rest of a partial download (416). */
class RangeRefused extends Error {}

/** The connection closed or reset before any answer: what a reused keep-alive connection does when the peer had closed it. */
function staleConnection(error: unknown): boolean {
  const code = (error as { code?: string })?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

/** A short, plain reason for a failed connection. */
export function networkReason(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string }; name?: string };
  const code = err?.code ?? err?.cause?.code;
  if (err?.name === 'TimeoutError') return 'timed out';
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found (DNS)';
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
    case 'EADDRNOTAVAIL':
      return 'network unreachable';
    case 'ECONNRESET':
      return 'connection reset';
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ABORT_ERR':
    case 'ETIMEDOUT':
      return 'timed out';
    default:
      return err?.message ?? String(error);
  }
}
