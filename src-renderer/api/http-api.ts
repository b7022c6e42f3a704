// The console API over HTTP, for the browser console served by `bulwark serve --console`:
// calls are `POST /api/call/<method>` with the params as JSON, events arrive as server-sent events
// on `GET /api/events`. The access token travels in the cookie the server set when the page was
// opened as /?token=…, so nothing here handles secrets.
//
// The event stream is the connection: while it is open the console is live. When it drops, the
// browser retries by itself; when it is refused (the server restarted with a new token, or never
// knew ours), EventSource gives up and this class retries with back-off, asking the API first so
// that a 401 can be told apart from a server that is simply not there.
import {
  CONSOLE_EVENTS,
  CONSOLE_METHODS,
  type ApiErrorBody,
  type ConsoleApi,
  type ConsoleEvent,
  type ConsoleEvents,
  type ConsoleMethod,
  type ConsoleMethods,
} from '../../src-main/console/contract.js';
import type { ConnectionMonitor, ConnectionStatus } from './connection.js';
import { ConsoleApiError, sentence, UNAUTHORIZED_MESSAGE } from './errors.js';

export interface HttpConsoleApiOptions {
  /** Where the API lives, ending in "/"; the page's own server by default. */
  baseUrl?: string;
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  /** First and longest wait between attempts to reopen a refused or failed event stream. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

type AnyListener = (payload: unknown) => void;

export class HttpConsoleApi implements ConsoleApi, ConnectionMonitor {
  readonly #baseUrl: string;
  readonly #fetch: typeof fetch;
  readonly #EventSource: typeof EventSource;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;

  #status: ConnectionStatus = { kind: 'connecting' };
  readonly #statusListeners = new Set<(status: ConnectionStatus) => void>();
  readonly #listeners = new Map<ConsoleEvent, Set<AnyListener>>();
  #source: EventSource | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  #closed = false;

  constructor(options: HttpConsoleApiOptions = {}) {
    this.#baseUrl = options.baseUrl ?? '/';
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#EventSource = options.EventSource ?? globalThis.EventSource;
    this.#retryMinMs = options.retryMinMs ?? 1_000;
    this.#retryMaxMs = options.retryMaxMs ?? 30_000;
  }

  get status(): ConnectionStatus {
    return this.#status;
  }

  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  async call<M extends ConsoleMethod>(method: M, params: ConsoleMethods[M]['params']): Promise<ConsoleMethods[M]['result']> {
    if (!CONSOLE_METHODS.includes(method)) throw new ConsoleApiError(`Unknown method "${method}"`, 'not-found');
    let response: Response;
    try {
      response = await this.#fetch(`${this.#baseUrl}api/call/${encodeURIComponent(method)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' },
        // Methods without parameters take null (the server checks it).
        body: JSON.stringify(params ?? null),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (cause) {
      throw new ConsoleApiError('Cannot reach the Bulwark server', 'network', { cause });
    }
    if (response.status === 401) {
      this.#setStatus({ kind: 'unauthorized', message: UNAUTHORIZED_MESSAGE });
      throw new ConsoleApiError(UNAUTHORIZED_MESSAGE, 'unauthorized');
    }
    if (!response.ok) {
      const body = await readErrorBody(response);
      throw new ConsoleApiError(sentence(body.error), body.code);
    }
    // The token works again (opened in another tab, say): bring the event stream back now.
    if (this.#status.kind === 'unauthorized' && !this.#source) this.#retryNow();
    try {
      return (await response.json()) as ConsoleMethods[M]['result'];
    } catch (cause) {
      throw new ConsoleApiError(`The server sent an unreadable answer to ${method}`, 'internal', { cause });
    }
  }

  on<E extends ConsoleEvent>(event: E, listener: (payload: ConsoleEvents[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    const entry = listener as AnyListener;
    set.add(entry);
    this.#open();
    return () => {
      set.delete(entry);
    };
  }

  /** Stop listening and retrying (the page is going away). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#source?.close();
    this.#source = undefined;
  }

  #setStatus(status: ConnectionStatus): void {
    const previous = this.#status;
    if (previous.kind === status.kind && JSON.stringify(previous) === JSON.stringify(status)) return;
    this.#status = status;
    for (const listener of this.#statusListeners) {
      try {
        listener(status);
      } catch (error) {
        console.error('connection status listener failed', error);
      }
    }
  }

  #open(): void {
    if (this.#source || this.#closed || this.#retryTimer !== undefined) return;
    const source = new this.#EventSource(`${this.#baseUrl}api/events`);
    this.#source = source;
    for (const event of CONSOLE_EVENTS) {
      source.addEventListener(event, (message) => this.#dispatch(event, message.data));
    }
    source.addEventListener('open', () => {
      this.#attempt = 0;
      this.#setStatus({ kind: 'connected' });
    });
    source.addEventListener('error', () => {
      if (source.readyState === this.#EventSource.CLOSED) {
        // Refused (401, or not an event stream): EventSource will not retry; we do, after asking why.
        source.close();
        if (this.#source === source) this.#source = undefined;
        this.#scheduleRetry();
      } else if (this.#status.kind !== 'unauthorized') {
        // Dropped: the browser is already reconnecting.
        this.#setStatus({ kind: 'reconnecting', attempt: ++this.#attempt });
      }
    });
  }

  #dispatch(event: ConsoleEvent, data: unknown): void {
    let payload: unknown;
    try {
      payload = JSON.parse(String(data));
    } catch {
      console.warn(`ignored a "${event}" event whose data is not JSON`);
      return;
    }
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        listener(payload);
      } catch (error) {
        console.error(`a "${event}" listener failed`, error);
      }
    }
  }

  #scheduleRetry(): void {
    if (this.#closed) return;
    clearTimeout(this.#retryTimer);
    this.#attempt += 1;
    if (this.#status.kind !== 'unauthorized') this.#setStatus({ kind: 'reconnecting', attempt: this.#attempt });
    const backoff = Math.min(this.#retryMaxMs, this.#retryMinMs * 2 ** Math.min(this.#attempt - 1, 10));
    const delay = this.#status.kind === 'unauthorized' ? this.#retryMaxMs : backoff * (0.8 + Math.random() * 0.4);
    this.#retryTimer = setTimeout(() => void this.#probeThenOpen(), delay);
  }

  #retryNow(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#open();
  }

  /** Ask the API whether the server is there and takes our token before reopening the stream. */
  async #probeThenOpen(): Promise<void> {
    this.#retryTimer = undefined;
    try {
      await this.call('snapshot', undefined);
    } catch {
      // 401 has set the status to unauthorized; anything else leaves it reconnecting.
      this.#scheduleRetry();
      return;
    }
    this.#open();
  }
}

async function readErrorBody(response: Response): Promise<ApiErrorBody> {
  const fallback: ApiErrorBody = {
    error: `the server answered ${response.status} ${response.statusText}`.trim(),
    code: response.status === 404 ? 'not-found' : response.status === 400 ? 'bad-request' : 'internal',
  };
  try {
    const body = (await response.json()) as Partial<ApiErrorBody> | null;
    if (body && typeof body.error === 'string') return { error: body.error, code: body.code ?? fallback.code };
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is.
  }
  return fallback;
}
