// The server's face to its agents, over HTTP. Two kinds of routes:
//
// Files, public like a CDN (the content is the vendor's signed data, and agents verify it themselves),
// cacheable by any HTTP cache (docs/mirror.md):
//   GET|HEAD /metadata/timestamp.json        the upstream's timestamp, as verified (short-lived)
//   GET|HEAD /metadata/<v>.<role>.json       root chain, snapshot, targets (immutable)
//   GET|HEAD /targets/<dir>/<sha256>.<name>  relayed signed targets (immutable, Range)
//   GET|HEAD /made/<id>/<name>               server-made incrementals and full files (immutable, Range)
//   GET      /agents/v1/index.json           the advisory index of the current release
//
// Agent endpoints, each authenticated by the agent's own credential (Authorization: Bearer), except
// enrollment, which takes the enrollment token:
//   POST /agents/v1/enroll    {token, name, hostname} -> {id, credential, root, pollSeconds, spreadSeconds}
//   POST /agents/v1/report    an AgentReport -> {release, pollSeconds, spreadSeconds}
//   GET  /agents/v1/policy    what this agent is to hold: {pins: {id: version}, ring, hold} — the
//                             server's pins, and whether the rollout has reached the agent's ring
//   GET  /agents/v1/events    server-sent events: "hello" on connect, "release" on each new release,
//                             "update" when asked to update now (the console's "Update agents now")
//
// Agent credentials open nothing else: the console is a different server with its own token.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { Ajv, type JSONSchemaType } from 'ajv';
import { describeError } from '../engine/errors.js';
import type { Distribution, Release } from './release.js';
import { EnrollmentRefusedError, UnknownAgentError, type AgentRegistry, type AgentReport } from './registry.js';
import { isRing, RINGS, type Ring } from './rollout.js';

export interface AgentServiceSettings {
  /** Seconds between an agent's polls and heartbeats. */
  pollSeconds: number;
  /** Longest random wait of an agent between a release notification and its download. */
  spreadSeconds: number;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export interface AgentServerOptions {
  distribution: Distribution;
  registry: AgentRegistry;
  settings: () => AgentServiceSettings;
  /** An agent enrolled. */
  onAgentsChanged?: () => void;
  /** An agent reported (its row in the registry already written). */
  onReport?: (id: string, report: AgentReport, address: string) => void;
  /** The server's pinned components and their versions: every agent follows them. */
  pins?: () => Record<string, number>;
  /** Whether the rollout has reached a ring (agents of rings it has not reached hold their versions). */
  released?: (ring: Ring) => boolean;
  log?: (line: string) => void;
}

const MAX_BODY = 64 * 1024;
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Metadata and the index change with each release: caches must ask again. */
const SHORT_LIVED = 'no-cache';
const PING_MS = 15_000;

const reportSchema: JSONSchemaType<AgentReport> = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'hostname', 'addresses', 'components', 'phase', 'pollSeconds'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100 },
    hostname: { type: 'string', maxLength: 253 },
    addresses: {
      type: 'array',
      maxItems: 64,
      items: { type: 'object', additionalProperties: false, required: ['address', 'family'], properties: { address: { type: 'string', maxLength: 64 }, family: { type: 'integer', enum: [4, 6] } } },
    },
    components: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'version'],
        properties: {
          id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' },
          version: { type: 'integer', minimum: 1 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$', nullable: true },
          method: { type: 'string', maxLength: 16, nullable: true },
        },
      },
    },
    lastRun: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      required: ['result', 'at', 'bytes'],
      properties: {
        result: { type: 'string', enum: ['ok', 'failed'] },
        at: { type: 'string', maxLength: 40 },
        trigger: { type: 'string', maxLength: 16, nullable: true },
        method: { type: 'string', maxLength: 16, nullable: true },
        bytes: { type: 'integer', minimum: 0 },
        error: { type: 'string', maxLength: 2000, nullable: true },
      },
    },
    phase: { type: 'string', enum: ['idle', 'updating'] },
    pollSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
  },
};

