// The HTTP side of the agents' service, shared by the main thread and the file threads
// (file-thread.ts): how a request is read, and how an answer decided by the main thread's routes
// (agent-server.ts) is written. Nothing here touches the registry or the release: a file thread
// loads only this module, the fast path (fast-path.ts), the protocol's constants and node's own.
import fs from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import { describeError } from '../engine/errors.js';
import { sha256 } from '../engine/files.js';
import { collectGarbage } from '../engine/memory.js';
import { createServer } from '../engine/node-http.js';
import { AGENT_LIMITS, AGENT_PATHS, type ReleaseIndex } from '../protocol/agent-protocol.js';
import { FastPath, PlainHeads, type PlainRequest } from './fast-path.js';

const MAX_BODY = AGENT_LIMITS.requestBytes;
export const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Metadata and the index change with each release: caches must ask again. */
export const SHORT_LIVED = 'no-cache';

/** A request refused with an HTTP status and a message for the agent's log. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Extra header fields of the answer (Retry-After). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

/** The answers to the timestamp and the index of a release, cached under their paths in every thread. */
export interface ReleaseAnswers {
  timestamp: Uint8Array;
  index: Uint8Array;
}

export function cacheRelease(cache: ResponseCache, answers: ReleaseAnswers): void {
  const buffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  cache.put(`/${AGENT_PATHS.timestamp}`, buffer(answers.timestamp), { 'content-type': 'application/json', 'cache-control': SHORT_LIVED }, sha256(answers.timestamp));
  cache.put(`/${AGENT_PATHS.index}`, buffer(answers.index), { 'content-type': 'application/json; charset=utf-8', 'cache-control': SHORT_LIVED }, sha256(answers.index));
  // Made files lead to the current release's versions only (made-files.ts): those leading elsewhere
  // are no longer answered from memory either.
  const current = new Set((JSON.parse(buffer(answers.index).toString('utf8')) as ReleaseIndex).components.map((c) => c.sha256));
  cache.drop((url) => {
    const target = MADE_URL.exec(url.split('?')[0]!)?.[1];
    return target !== undefined && !current.has(target);
  });
}

/** A made file's path, and the content hash of the version it leads to. */
const MADE_URL = /^\/made\/[^/]+\/(?:[0-9a-f]{64}-)?([0-9a-f]{64})\.(?:patch|zst)$/;

/** What the routes need of a request: read once by whichever thread accepted it. */
export interface AgentRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  /** The peer's address without the IPv4-mapped prefix. */
  address: string;
  /** POST bodies only, at most MAX_BODY bytes. */
  body?: Uint8Array;
}

/**
 * The routes' answer, as data so that it crosses to a file thread: the thread that holds the
 * connection writes it (conditional GET, Range and HEAD are decided there, from the real request).
 */
export type Reply =
  | { kind: 'json'; status: number; body: unknown; cacheControl?: string; headers?: Record<string, string> }
  /** Whole bytes with an ETag: the timestamp and the index, which change with each release. */
  | { kind: 'bytes'; body: Uint8Array; etag: string; type: string; cacheControl: string }
  /** A file on disk: small ones are kept in the thread's ResponseCache from then on. */
  | { kind: 'file'; file: string; etag: string; type: string; cacheControl: string }
  /** Open the agent's notification stream with this first event. */
  | { kind: 'stream'; agentId: string; hello: string }
  | { kind: 'status'; status: number; headers: Record<string, string> };

export function sendJson(res: http.ServerResponse, status: number, body: unknown, cache = 'no-store', headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': cache });
  res.end(text);
}

/** Read a request's head fields the routes use and, for a POST, its body (bounded). */
export async function readRequest(req: http.IncomingMessage): Promise<AgentRequest> {
  const request: AgentRequest = {
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    authorization: req.headers.authorization,
    address: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
  };
  if (request.method !== 'POST') return request;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  request.body = Buffer.concat(chunks);
  return request;
}

