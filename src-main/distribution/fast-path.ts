// The agents' most frequent request — a GET of something the ResponseCache holds whole: the
// timestamp, the index, metadata, an incremental — answered on the socket before node:http parses
// it. node:http builds a request and a response object, several streams' worth of state and a
// header block for each request; for these answers that is most of a file thread's CPU, and what
// keeps Node under half of nginx's throughput on the same files (docs/benchmarks.md).
//
// The fast path only ever answers; it never refuses. It takes a request whose whole head is in the
// bytes at hand and that reads plainly — GET or HEAD, an origin-form target, HTTP/1.1, one Host,
// header lines node:http would accept, no body, no Range, no Upgrade, no Expect, no Connection
// other than keep-alive — and whose answer the cache holds. At the first request it does not
// take (a cache miss, a notification stream, a POST, a head split over two reads, anything
// unusual or malformed), it hands the connection with its unread bytes to node:http for the rest
// of its life, and node:http answers or refuses as it does for every other connection.
import type http from 'node:http';
import type net from 'node:net';
import type { ResponseCache } from './agent-http.js';

/** node:http's default limit on a request's head (--max-http-header-size): larger heads go to it, which answers 431. */
export const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** Heads remembered with what they read as (PlainHeads), each at most MAX_HEAD_KEPT_BYTES: 128 kB at most. */
const MAX_HEADS_KEPT = 256;
/** An agent's head is about 150 bytes; longer ones are read each time. */
const MAX_HEAD_KEPT_BYTES = 512;
const REQUEST_LINE = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
/** RFC 9110 §5.1: a field name is a token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5: no control characters in a field value but horizontal tab. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Fields that frame a body, ask for part of the answer or for another protocol: node:http's to handle. */
const LEFT_TO_NODE_HTTP = new Set(['content-length', 'transfer-encoding', 'range', 'if-range', 'expect', 'upgrade', 'te']);

/** What the fast path reads of a request. */
export interface PlainRequest {
  method: 'GET' | 'HEAD';
  url: string;
  ifNoneMatch: string | undefined;
}

/** Read a request's head (up to, without, its empty line) if it reads plainly; undefined for anything else. */
export function readPlainHead(head: string): PlainRequest | undefined {
  const lines = head.split('\r\n');
  const start = REQUEST_LINE.exec(lines[0]!);
  if (!start) return undefined;
  let hosts = 0;
  let ifNoneMatch: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (CONTROL.test(value) || LEFT_TO_NODE_HTTP.has(name)) return undefined;
    if (name === 'host') hosts++;
    else if (name === 'if-none-match') {
      if (ifNoneMatch !== undefined) return undefined;
      ifNoneMatch = value;
    } else if (name === 'connection' && value.toLowerCase() !== 'keep-alive') return undefined;
  }
  if (hosts !== 1) return undefined;
  return { method: start[1] as 'GET' | 'HEAD', url: start[2]!, ifNoneMatch };
}

/**
 * Heads read lately, and what they read as (undefined: not plainly): one per thread, shared by its
 * servers. A fleet's agents ask for the same few files with the same head (same version, same server,
 * no credential on file requests), so a fan-out reads each head once rather than once per agent.
 * Emptied when full.
 */
export class PlainHeads {
  private readonly heads = new Map<string, PlainRequest | undefined>();

  read(head: string): PlainRequest | undefined {
    if (this.heads.has(head)) return this.heads.get(head);
    const request = readPlainHead(head);
    if (head.length <= MAX_HEAD_KEPT_BYTES) {
      if (this.heads.size >= MAX_HEADS_KEPT) this.heads.clear();
      this.heads.set(head, request);
    }
    return request;
  }
}

/**
 * Puts the fast path in front of `server`'s own handling of its connections. `onAnswer` runs for
 * each request answered here (node:http's requests reach the server's request listener as before).
 */
export class FastPath {
  /** Connections still on the fast path, which node:http does not know of. */
  private readonly sockets = new Set<net.Socket>();
  private date = { second: -1, lines: '' };

  constructor(
    private readonly server: http.Server,
    private readonly cache: ResponseCache,
    private readonly heads: PlainHeads,
    private readonly onAnswer: () => void,
  ) {
    // An http.Server parses its connections in the one 'connection' listener its constructor adds.
    const listeners = server.listeners('connection');
    if (listeners.length !== 1) throw new Error(`the fast path expects node:http's one connection listener, found ${listeners.length}`);
    const toNodeHttp = listeners[0] as (socket: net.Socket) => void;
    server.removeListener('connection', toNodeHttp);
    server.on('connection', (socket: net.Socket) => this.take(socket, toNodeHttp));
  }

  /** End every connection of the server: those still on the fast path, which node:http does not know of, and node:http's. */
  closeAllConnections(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    this.server.closeAllConnections();
  }

  private take(socket: net.Socket, toNodeHttp: (socket: net.Socket) => void): void {
    let answered = false;
    const onData = (chunk: Buffer) => {
      let at = 0;
      // Answers to pipelined requests go out in one write; a lone request's (the usual case) is
      // written at once, without the cork's buffering.
      let corked = false;
      // An agent that does not read its answers gets no more of them here: node:http's own
      // back-pressure takes over with what is left.
      while (at < chunk.length && !socket.writableNeedDrain) {
        const end = chunk.indexOf(HEAD_END, at);
        if (end < 0 || end - at > MAX_HEAD_BYTES) break;
        const request = this.heads.read(chunk.toString('latin1', at, end));
        // A file held open is written as the socket drains: only for the last request at hand, and the
        // connection is not read meanwhile, so that answers keep the requests' order.
        const last = end + HEAD_END.length === chunk.length;
        const answered = request && this.cache.answerOnSocket(socket, request, this.sharedLines(), last ? () => socket.resume() : undefined);
        if (!answered) break;
        this.onAnswer();
        at = end + HEAD_END.length;
        if (answered === 'streaming') socket.pause();
        else if (!corked && at < chunk.length) {
          socket.cork();
          corked = true;
        }
      }
      if (corked) socket.uncork();
      if (at < chunk.length) handOver(chunk.subarray(at));
      else if (!answered) {
        answered = true;
        socket.setTimeout(this.server.keepAliveTimeout);
      }
    };
    // An http.Server's sockets are half-open by design: node:http ends its side when the agent ends
    // its own, and so does the fast path, once its answers are written.
    const onEnd = () => socket.end();
    const onTimeout = () => socket.destroy();
    const onError = () => socket.destroy();
    const onClose = () => this.sockets.delete(socket);
    const handOver = (unread: Buffer) => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('timeout', onTimeout);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.setTimeout(0);
      this.sockets.delete(socket);
      // The unread bytes are put back while the socket is paused, and flow to node:http's parser when
      // it resumes, once node:http listens: before anything read later (which goes to the parser directly).
      socket.pause();
      socket.unshift(unread);
      toNodeHttp.call(this.server, socket);
      socket.resume();
    };
    this.sockets.add(socket);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    // Until its first answer, a connection has the time node:http gives a request's head; then that of an idle keep-alive connection.
    socket.on('timeout', onTimeout);
    socket.setTimeout(this.server.headersTimeout);
  }

  /** The header lines every answer shares, as node:http writes them: the date changes each second. */
  private sharedLines(): string {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.date.second) {
      const keepAlive = Math.floor(this.server.keepAliveTimeout / 1000);
      this.date = { second, lines: `date: ${new Date(second * 1000).toUTCString()}\r\nconnection: keep-alive\r\nkeep-alive: timeout=${keepAlive}\r\n` };
    }
    return this.date.lines;
  }
}
