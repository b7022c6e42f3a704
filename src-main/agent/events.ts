// The agent's end of the server's notification stream (server-sent events, parsed as they arrive),
// and the back-off it reconnects with.
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { HttpStatusError } from '../engine/errors.js';
import { streamRequest } from '../engine/http.js';
import { AGENT_LIMITS } from '../protocol/agent-protocol.js';

export interface ServerEvent {
  event: string;
  data: string;
}

/** The stream broke the protocol (a line or an event over its limit): the agent drops it and reconnects with back-off. */
export class StreamViolation extends Error {}

/** An answer other than 200 to the stream's GET, with what tells who wrote it (the server, or a proxy on the way). */
export class StreamRefused extends HttpStatusError {
  constructor(
    status: number,
    url: string,
    readonly headers: IncomingHttpHeaders,
    readonly body: Buffer,
  ) {
    super(status, url);
  }
}

/**
 * Hold GET `url` open and hand each event to `onEvent`. Resolves when the server ends the stream,
 * rejects on a network error, an answer other than 200 (StreamRefused, with its head and up to
 * AGENT_LIMITS.answerBytes of its body), silence longer than `idleMs` (the
 * server pings every 15 s), a line or an event over its limit (StreamViolation: what is held of the
 * stream stays bounded) or `signal`.
 */
export async function followEvents(
  url: string,
  options: { credential: string; dispatcher?: Dispatcher; idleMs: number; signal: AbortSignal },
  onEvent: (event: ServerEvent) => void,
): Promise<void> {
  let buffer = '';
  let event: ServerEvent = { event: 'message', data: '' };
  const decoder = new TextDecoder();
  let refused: { status: number; headers: IncomingHttpHeaders; chunks: Buffer[]; size: number } | undefined;
  await streamRequest(
    url,
    {
      headers: { authorization: `Bearer ${options.credential}`, accept: 'text/event-stream' },
      timeoutMs: options.idleMs,
      signal: options.signal,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    },
    {
      head({ status, headers }) {
        if (status !== 200) refused = { status, headers, chunks: [], size: 0 };
      },
      data(chunk) {
        if (refused) {
          // Kept to tell the server's refusal (JSON) from a proxy's error page; bounded like any answer.
          refused.size += chunk.length;
          if (refused.size > AGENT_LIMITS.answerBytes) throw new HttpStatusError(refused.status, url);
          refused.chunks.push(chunk);
          return;
        }
        buffer += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, '');
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (event.data !== '' || event.event !== 'message') onEvent(event);
            event = { event: 'message', data: '' };
          } else if (line.startsWith('event:')) event.event = line.slice(6).trim();
          else if (line.startsWith('data:')) {
            event.data += (event.data ? '\n' : '') + line.slice(5).trimStart();
            if (event.data.length > AGENT_LIMITS.eventBytes) throw new StreamViolation(`the server sent an event of over ${AGENT_LIMITS.eventBytes / 1024} kB on the notification stream (data lines without the blank line that ends an event)`);
          }
          // comments (": ping") and unknown fields are ignored
        }
        if (buffer.length > AGENT_LIMITS.eventLineBytes) throw new StreamViolation(`the server sent a line of over ${AGENT_LIMITS.eventLineBytes / 1024} kB on the notification stream`);
      },
    },
  );
  if (refused) throw new StreamRefused(refused.status, url, refused.headers, Buffer.concat(refused.chunks));
}

/**
 * Capped exponential back-off with full jitter (each wait is random between 0 and the cap of its
 * step), so agents that lost their server at the same moment come back spread out, not together.
 * Every reconnection goes through it, a stream that failed or one that ended cleanly alike (a proxy
 * that answers 200 and closes would otherwise be asked again thousands of times a second); only a
 * stream that lived long (LONG_LIVED_MS) starts it over.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 1000,
    private readonly capMs = 60_000,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.random() * ceiling);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** A stream that stayed open this long was a working connection: its end starts the back-off over. */
export const LONG_LIVED_MS = 30_000;

/** Wait `ms`, or less if `signal` aborts; the abort listener goes with the wait (no listener piles up per reconnection). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