/** Where a stream goes once opened, and how it is forgotten when the agent goes. */
export type OpenStream = (agentId: string, res: http.ServerResponse) => () => void;

/**
 * The agents' request listener, the same on every thread: whole answers from the cache, the rest
 * decided by `answer` (the routes, or the main thread asked for them) and written here.
 */
export function agentRequestListener(answer: (request: AgentRequest) => Promise<Reply>, cache: ResponseCache, openStream: OpenStream, log: (line: string) => void, burst: AfterBurst): http.RequestListener {
  return (req, res) => {
    burst.request();
    if (cache.answer(req, res)) return;
    readRequest(req)
      .then(answer)
      .then((reply) => writeReply(req, res, reply, cache, openStream))
      .catch((error: unknown) => {
        if (res.headersSent) res.destroy();
        else if (error instanceof HttpError) sendJson(res, error.status, { error: error.message }, undefined, error.headers);
        else {
          log(`agents: ${req.method} ${req.url} failed: ${describeError(error)}`);
          sendJson(res, 500, { error: 'internal error; see the server log' });
        }
      });
  };
}

export function writeReply(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply, cache: ResponseCache, openStream: OpenStream): void {
  switch (reply.kind) {
    case 'json':
      sendJson(res, reply.status, reply.body, reply.cacheControl, reply.headers);
      return;
    case 'bytes': {
      // Not put in the cache by URL: what changes with each release is cached under its own path
      // when the release comes (cacheRelease), never under a URL with a query that no release replaces.
      const etag = `"${reply.etag}"`;
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { etag, 'cache-control': reply.cacheControl }).end();
        return;
      }
      res.writeHead(200, { 'content-type': reply.type, 'cache-control': reply.cacheControl, etag, 'content-length': reply.body.byteLength });
      res.end(req.method === 'HEAD' ? undefined : reply.body);
      return;
    }
    case 'file':
      sendFile(req, res, reply.file, reply.etag, reply.cacheControl, reply.type, cache);
      return;
    case 'stream': {
      // Counted before the agent hears hello, so that a release right after it reaches this stream.
      req.on('close', openStream(reply.agentId, res));
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.write(reply.hello);
      return;
    }
    case 'status':
      res.writeHead(reply.status, reply.headers).end();
      return;
  }
}

/**
 * Send a file with an ETag, conditional GET, HEAD and single-range support (RFC 9110 §14). Immutable
 * files are named by their hash, which is their ETag. The file is kept by the thread from then on: in
 * memory up to a few MB, held open above that (ResponseCache), so that later requests for it are
 * answered here, on the fast path when plain, without asking the main thread again.
 */
function sendFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, etag: string, cacheControl: string, type: string, cache: ResponseCache): void {
  const headers: http.OutgoingHttpHeaders = { etag: `"${etag}"`, 'cache-control': cacheControl, 'accept-ranges': 'bytes', 'content-type': type };
  let entry: CacheEntry | undefined;
  try {
    entry = cache.keep(req.url ?? '', file, headers, etag);
  } catch {
    // Pruned between the route's answer and now.
    sendJson(res, 404, { error: 'the server no longer holds this file' });
    return;
  }
  if (entry) {
    sendEntry(req, res, entry, cache.chunks);
    return;
  }
  // Neither kept in memory nor held open (a large file that is not content-addressed): opened for this answer alone.
  let once: OpenFile;
  try {
    once = OpenFile.open(file);
  } catch {
    sendJson(res, 404, { error: 'the server no longer holds this file' });
    return;
  }
  sendEntry(req, res, makeEntry({ file: once }, headers, etag), cache.chunks);
  once.retire();
}

