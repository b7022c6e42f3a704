// HTTP requests over undici's dispatcher API (so a ProxyAgent or any other Dispatcher plugs in), with
// the body handed to the caller chunk by chunk, synchronously, and never paused.
//
// Why not undici's request(): its body stream pauses the HTTP/1 parser under backpressure, and in
// undici 7 a peer that closes the connection while the parser is paused kills the process with an
// uncatchable assertion (nodejs/undici#5360, fixed only in undici 8, which needs Node 22). Every
// consumer here writes a chunk to a file or a small buffer at once, so there is never a reason to
// pause, and the parser never is.
import type { IncomingHttpHeaders } from 'node:http';
import { NetworkError } from './errors.js';
import { Agent, type Dispatcher } from './undici.js';

export interface HttpRequestOptions {
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  dispatcher?: Dispatcher;
  /** Longest wait for the response head, and between two body chunks. */
  timeoutMs: number;
  /** Longest the whole exchange may take, head and body: a peer that drips its answer fails here (NetworkError). */
  deadlineMs?: number;
  /** Names the exchange in the deadline's message ("the policy"). */
  what?: string;
  signal?: AbortSignal;
}

export interface HttpHead {
  status: number;
  headers: IncomingHttpHeaders;
}

export interface BodySink {
  /** The status line and headers; throw to abort the request (the error is what the call rejects with). */
  head?(head: HttpHead): void;
  /** One body chunk; throw to abort (e.g. a length cap). */
  data(chunk: Buffer): void;
}

let defaultDispatcher: Dispatcher | undefined;

/** Send a request and stream its body into `sink`; resolves with the head once the body has ended. */
export function streamRequest(url: string | URL, options: HttpRequestOptions, sink: BodySink): Promise<HttpHead> {
  const target = new URL(url);
  const dispatcher = options.dispatcher ?? (defaultDispatcher ??= new Agent());
  return new Promise<HttpHead>((resolve, reject) => {
    let head: HttpHead | undefined;
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    let received = 0;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      if (error !== undefined) reject(error);
      else resolve(head!);
    };
    /** Abort the exchange because of `error`, which the call then rejects with. */
    const abortWith = (error: unknown) => {
      finish(error);
      if (controller && !controller.aborted) controller.abort(error instanceof Error ? error : new Error(String(error)));
    };
    const onAbort = () => abortWith(options.signal!.reason ?? new Error('aborted'));
    const deadline =
      options.deadlineMs === undefined
        ? undefined
        : setTimeout(() => {
            const what = options.what ?? target.pathname;
            const sofar = head ? `it sent ${received} byte${received === 1 ? '' : 's'} of the answer` : 'no answer came';
            abortWith(new NetworkError(`${target.origin} did not finish answering ${what} within ${Math.round(options.deadlineMs! / 1000)} s (${sofar}): too slow, gave up`));
          }, options.deadlineMs);
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(ctrl) {
        controller = ctrl;
        if (settled) ctrl.abort(new Error('aborted'));
      },
      onResponseStart(_ctrl, status, headers) {
        if (status < 200) return; // 1xx informational
        head = { status, headers };
        try {
          sink.head?.(head);
        } catch (error) {
          abortWith(error);
        }
      },
      onResponseData(_ctrl, chunk) {
        if (settled) return;
        received += chunk.length;
        try {
          sink.data(chunk);
        } catch (error) {
          abortWith(error);
        }
      },
      onResponseEnd() {
        finish();
      },
      onResponseError(_ctrl, error) {
        finish(error);
      },
    };
    try {
      dispatcher.dispatch(
        {
          origin: target.origin,
          path: target.pathname + target.search,
          method: options.method ?? 'GET',
          headers: { host: target.host, ...options.headers },
          body: options.body ?? null,
          headersTimeout: options.timeoutMs,
          bodyTimeout: options.timeoutMs,
        },
        handler,
      );
    } catch (error) {
      finish(error);
    }
  });
}

/** A request whose body is small (JSON, an error page): collected in memory, refused beyond `maxBytes`. */
export async function bufferedRequest(url: string | URL, options: HttpRequestOptions & { maxBytes: number }): Promise<HttpHead & { body: Buffer }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const head = await streamRequest(url, options, {
    data(chunk) {
      size += chunk.length;
      if (size > options.maxBytes) throw new Error(`the answer from ${new URL(url).origin} is larger than ${options.maxBytes} bytes`);
      chunks.push(chunk);
    },
  });
  return { ...head, body: Buffer.concat(chunks, size) };
}