interface EnrollRequest {
  token: string;
  name: string;
  hostname: string;
  pollSeconds?: number;
  ring?: Ring;
}
const enrollSchema: JSONSchemaType<EnrollRequest> = {
  type: 'object',
  additionalProperties: false,
  required: ['token', 'name', 'hostname'],
  properties: {
    token: { type: 'string', maxLength: 256 },
    name: { type: 'string', minLength: 1, maxLength: 100 },
    hostname: { type: 'string', maxLength: 253 },
    pollSeconds: { type: 'integer', minimum: 1, maximum: 86_400, nullable: true },
    ring: { type: 'string', enum: [...RINGS], nullable: true },
  },
};
const compileSchemas = () => {
  const ajv = new Ajv({ allErrors: false });
  return { report: ajv.compile(reportSchema), enroll: ajv.compile(enrollSchema) };
};
/** Compiled on first use, not at import (every CLI command imports this module). */
let compiled: ReturnType<typeof compileSchemas> | undefined;
const schemas = () => (compiled ??= compileSchemas());

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, cache = 'no-store'): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': cache });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

/** The peer's address without the IPv4-mapped prefix. */
function peerAddress(req: http.IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

/**
 * Send a file with an ETag, conditional GET, HEAD and single-range support (RFC 9110 §14). Immutable
 * files are named by their hash, which is their ETag.
 */
function sendFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, etag: string, cacheControl: string, type = 'application/octet-stream', cache?: ResponseCache): void {
  const size = fs.statSync(file).size;
  const headers: http.OutgoingHttpHeaders = { etag: `"${etag}"`, 'cache-control': cacheControl, 'accept-ranges': 'bytes', 'content-type': type };
  // Small immutable files are answered from memory from the second request on.
  if (cache && size <= cache.maxEntryBytes) cache.put(req.url ?? '', fs.readFileSync(file), headers, etag);
  if (req.headers['if-none-match'] === `"${etag}"`) {
    res.writeHead(304, headers).end();
    return;
  }
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
  if (range && (range[1] || range[2]) && (!req.headers['if-range'] || req.headers['if-range'] === `"${etag}"`)) {
    if (range[1]) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(Number(range[2]), size - 1);
    } else start = Math.max(0, size - Number(range[2]));
    if (start >= size || start > end) {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end();
      return;
    }
    status = 206;
    headers['content-range'] = `bytes ${start}-${end}/${size}`;
  }
  headers['content-length'] = size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return;
  }
  fs.createReadStream(file, { start, end }).on('error', () => res.destroy()).pipe(res);
}

/**
 * Whole answers to the requests agents make most — the timestamp, the index, versioned metadata and
 * the small content-addressed files — kept in memory with their headers, so that a release announced
 * to thousands of agents costs no file I/O and no hashing per request. Immutable entries stay until
 * the budget evicts them (oldest first); the timestamp and the index are replaced with each release.
 */
class ResponseCache {
  private readonly entries = new Map<string, { body: Buffer; headers: http.OutgoingHttpHeaders; etag: string }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes = 64 * 1024 * 1024,
    readonly maxEntryBytes = 1024 * 1024,
  ) {}

  /** Answer `req` from memory if its whole answer is here (no Range asked); true when answered. */
  answer(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.headers.range !== undefined) return false;
    const hit = this.entries.get(req.url ?? '');
    if (!hit) return false;
    if (req.headers['if-none-match'] === hit.etag) {
      res.writeHead(304, { etag: hit.etag, 'cache-control': hit.headers['cache-control'] }).end();
      return true;
    }
    res.writeHead(200, hit.headers);
    res.end(req.method === 'HEAD' ? undefined : hit.body);
    return true;
  }

  put(url: string, body: Buffer, headers: http.OutgoingHttpHeaders, etag: string): void {
    if (body.length > this.maxEntryBytes) return;
    this.remove(url);
    this.entries.set(url, { body, headers: { ...headers, etag: `"${etag}"`, 'content-length': body.length }, etag: `"${etag}"` });
    this.bytes += body.length;
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= entry.body.length;
    }
  }

  remove(url: string): void {
    const entry = this.entries.get(url);
    if (!entry) return;
    this.entries.delete(url);
    this.bytes -= entry.body.length;
  }
}