/** Answer from a cache entry, with conditional GET, HEAD and a single range. */
function sendEntry(req: http.IncomingMessage, res: http.ServerResponse, entry: CacheEntry, chunks: FileChunks): void {
  const size = entry.length;
  if (req.headers['if-none-match'] === entry.etag) {
    res.writeHead(304, { etag: entry.etag, 'cache-control': entry.headers['cache-control'] }).end();
    return;
  }
  const headers: http.OutgoingHttpHeaders = { ...entry.headers };
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
  if (range && (range[1] || range[2]) && (!req.headers['if-range'] || req.headers['if-range'] === entry.etag)) {
    if (range[1]) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(Number(range[2]), size - 1);
    } else start = Math.max(0, size - Number(range[2]));
    if (start >= size || start > end) {
      delete headers['content-length'];
      res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end();
      return;
    }
    status = 206;
    headers['content-range'] = `bytes ${start}-${end}/${size}`;
  }
  headers['content-length'] = size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) res.end();
  else if (entry.body) res.end(start === 0 && end === size - 1 ? entry.body : entry.body.subarray(start, end + 1));
  else pumpFile(entry.file!, start, end, res, chunks, (error) => (error ? res.destroy() : res.end()));
}

/**
 * A file held open by a thread, read with positioned reads (from the page cache once read) for each
 * answer: never a read stream per request. Closed once retired from the cache and no answer reads it;
 * a file pruned from disk meanwhile stays readable through it.
 */
export class OpenFile {
  private users = 0;
  private retired = false;

  private constructor(
    readonly fd: number,
    readonly size: number,
  ) {}

  static open(file: string): OpenFile {
    const fd = fs.openSync(file, 'r');
    try {
      return new OpenFile(fd, fs.fstatSync(fd).size);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  use(): () => void {
    this.users++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.users--;
      this.closeIfDone();
    };
  }

  retire(): void {
    this.retired = true;
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (this.retired && this.users === 0 && this.fd >= 0) fs.close(this.fd, () => {});
  }
}

/** What a file is written through: a socket on the fast path, a ServerResponse on node:http's. */
interface FileSink {
  write(chunk: Buffer, written: (error?: Error | null) => void): boolean;
  once(event: 'close', listener: () => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
  readonly destroyed: boolean;
}

/** Bytes read per positioned read: one such buffer per connection being written to, at most. */
const FILE_CHUNK = 64 * 1024;
/** Buffers kept for the next answers once theirs is written (4 MiB): more are left to the collector. */
const MAX_FREE_CHUNKS = 64;

/**
 * A thread's read buffers for the files it holds open, handed from one answer to the next. A buffer
 * per answer, left to the collector, piled up faster than a flood of large answers made the young
 * generation collect them: 300 answers of 20 MB left each thread's malloc arena 18 MB larger for
 * good (docs/benchmarks.md). `bytesRead` lets AfterBurst see such a flood, which is a few hundred
 * requests but gigabytes read.
 */
export class FileChunks {
  private free: Buffer[] = [];
  bytesRead = 0;

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(FILE_CHUNK);
  }

  /** Only a buffer no write still holds: its answer was written to the end. */
  give(buffer: Buffer): void {
    if (this.free.length < MAX_FREE_CHUNKS) this.free.push(buffer);
  }

  /** Buffers kept for the next answers. */
  get kept(): number {
    return this.free.length;
  }

