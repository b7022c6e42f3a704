// A hostile HTTP server of the test's own, between a real agent and a real server: it forwards every
// request to the server, except where a test tells it to lie (a rule for a path), and can write
// into the notification streams it relays. Everything it does is recorded for the test to check.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a rule does with one request: answer it itself, or let it through (`forward`). */
export type Rule = (req: http.IncomingMessage, res: http.ServerResponse, forward: () => void) => void;

export class RogueServer {
  url = '';
  /** Paths asked, in order. */
  readonly requests: string[] = [];
  private readonly rules: { path: RegExp; rule: Rule }[] = [];
  private readonly streams = new Set<http.ServerResponse>();
  private readonly server: http.Server;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly upstream: string) {
    this.server = http.createServer((req, res) => {
      const path = req.url ?? '/';
      this.requests.push(`${req.method} ${path}`);
      const forward = () => this.forward(req, res);
      const match = this.rules.find((r) => r.path.test(new URL(path, 'http://x').pathname));
      if (match) match.rule(req, res, forward);
      else forward();
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
    return this;
  }

  /** Answer requests for paths matching `path` with `rule` (the newest rule for a path wins); returns a function that removes it. */
  on(path: RegExp, rule: Rule): () => void {
    const entry = { path, rule };
    this.rules.unshift(entry);
    return () => {
      const at = this.rules.indexOf(entry);
      if (at >= 0) this.rules.splice(at, 1);
    };
  }

  /** Let `path` through, but change the JSON the server answers with. */
  rewriteJson(path: RegExp, change: (body: unknown) => string): () => void {
    return this.on(path, (req, res) => {
      this.forward(req, res, (status, headers, body) => {
        let text = body.toString('utf8');
        try {
          text = change(JSON.parse(text));
        } catch {
          // not JSON: passed on as it is
        }
        res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) }).end(text);
      });
    });
  }

  /** Let `path` through as it streams, each chunk changed by `change` (the notification stream's events, for instance). */
  rewriteStream(path: RegExp, change: (text: string) => string): () => void {
    return this.on(path, (req, res) => this.forward(req, res, undefined, change));
  }

  /** Answer `path` with 200 and `body`, one byte every `everyMs` (a server that never quite answers). */
  drip(path: RegExp, body: string, everyMs: number): () => void {
    return this.on(path, (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed || sent >= body.length) {
          clearInterval(timer);
          this.timers.delete(timer);
          if (!res.destroyed) res.end();
          return;
        }
        res.write(body[sent++]);
      }, everyMs);
      this.timers.add(timer);
      res.on('close', () => {
        clearInterval(timer);
        this.timers.delete(timer);
      });
    });
  }

  /** Write `text` into every notification stream relayed now; how many streams it reached. */
  inject(text: string): number {
    for (const res of this.streams) res.write(text);
    return this.streams.size;
  }

  /** End every notification stream relayed now (the agents behind it reconnect). */
  dropStreams(): void {
    for (const res of this.streams) res.destroy();
  }

  /** Notification streams relayed now. */
  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Send the request on to the server. With `answer`, the server's answer is collected and handed
   * to it (to change); without, it is passed through as it comes (streams too).
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, answer?: (status: number, headers: http.IncomingHttpHeaders, body: Buffer) => void, change?: (text: string) => string): void {
    const target = new URL(req.url ?? '/', this.upstream);
    const upstream = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (reply) => {
      if (!answer) {
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        if (String(reply.headers['content-type']).startsWith('text/event-stream')) {
          this.streams.add(res);
          res.on('close', () => this.streams.delete(res));
        }
        if (change) reply.on('data', (chunk: Buffer) => res.write(change(chunk.toString('utf8')))).on('end', () => res.end());
        else reply.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      reply.on('data', (chunk: Buffer) => chunks.push(chunk));
      reply.on('end', () => {
        const headers = { ...reply.headers };
        delete headers['transfer-encoding'];
        delete headers.etag;
        answer(reply.statusCode ?? 502, headers, Buffer.concat(chunks));
      });
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    for (const res of this.streams) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