/** Agents' notification streams, by agent id. */
class Streams {
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

  /** Send an event to every connected agent; returns their ids. */
  broadcast(event: string, data: unknown): string[] {
    const message = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const set of this.byAgent.values()) for (const res of set) res.write(message);
    return [...this.byAgent.keys()];
  }

  ping(): void {
    for (const set of this.byAgent.values()) for (const res of set) res.write(': ping\n\n');
  }

  connected(): number {
    return this.byAgent.size;
  }

  endAll(): void {
    for (const set of this.byAgent.values()) for (const res of set) res.end();
    this.byAgent.clear();
  }
}

export interface AgentServer {
  /** Base URLs agents can use, one per listening address. */
  urls: string[];
  /** Agents with a notification stream open now. */
  connected(): number;
  /** Ask every connected agent to update now (each still waits its random spread); returns how many were asked. */
  askToUpdate(): Promise<number>;
  close(): Promise<void>;
}

export async function startAgentServer(options: AgentServerOptions, listen: ListenAddress[]): Promise<AgentServer> {
  const { distribution, registry } = options;
  const log = options.log ?? (() => {});
  const changed = options.onAgentsChanged ?? (() => {});
  const streams = new Streams();
  const cache = new ResponseCache();
  /** The timestamp and the index of the release served now, answered from memory. */
  const cacheRelease = (release: Release | undefined) => {
    if (!release) return;
    const etag = crypto.createHash('sha256').update(release.timestamp).digest('hex');
    cache.put('/metadata/timestamp.json', release.timestamp, { 'content-type': 'application/json', 'cache-control': SHORT_LIVED }, etag);
    const index = Buffer.from(JSON.stringify(release.index));
    cache.put('/agents/v1/index.json', index, { 'content-type': 'application/json; charset=utf-8', 'cache-control': SHORT_LIVED }, crypto.createHash('sha256').update(index).digest('hex'));
  };
  cacheRelease(distribution.current());
  const onAnyRelease = (release: Release) => cacheRelease(release);
  distribution.on('release', onAnyRelease);
  /** ETags of metadata files (named by version, not hash), computed once each. */
  const etags = new Map<string, string>();
  const etagOf = (file: string) => {
    let etag = etags.get(file);
    if (!etag) etags.set(file, (etag = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')));
    return etag;
  };

  const refused = () => new HttpError(401, 'unknown agent or wrong credential; enroll again with the enrollment token');
  const agentOf = async (req: http.IncomingMessage): Promise<string> => {
    const credential = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const id = credential ? await registry.authenticate(credential) : undefined;
    if (!id) throw refused();
    return id;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://agents');
    const { pathname } = url;
    const release = distribution.current();
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (pathname === '/metadata/timestamp.json') {
        if (!release) throw new HttpError(404, 'the server has no release yet');
        const etag = crypto.createHash('sha256').update(release.timestamp).digest('hex');
        if (req.headers['if-none-match'] === `"${etag}"`) {
          res.writeHead(304, { etag: `"${etag}"`, 'cache-control': SHORT_LIVED }).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': release.timestamp.length, etag: `"${etag}"`, 'cache-control': SHORT_LIVED });
        res.end(req.method === 'HEAD' ? undefined : release.timestamp);
        return;
      }
      const metadata = /^\/metadata\/([^/]+)$/.exec(pathname);
      if (metadata) {
        const file = distribution.metadataFile(metadata[1]!);
        if (!file) throw new HttpError(404, 'no such metadata');
        sendFile(req, res, file, etagOf(file), IMMUTABLE, 'application/json', cache);
        return;
      }
      if (pathname.startsWith('/targets/')) {
        const target = pathname.slice('/targets/'.length);
        const file = distribution.targetFile(target);
        if (!file) throw new HttpError(404, 'the server does not hold this file');
        sendFile(req, res, file, /([0-9a-f]{64})\.[^/]*$/.exec(target)![1]!, IMMUTABLE, 'application/octet-stream', cache);
        return;
      }
      const made = /^\/made\/([a-z0-9][a-z0-9-]{0,63})\/([^/]+)$/.exec(pathname);
      if (made) {
        const file = await distribution.made.get(made[1]!, made[2]!);
        if (!file) throw new HttpError(404, 'the server does not keep the versions this file is made from');
        sendFile(req, res, file.file, file.sha256, IMMUTABLE, 'application/octet-stream', cache);
        return;
      }
      if (pathname === '/agents/v1/index.json' && req.method === 'GET') {
        if (!release) throw new HttpError(404, 'the server has no release yet');
        sendJson(res, 200, release.index, SHORT_LIVED);
        return;
      }
      if (pathname === '/agents/v1/policy' && req.method === 'GET') {
        const ring = await registry.ringOf(await agentOf(req));
        if (ring === undefined) throw refused();
        const hold = isRing(ring) && options.released ? !options.released(ring) : false;
        sendJson(res, 200, { pins: options.pins?.() ?? {}, ring: ring ?? 'broad', hold });
        return;
      }
      if (pathname === '/agents/v1/events' && req.method === 'GET') {
        const id = await agentOf(req);
        await registry.seen(id, peerAddress(req)).catch((error: unknown) => {
          throw error instanceof UnknownAgentError ? refused() : error;
        });
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
        const { pollSeconds, spreadSeconds } = options.settings();
        res.write(`event: hello\ndata: ${JSON.stringify({ release: release?.index.release ?? 0, pollSeconds, spreadSeconds })}\n\n`);
        const remove = streams.add(id, res);
        req.on('close', remove);
        return;
      }
    }
    if (req.method === 'POST') {
      if (pathname === '/agents/v1/enroll') {
        const body = await readJson(req);
        const validateEnroll = schemas().enroll;
        if (!validateEnroll(body)) throw new HttpError(400, `invalid enrollment: ${validateEnroll.errors?.[0]?.instancePath || 'body'} ${validateEnroll.errors?.[0]?.message ?? ''}`.trim());
        const { pollSeconds, spreadSeconds } = options.settings();
        let enrolled: { id: string; credential: string };
        try {
          enrolled = await registry.enroll(body.token, { name: body.name, hostname: body.hostname, address: peerAddress(req), pollSeconds: body.pollSeconds ?? pollSeconds, ...(body.ring ? { ring: body.ring } : {}) });
        } catch (error) {
          if (error instanceof EnrollmentRefusedError) {
            log(`refused an agent enrollment from ${peerAddress(req)} (name "${body.name}"): wrong or rotated enrollment token`);
            throw new HttpError(401, 'the enrollment token is wrong or was rotated; get the current one with `bulwark agents token` on the server');
          }
          throw error;
        }
        log(`agent "${body.name}" enrolled from ${peerAddress(req)}`);
        changed();
        const root = distribution.newestRoot();
        sendJson(res, 200, { ...enrolled, ...(root ? { root: root.toString('utf8') } : {}), pollSeconds, spreadSeconds });
        return;
      }
      if (pathname === '/agents/v1/report') {
        const id = await agentOf(req);
        const body = await readJson(req);
        const validateReport = schemas().report;
        if (!validateReport(body)) throw new HttpError(400, `invalid report: ${validateReport.errors?.[0]?.instancePath || 'body'} ${validateReport.errors?.[0]?.message ?? ''}`.trim());
        await registry.report(id, body, peerAddress(req)).catch((error: unknown) => {
          throw error instanceof UnknownAgentError ? refused() : error;
        });
        options.onReport?.(id, body, peerAddress(req));
        const { pollSeconds, spreadSeconds } = options.settings();
        sendJson(res, 200, { release: release?.index.release ?? 0, pollSeconds, spreadSeconds });
        return;
      }
    }
    if (!['GET', 'HEAD', 'POST'].includes(req.method ?? '')) {
      res.writeHead(405, { allow: 'GET, HEAD, POST' }).end();
      return;
    }
    throw new HttpError(404, 'not found');
  };

  const onRequest: http.RequestListener = (req, res) => {
    if (cache.answer(req, res)) return;
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) sendJson(res, error.status, { error: error.message });
      else {
        log(`agents: ${req.method} ${req.url} failed: ${describeError(error)}`);
        sendJson(res, 500, { error: 'internal error; see the server log' });
      }
    });
  };

  const onRelease = (current: Release, { news }: { news: boolean }) => {
    if (!news) return;
    const ids = streams.broadcast('release', { release: current.index.release, spreadSeconds: options.settings().spreadSeconds });
    registry
      .markNotified(ids, current.index.release)
      .then(changed, (error: unknown) => log(`agents: cannot record notifications: ${describeError(error)}`));
    log(`distribution: ${ids.length} connected agent${ids.length === 1 ? '' : 's'} notified of release ${current.index.release}`);
  };
  distribution.on('release', onRelease);
  const ping = setInterval(() => streams.ping(), PING_MS);
  ping.unref();

  const servers: http.Server[] = [];
  const urls: string[] = [];
  try {
    for (const address of listen) {
      const server = http.createServer(onRequest);
      server.keepAliveTimeout = 65_000;
      // Notification streams are long-lived by design; a request's head still has a deadline.
      server.requestTimeout = 0;
      server.headersTimeout = 30_000;
      await listenOn(server, address);
      servers.push(server);
      urls.push(agentUrl(server.address() as AddressInfo));
    }
  } catch (error) {
    distribution.off('release', onRelease);
    distribution.off('release', onAnyRelease);
    clearInterval(ping);
    for (const server of servers) server.close();
    throw error;
  }
  return {
    urls,
    connected: () => streams.connected(),
    askToUpdate: async () => {
      const release = distribution.current()?.index.release ?? 0;
      const ids = streams.broadcast('update', { release, spreadSeconds: options.settings().spreadSeconds });
      await registry.markNotified(ids, release);
      changed();
      return ids.length;
    },
    close: async () => {
      distribution.off('release', onRelease);
      distribution.off('release', onAnyRelease);
      clearInterval(ping);
      streams.endAll();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.closeAllConnections();
              s.close(() => resolve());
            }),
        ),
      );
    },
  };
}

/**
 * The URL agents can use for a bound address: a server listening on every address ("::", "0.0.0.0")
 * is reached by this host's name, which is what an agent needs to be given.
 */
function agentUrl(bound: AddressInfo): string {
  const unspecified = bound.address === '::' || bound.address === '0.0.0.0';
  const host = unspecified ? os.hostname() : bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return `http://${host}:${bound.port}/`;
}

/** Listen on one address; "::" also takes IPv4 (dual stack), or falls back to 0.0.0.0 on a host without IPv6. */
function listenOn(server: http.Server, address: ListenAddress): Promise<void> {
  const attempt = (host: string) =>
    new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      server.listen({ host, port: address.port, ipv6Only: false }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  return attempt(address.host).catch((error: NodeJS.ErrnoException) => {
    if (address.host === '::' && (error.code === 'EAFNOSUPPORT' || error.code === 'EADDRNOTAVAIL')) return attempt('0.0.0.0');
    throw error;
  });
}