  /** Let the kept buffers go, once a burst is over. */
  release(): void {
    this.free = [];
  }
}

/**
 * Write bytes `start`..`end` of `file` to `sink`, a chunk at a time, each read once the previous one is
 * handed to the kernel, into the same buffer, taken from `chunks` and given back once the answer is
 * written (one buffer per answer being written, never one per chunk or per answer); `done` once
 * written, failed or closed.
 */
function pumpFile(file: OpenFile, start: number, end: number, sink: FileSink, chunks: FileChunks, done: (error?: Error) => void): void {
  const release = file.use();
  const buffer = chunks.take();
  let at = start;
  let finished = false;
  const finish = (error?: Error) => {
    if (finished) return;
    finished = true;
    sink.removeListener('close', onClose);
    release();
    // A failed or closed answer may have a write in flight that still reads the buffer.
    if (!error) chunks.give(buffer);
    done(error);
  };
  const onClose = () => finish(new Error('closed'));
  const written = (error?: Error | null) => (error ? finish(error) : step());
  function step(): void {
    if (finished) return;
    if (at > end) return finish();
    const length = Math.min(buffer.length, end - at + 1);
    fs.read(file.fd, buffer, 0, length, at, (error, read) => {
      if (finished) return;
      if (error || read === 0) return finish(error ?? new Error('the file is shorter than when it was opened'));
      if (sink.destroyed) return finish(new Error('closed'));
      at += read;
      chunks.bytesRead += read;
      sink.write(read === buffer.length ? buffer : buffer.subarray(0, read), written);
    });
  }
  sink.once('close', onClose);
  step();
}

interface CacheEntry {
  /** The answer's body, in memory; or the file it is read from, held open. */
  body?: Buffer;
  file?: OpenFile;
  length: number;
  headers: http.OutgoingHttpHeaders;
  etag: string;
  /** The entry's header lines as the fast path writes them, for a 200 and for a 304. */
  lines200: string;
  lines304: string;
  /** The fast path's last answer: its head and, for a small body, head and body in one buffer (one write). */
  wire?: { sharedLines: string; head: Buffer; whole: Buffer | undefined };
  /** The header lines after the shared ones, with the empty line, as the native front writes them. */
  front?: { rest200: Buffer; rest304: Buffer };
}

function makeEntry(content: { body: Buffer } | { file: OpenFile }, headers: http.OutgoingHttpHeaders, etag: string): CacheEntry {
  const length = 'body' in content ? content.body.length : content.file.size;
  const all: http.OutgoingHttpHeaders = { ...headers, etag: `"${etag}"`, 'content-length': length };
  const lines = (names: string[]) => names.flatMap((name) => [all[name] ?? []].flat().map((value) => `${name}: ${value}\r\n`)).join('');
  return { ...content, length, headers: all, etag: `"${etag}"`, lines200: lines(Object.keys(all)), lines304: lines(['etag', 'cache-control']) };
}

/** An answer as the native front writes it (agent-front.ts): status line, then the shared lines (date, connection), then `rest`, then the body. */
export type FrontAnswer = [status: Buffer, rest: Buffer, body: Buffer | null];

const STATUS_200 = Buffer.from('HTTP/1.1 200 OK\r\n', 'latin1');
const STATUS_304 = Buffer.from('HTTP/1.1 304 Not Modified\r\n', 'latin1');

/** Answers up to this size are also kept whole, head and body, for the fast path: outside the cache's budget, at most its small entries' size again. */
const WHOLE_ANSWER_BYTES = 16 * 1024;

/**
 * Whole answers to the requests agents make most — the timestamp, the index, versioned metadata and
 * the small content-addressed files — kept in memory with their headers, so that a release announced
 * to thousands of agents costs no file I/O and no hashing per request; and the larger
 * content-addressed files held open, read for each answer with positioned reads. Immutable entries
 * stay until the budget evicts them (oldest first); the timestamp and the index are replaced with
 * each release.
 */
export class ResponseCache {
  private readonly entries = new Map<string, CacheEntry>();
  private bytes = 0;
  private largeBytes = 0;
  private openFiles = 0;
  /** Read buffers for the files held open, shared by every answer this thread writes. */
  readonly chunks = new FileChunks();
  private readonly removed: (() => void)[] = [];

  constructor(
    private readonly maxBytes = 64 * 1024 * 1024,
    readonly maxEntryBytes = 1024 * 1024,
    /**
     * Content-addressed files up to this size are kept too (a whole pattern file agents fetch in a
     * fan-out: one buffer per thread, written to every connection without a copy), within their own
     * budget so they never push the small answers out. Larger ones are held open.
     */
    readonly maxImmutableEntryBytes = 8 * 1024 * 1024,
    private readonly maxLargeBytes = 32 * 1024 * 1024,
    /** Content-addressed files held open (each a file descriptor), beyond those kept in memory. */
    private readonly maxOpenFiles = 32,
  ) {}

