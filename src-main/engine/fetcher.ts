// The one way Bulwark talks to an update source: a tuf-js fetcher over undici, so a proxy or
// another transport plugs in as an undici Dispatcher. It counts every byte received (headers
// included) and remembers server cool-downs: a 403 or 429 with Retry-After stops all requests to
// that origin until the time given, across runs (like freshclam).
import fs from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { request, type Dispatcher } from 'undici';
import { CooldownError, HttpStatusError, NetworkError } from './errors.js';
import { writeFileAtomic } from './files.js';

export interface FetcherOptions {
  /** undici dispatcher (Agent, ProxyAgent...); undici's global dispatcher when absent. */
  dispatcher?: Dispatcher;
  timeoutMs: number;
  /** File where cool-downs persist between runs; memory only when absent. */
  cooldownFile?: string;
  userAgent?: string;
  now?: () => number;
  /** How requests travel, for messages: "proxy http://…:3128" or "direct connection". */
  route?: string;
}

/** The longest cool-down honoured, whatever the server asks: a day. */
const MAX_COOLDOWN_MS = 86_400_000;

/** Parse Retry-After (seconds or an HTTP date) into an absolute time. */
export function retryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const seconds = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined;
  return now + Math.min(seconds, MAX_COOLDOWN_MS);
}

function headerBytes(statusCode: number, headers: Record<string, string | string[] | undefined>): number {
  let bytes = `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\n\r\n`.length;
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value ?? '']) bytes += name.length + 4 + Buffer.byteLength(v);
  }
  return bytes;
}

export class HttpFetcher extends BaseFetcher {
  /** Bytes received since creation: status line, headers and bodies. */
  bytesReceived = 0;
  private cooldowns: Record<string, number>;

  constructor(private readonly options: FetcherOptions) {
    super();
    this.cooldowns = this.loadCooldowns();
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private loadCooldowns(): Record<string, number> {
    const file = this.options.cooldownFile;
    if (!file || !fs.existsSync(file)) return {};
    try {
      const data = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
      if (data && typeof data === 'object') {
        return Object.fromEntries(Object.entries(data).filter(([, v]) => typeof v === 'number')) as Record<string, number>;
      }
    } catch {
      // A damaged cool-down file only loses the cool-down; the next 429 recreates it.
    }
    return {};
  }

  private saveCooldowns(): void {
    if (this.options.cooldownFile) writeFileAtomic(this.options.cooldownFile, JSON.stringify(this.cooldowns));
  }

  /** When the source at `url` asked us to wait until, if that is still ahead. */
  cooldownUntil(url: string): Date | undefined {
    const until = this.cooldowns[new URL(url).origin];
    return until && until > this.now() ? new Date(until) : undefined;
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const until = this.cooldownUntil(url);
    if (until) throw new CooldownError(until);
    let response!: Dispatcher.ResponseData;
    for (let attempt = 1; ; attempt++) {
      try {
        response = await request(url, {
          dispatcher: this.options.dispatcher,
          headers: { 'user-agent': this.options.userAgent ?? 'Bulwark' },
          headersTimeout: this.options.timeoutMs,
          bodyTimeout: this.options.timeoutMs,
          signal: AbortSignal.timeout(this.options.timeoutMs * 10),
        });
        break;
      } catch (cause) {
        // A kept-alive connection closed under us as it was reused (tinyproxy closes after every
        // response without "Connection: close"): a GET is safe to send again, once, on a new one.
        if (attempt === 1 && staleConnection(cause)) continue;
        const via = this.options.route && this.options.route !== 'direct connection' ? ` through the ${this.options.route}` : '';
        throw new NetworkError(`cannot reach ${new URL(url).origin}${via}: ${networkReason(cause)}`, { cause });
      }
    }
    this.bytesReceived += headerBytes(response.statusCode, response.headers);
    if (response.statusCode !== 200) {
      // Drain (counting) so the connection can be reused; error bodies are small or cut short.
      for await (const chunk of response.body) this.bytesReceived += (chunk as Buffer).length;
      const header = response.headers['retry-after'];
      const wait = retryAfter(Array.isArray(header) ? header[0] : header, this.now());
      if ((response.statusCode === 429 || response.statusCode === 403) && wait) {
        this.cooldowns[new URL(url).origin] = wait;
        this.saveCooldowns();
      }
      // tuf-js needs its own error type: a 403/404 on the next root version ends the root walk (spec §5.3.3).
      const error = new DownloadHTTPError(`HTTP ${response.statusCode} for ${url}`, response.statusCode);
      error.cause = new HttpStatusError(response.statusCode, url);
      throw error;
    }
    const body = response.body;
    const counter = this;
    async function* counted() {
      try {
        for await (const chunk of body) {
          counter.bytesReceived += (chunk as Buffer).length;
          yield new Uint8Array(chunk as Buffer);
        }
      } catch (cause) {
        throw new NetworkError(`the download from ${new URL(url).origin} broke off: ${networkReason(cause)}`, { cause });
      }
    }
    return Readable.toWeb(Readable.from(counted())) as ReadableStream<Uint8Array<ArrayBuffer>>;
  }
}

/** The connection closed or reset before any answer: what a reused keep-alive connection does when the peer had closed it. */
function staleConnection(error: unknown): boolean {
  const code = (error as { code?: string })?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

/** A short, plain reason for a failed connection. */
export function networkReason(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string } };
  const code = err?.code ?? err?.cause?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found (DNS)';
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
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
