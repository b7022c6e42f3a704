// The agent's end of the server's notification stream (server-sent events, parsed as they arrive),
// and the back-off it reconnects with.
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

/**
 * Hold GET `url` open and hand each event to `onEvent`. Resolves when the server ends the stream,
 * rejects on a network error, an HTTP error (HttpStatusError), silence longer than `idleMs` (the
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
  await streamRequest(
    url,
    {
      headers: { authorization: `Bearer ${options.credential}`, accept: 'text/event-stream' },
      timeoutMs: options.idleMs,
      signal: options.signal,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    },
    {
      head({ status }) {
        if (status !== 200) throw new HttpStatusError(status, url);
      },
      data(chunk) {
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
}

/**
 * Capped exponential back-off with full jitter (each wait is random between 0 and the cap of its
 * step), so agents that lost their server at the same moment come back spread out, not together.
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