  /** Answer `req` from what is held here (conditional GET, HEAD and a single range included); true when answered. */
  answer(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const hit = this.entries.get(req.url ?? '');
    if (!hit) return false;
    sendEntry(req, res, hit, this.chunks);
    return true;
  }

  /**
   * The same answer for the fast path (fast-path.ts), written on the socket as node:http would write
   * it; `sharedLines` are the date and connection fields. False when `request.url` is not held, or is
   * held open and `streamed` is not given: its body is written as the socket drains, 'streaming' is
   * returned, and `streamed` runs once it is all written.
   */
  answerOnSocket(socket: net.Socket, request: PlainRequest, sharedLines: string, streamed?: () => void): boolean | 'streaming' {
    const hit = this.entries.get(request.url);
    if (!hit) return false;
    if (request.ifNoneMatch === hit.etag) {
      socket.write(`HTTP/1.1 304 Not Modified\r\n${sharedLines}${hit.lines304}\r\n`, 'latin1');
      return true;
    }
    if (hit.file && request.method === 'GET' && !streamed) return false;
    // Built once a second for each file in demand: the date is the only part that changes.
    let wire = hit.wire;
    if (wire?.sharedLines !== sharedLines) {
      const head = Buffer.from(`HTTP/1.1 200 OK\r\n${sharedLines}${hit.lines200}\r\n`, 'latin1');
      wire = hit.wire = { sharedLines, head, whole: hit.body && hit.body.length <= WHOLE_ANSWER_BYTES ? Buffer.concat([head, hit.body]) : undefined };
    }
    if (request.method === 'HEAD') socket.write(wire.head);
    else if (wire.whole) socket.write(wire.whole);
    else if (hit.body) {
      socket.write(wire.head);
      socket.write(hit.body);
    } else {
      socket.write(wire.head);
      pumpFile(hit.file!, 0, hit.length - 1, socket, this.chunks, (error) => (error ? socket.destroy() : streamed!()));
      return 'streaming';
    }
    return true;
  }

  /**
   * The same answer for the native front (agent-front.ts), in its parts: undefined where the fast path
   * would not answer from memory (not held, or held open: those are streamed as the socket drains).
   */
  frontAnswer(request: PlainRequest): FrontAnswer | undefined {
    const hit = this.entries.get(request.url);
    if (!hit) return undefined;
    hit.front ??= { rest200: Buffer.from(`${hit.lines200}\r\n`, 'latin1'), rest304: Buffer.from(`${hit.lines304}\r\n`, 'latin1') };
    if (request.ifNoneMatch === hit.etag) return [STATUS_304, hit.front.rest304, null];
    if (!hit.body) return undefined;
    return [STATUS_200, hit.front.rest200, request.method === 'HEAD' ? null : hit.body];
  }

  /** `listener` runs whenever an entry is removed or replaced: what was answered from it must not be answered again. */
  onRemove(listener: () => void): void {
    this.removed.push(listener);
  }

  put(url: string, body: Buffer, headers: http.OutgoingHttpHeaders, etag: string): void {
    const large = body.length > this.maxEntryBytes;
    if (large && (headers['cache-control'] !== IMMUTABLE || body.length > this.maxImmutableEntryBytes)) return;
    this.remove(url);
    this.entries.set(url, makeEntry({ body }, headers, etag));
    if (large) this.largeBytes += body.length;
    else this.bytes += body.length;
    this.evict();
  }

  /**
   * Keep the file answering `url` (read whole when small, held open when large and content-addressed)
   * and return its entry; undefined for a large file that may change. Throws if the file is gone.
   */
  keep(url: string, file: string, headers: http.OutgoingHttpHeaders, etag: string): CacheEntry | undefined {
    const held = this.entries.get(url);
    if (held?.etag === `"${etag}"`) return held;
    const size = fs.statSync(file).size;
    if (size <= this.maxEntryBytes || (headers['cache-control'] === IMMUTABLE && size <= this.maxImmutableEntryBytes)) {
      this.put(url, fs.readFileSync(file), headers, etag);
      return this.entries.get(url);
    }
    if (headers['cache-control'] !== IMMUTABLE) return undefined;
    this.remove(url);
    const entry = makeEntry({ file: OpenFile.open(file) }, headers, etag);
    this.entries.set(url, entry);
    this.openFiles++;
    this.evict();
    return entry;
  }

  /** Oldest first, each kind within its own budget. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes && this.largeBytes <= this.maxLargeBytes && this.openFiles <= this.maxOpenFiles) break;
      const over = entry.file ? this.openFiles > this.maxOpenFiles : entry.length > this.maxEntryBytes ? this.largeBytes > this.maxLargeBytes : this.bytes > this.maxBytes;
      if (over) this.remove(key);
    }
  }

  /** Forget every entry whose URL `test` picks. */
  drop(test: (url: string) => boolean): void {
    for (const url of [...this.entries.keys()]) if (test(url)) this.remove(url);
  }

  private remove(url: string): void {
    const entry = this.entries.get(url);
    if (!entry) return;
    this.entries.delete(url);
    for (const listener of this.removed) listener();
    if (entry.file) {
      this.openFiles--;
      entry.file.retire();
    } else if (entry.length > this.maxEntryBytes) this.largeBytes -= entry.length;
    else this.bytes -= entry.length;
  }
}

export interface AfterBurstOptions {
  /** Requests that make a burst. */
  minRequests?: number;
  /** A window without any request: the burst is over. */
  quietMs?: number;
  /** What a burst's end does (a full collection). */
  collect?: () => void;
  /** Bytes of held-open files read so far (FileChunks.bytesRead): large answers make a burst by their bytes. */
  fileBytes?: () => number;
  /** File bytes that make a burst: a few hundred answers of a 20 MB file are one. */
  minFileBytes?: number;
  /** Requests answered elsewhere (the native front) since the last call. */
  answeredElsewhere?: () => number;
}

/**
 * Gives a thread's memory back once a burst of requests (a release's fan-out, thousands of agents
 * reconnecting) is over. V8 keeps the young generation it grew under the burst until its memory
 * reducer notices the thread is idle, and a server then holds its agents' streams for hours: a full
 * collection once the requests stop returns that memory at once (docs/benchmarks.md). Counting costs
 * an increment per request; the check runs every `quietMs`. The price, in a worker thread: the
 * collection frees the hidden classes of the burst's dead requests, V8 deoptimizes node:http's code
 * built on them (--trace-deopt: "weak objects"), and the next burst's first seconds cost more CPU
 * per request until it is compiled again (as after V8's own idle collection).
 */
export class AfterBurst {
  private sinceCollection = 0;
  private sinceCheck = 0;
  private bytesAtCollection = 0;
  private bytesAtCheck = 0;
  private readonly timer: NodeJS.Timeout;

  constructor({ minRequests = 1_000, quietMs = 2_000, collect = collectGarbage, fileBytes = () => 0, minFileBytes = 256 * 1024 * 1024, answeredElsewhere = () => 0 }: AfterBurstOptions = {}) {
    this.timer = setInterval(() => {
      this.request(answeredElsewhere());
      const bytes = fileBytes();
      const quiet = this.sinceCheck === 0 && bytes === this.bytesAtCheck;
      if (quiet && (this.sinceCollection >= minRequests || bytes - this.bytesAtCollection >= minFileBytes)) {
        this.sinceCollection = 0;
        this.bytesAtCollection = bytes;
        collect();
      }
      this.sinceCheck = 0;
      this.bytesAtCheck = bytes;
    }, quietMs);
    this.timer.unref();
  }

  request(count = 1): void {
    this.sinceCollection += count;
    this.sinceCheck += count;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A thread's AfterBurst: a burst is counted in requests and in the bytes of the cache's held-open files, and ends with the read buffers let go and a collection. */
function afterBurstFor(cache: ResponseCache, answeredElsewhere?: () => number): AfterBurst {
  return new AfterBurst({
    answeredElsewhere,
    collect: () => {
      cache.chunks.release();
      collectGarbage();
    },
    fileBytes: () => cache.chunks.bytesRead,
  });
}

/**
 * What a thread's agents' servers share: the answers it holds, the count of its bursts, and the heads
 * it has read (a thread listens with AGENT_LISTENERS_PER_THREAD servers per address; one copy each).
 */
export interface ThreadServing {
  cache: ResponseCache;
  burst: AfterBurst;
  heads: PlainHeads;
}

/** `answeredElsewhere`: answers the thread's native front wrote since the last call (agent-front.ts). */
export function threadServing(answeredElsewhere?: () => number): ThreadServing {
  const cache = new ResponseCache();
  return { cache, burst: afterBurstFor(cache, answeredElsewhere), heads: new PlainHeads() };
}

/** One thread's notification streams, by agent id. */
export class Streams {
  private readonly byAgent = new Map<string, Set<http.ServerResponse>>();

  add(id: string, res: http.ServerResponse): () => void {
    let set = this.byAgent.get(id);
    if (!set) this.byAgent.set(id, (set = new Set()));
    set.add(res);
    return () => {
      set.delete(res);
      if (!set.size) this.byAgent.delete(id);
    };
  }

  /** Send an already formatted event to every connected agent, or only to agent `to`. */
  send(message: string, to?: string): void {
    const sets = to === undefined ? this.byAgent.values() : [this.byAgent.get(to) ?? new Set<http.ServerResponse>()];
    for (const set of sets) for (const res of set) res.write(message);
  }

  ids(): IterableIterator<string> {
    return this.byAgent.keys();
  }

  endAll(): void {
    for (const set of this.byAgent.values()) for (const res of set) res.end();
    this.byAgent.clear();
  }
}

/**
 * The agents' listen queue: room for a fleet's connections arriving at once (a release announced to
 * thousands, wrk's 2,000), up to the kernel's somaxconn (4096 on Linux since 5.4). With Node's default
 * of 511, a burst overflowed the queue while the event loop accepted (nstat's TcpExtListenOverflows):
 * the dropped handshakes came back after the kernel's 1 s, 3 s... retries, which was the 2-4 s tail of
 * answers at 2,000 connections (docs/benchmarks.md).
 */
export const AGENT_LISTEN_BACKLOG = 4096;

/**
 * Listening sockets per address in each file thread (file-thread.ts). libuv (1.49 on, Node 22's) accepts one connection per
 * listening socket per turn of the event loop, and a turn under load answers up to 1,024 ready
 * connections first: 1,000 agents connecting at once to a thread that is answering others waited up to
 * 3 s for their first answer (and wrk's p99 with them). With 16 sockets (all in the port's SO_REUSEPORT
 * group, so the kernel spreads new connections over them) a turn accepts up to 16 (docs/benchmarks.md).
 */
export const AGENT_LISTENERS_PER_THREAD = 16;

/**
 * An agents' HTTP server as every thread runs it: the fast path in front for what `cache` holds
 * (each of its answers counted in `burst`), node:http with `onRequest` for the rest. Notification
 * streams are long-lived by design; a request's head still has a deadline.
 */
export function agentHttpServer(onRequest: http.RequestListener, { cache, burst, heads }: ThreadServing): { server: http.Server; fastPath: FastPath } {
  const server = createServer(onRequest);
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  return { server, fastPath: new FastPath(server, cache, heads, () => burst.request()) };
}
