// The server's face to its agents, over HTTP: the routes of the agent protocol
// (protocol/agent-protocol.ts lists them, with the messages and limits). The files (metadata, targets,
// made files, the index) are public like a CDN's and cacheable by any HTTP cache (docs/mirror.md); the
// agent endpoints take the agent's own credential (Authorization: Bearer), enrollment the enrollment
// token. Agent credentials open nothing else: the console is a different server with its own token.
//
// Threads: the main thread owns the registry, the release and the rollout, and decides every answer
// (agentRoutes). Where the platform lets sockets share a port, file threads (file-thread.ts) take the
// agents' connections instead: they answer the timestamp, the index and the files they hold in memory
// by themselves and ask the main thread for the rest, so that HTTP parsing, most of the cost of a
// release announced to thousands of agents, runs on every core, and never waits for an update the
// main thread is running (nor slows it).
import fs from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import net, { type AddressInfo, type ListenOptions } from 'node:net';
import { Worker } from 'node:worker_threads';
import { Ajv } from 'ajv';
import { describeError } from '../engine/errors.js';
import type { Evidence } from '../engine/evidence.js';
import { sha256 } from '../engine/files.js';
import {
  agentHttpServer,
  AGENT_LISTEN_BACKLOG,
  agentRequestListener,
  cacheRelease,
  HttpError,
  IMMUTABLE,
  SHORT_LIVED,
  Streams,
  threadServing,
  type AgentRequest,
  type ReleaseAnswers,
  type Reply,
} from './agent-http.js';
import type { FileThreadData, FromFileThread, ToFileThread } from './file-thread.js';
import type { Distribution, Release } from './release.js';
import { MadeQueueFull } from './made-files.js';
import { Refusals } from './refusals.js';
import { EnrollmentRefusedError, UnknownAgentError, type AgentRegistry } from './registry.js';
import { quoted } from './untrusted.js';
import {
  AGENT_PATHS,
  ENROLL_SCHEMA,
  EVIDENCE_PATH,
  formatEvent,
  isRing,
  PING_MS,
  REPORT_SCHEMA,
  type AgentPolicy,
  type AgentReport,
  type EnrollAnswer,
  type HelloEvent,
  type KeptEvidence,
  type ReleaseEvent,
  type ReportAnswer,
  type Ring,
  type ServerEventName,
} from '../protocol/agent-protocol.js';

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
  /** The vendor's root.json this server trusts (its anchor, as the operator gave it), for GET /agents/v1/root.json. */
  trustedRoot?: () => Buffer | undefined;
  /** Where failed enrollments and refused credentials are counted and logged (one is made when absent). */
  refusals?: Refusals;
  /** An agent reported (its row in the registry already written); `news`: its phase, versions or last run changed. */
  onReport?: (id: string, report: AgentReport, address: string, news: boolean) => void;
  /** The server's pinned components and their versions: every agent follows them. */
  pins?: () => Record<string, number>;
  /** Whether the rollout has reached a ring (agents of rings it has not reached hold their versions). */
  released?: (ring: Ring) => boolean;
  /** The versions of the last release that passed the rollout (held agents move up to them). */
  passedVersions?: () => Record<string, number>;
  /** The signed metadata kept with each installed version (served to held agents for the versions they take). */
  evidence?: Evidence;
  log?: (line: string) => void;
  /** File threads to take the agents' connections (fileThreadPlan()); none when absent. */
  fileThreads?: FileThreadPlan;
}

/**
 * File threads share the agents' port through SO_REUSEPORT, which Node offers from 22.12 (the
 * Node inside Electron has it) and Linux implements.
 */
function portSharing(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return process.platform === 'linux' && (major > 22 || (major === 22 && minor >= 12));
}

/** Enrolled agents from which file threads start by themselves (distribution.threads absent). */
export const AUTO_THREADS_FROM_AGENTS = 1_000;

export interface FileThreadPlan {
  /** File threads to start with the service (the main thread then takes no agents' connection). */
  now: number;
  /** File threads to start once AUTO_THREADS_FROM_AGENTS agents are enrolled (0: none). */
  whenFleetGrows: number;
}

/**
 * The file threads: as set (distribution.threads), else, once the fleet is large enough to need more
 * than one core for a release's fan-out, one per core (up to 4), the main thread left to the
 * registry and the updates. A smaller fleet is served by the main thread in about a second, and each
 * thread costs about 12 MB (docs/benchmarks.md). None where the port cannot be shared or on one core.
 */
export function fileThreadPlan(setting: number | undefined, enrolled: number, log: (line: string) => void): FileThreadPlan {
  if (setting === 0) return { now: 0, whenFleetGrows: 0 };
  if (!portSharing()) {
    if (setting !== undefined) log(`agents: file threads need Node 22.12 or later on Linux (this is Node ${process.versions.node} on ${process.platform}); the main thread serves alone`);
    return { now: 0, whenFleetGrows: 0 };
  }
  if (setting !== undefined) return { now: setting, whenFleetGrows: 0 };
  const cores = os.availableParallelism();
  const auto = cores < 2 ? 0 : Math.min(cores, 4);
  return enrolled >= AUTO_THREADS_FROM_AGENTS ? { now: auto, whenFleetGrows: 0 } : { now: 0, whenFleetGrows: auto };
}

const compileSchemas = () => {
  const ajv = new Ajv({ allErrors: false });
  return { report: ajv.compile(REPORT_SCHEMA), enroll: ajv.compile(ENROLL_SCHEMA) };
};
/** Compiled on first use, not at import (every CLI command imports this module). */
let compiled: ReturnType<typeof compileSchemas> | undefined;
const schemas = () => (compiled ??= compileSchemas());


/** The timestamp and the index of a release, as every thread answers them. */
function releaseAnswers(release: Release | undefined): ReleaseAnswers | undefined {
  return release && { timestamp: release.timestamp, index: Buffer.from(JSON.stringify(release.index)) };
}

/**
 * Everything an agent asks that is not answered from memory, decided on the main thread (which owns
 * the registry, the release and the rollout) whichever thread holds the connection.
 */
function agentRoutes(options: AgentServerOptions): (request: AgentRequest) => Promise<Reply> {
  const { distribution, registry } = options;
  const log = options.log ?? (() => {});
  const changed = options.onAgentsChanged ?? (() => {});
  /** ETags of metadata files (named by version, not hash), computed once each. */
  const etags = new Map<string, string>();
  const etagOf = (file: string) => {
    let etag = etags.get(file);
    if (!etag) etags.set(file, (etag = sha256(fs.readFileSync(file))));
    return etag;
  };
  const refusals = options.refusals ?? new Refusals(log);
  /** A refused credential (counted: past the limit, 429 instead). */
  const refused = (address: string) => {
    const wait = refusals.retryAfter('credential', address);
    if (wait !== undefined) return new HttpError(429, `too many requests with wrong agent credentials from this address; try again in ${wait} s`, { 'retry-after': String(wait) });
    refusals.refused('credential', address, '');
    return new HttpError(401, 'unknown agent or wrong credential; enroll again with the enrollment token');
  };
  // A valid credential is always checked, and taken, also from an address over the limit (agents
  // behind one NAT share it with whoever fails there): the check is an HMAC, cheap, and not guessable.
  const agentOf = async (request: AgentRequest): Promise<string> => {
    const credential = /^Bearer (\S+)$/.exec(request.authorization ?? '')?.[1];
    const id = credential ? await registry.authenticate(credential) : undefined;
    if (!id) throw refused(request.address);
    return id;
  };
  const json = (status: number, body: unknown, cacheControl?: string): Reply => ({ kind: 'json', status, body, ...(cacheControl ? { cacheControl } : {}) });
  const parse = (request: AgentRequest): unknown => {
    try {
      return JSON.parse(Buffer.from(request.body ?? new Uint8Array()).toString('utf8'));
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
  };

  const route = async (request: AgentRequest): Promise<Reply> => {
    const { pathname } = new URL(request.url, 'http://agents');
    const { method, address } = request;
    const release = distribution.current();
    if (method === 'GET' || method === 'HEAD') {
      if (pathname === `/${AGENT_PATHS.timestamp}`) {
        if (!release) throw new HttpError(404, 'the server has no release yet');
        const timestamp = release.timestamp;
        return { kind: 'bytes', body: timestamp, etag: sha256(timestamp), type: 'application/json', cacheControl: SHORT_LIVED };
      }
      const metadata = /^\/metadata\/([^/]+)$/.exec(pathname);
      if (metadata) {
        const file = distribution.metadataFile(metadata[1]!);
        if (!file) throw new HttpError(404, 'no such metadata');
        return { kind: 'file', file, etag: etagOf(file), cacheControl: IMMUTABLE, type: 'application/json' };
      }
      if (pathname.startsWith('/targets/')) {
        const target = pathname.slice('/targets/'.length);
        const file = distribution.targetFile(target);
        if (!file) throw new HttpError(404, 'the server does not hold this file');
        return { kind: 'file', file, etag: /([0-9a-f]{64})\.[^/]*$/.exec(target)![1]!, cacheControl: IMMUTABLE, type: 'application/octet-stream' };
      }
      const made = /^\/made\/([a-z0-9][a-z0-9-]{0,63})\/([^/]+)$/.exec(pathname);
      if (made) {
        let file;
        try {
          file = await distribution.made.get(made[1]!, made[2]!);
        } catch (error) {
          if (error instanceof MadeQueueFull) throw new HttpError(503, error.message, { 'retry-after': '30' });
          throw error;
        }
        if (!file) throw new HttpError(404, "the server makes files only from an older version it keeps to the current release's version, each once");
        return { kind: 'file', file: file.file, etag: file.sha256, cacheControl: IMMUTABLE, type: 'application/octet-stream' };
      }
      if (pathname === `/${AGENT_PATHS.root}` && method === 'GET') {
        const root = options.trustedRoot?.();
        if (!root) throw new HttpError(404, 'the server has no trusted root yet (no update source is set)');
        return { kind: 'bytes', body: root, etag: sha256(root), type: 'application/json', cacheControl: SHORT_LIVED };
      }
      if (pathname === `/${AGENT_PATHS.index}` && method === 'GET') {
        if (!release) throw new HttpError(404, 'the server has no release yet');
        const index = Buffer.from(JSON.stringify(release.index));
        return { kind: 'bytes', body: index, etag: sha256(index), type: 'application/json; charset=utf-8', cacheControl: SHORT_LIVED };
      }
      if (pathname === `/${AGENT_PATHS.policy}` && method === 'GET') {
        const ring = await registry.ringOf(await agentOf(request));
        if (ring === undefined) throw refused(address);
        const hold = isRing(ring) && options.released ? !options.released(ring) : false;
        return json(200, { pins: options.pins?.() ?? {}, ring: ring ?? 'broad', hold, ...(hold ? { holdAt: options.passedVersions?.() ?? {} } : {}) } satisfies AgentPolicy);
      }
      const evidence = EVIDENCE_PATH.exec(pathname);
      if (evidence && method === 'GET') {
        const kept = options.evidence?.read(evidence[1]!, Number(evidence[2]));
        if (!kept) throw new HttpError(404, 'no signed metadata is kept here for that version');
        return json(200, { targets: kept.targets.toString('utf8'), catalogue: kept.catalogue.toString('utf8') } satisfies KeptEvidence);
      }
      if (pathname === `/${AGENT_PATHS.events}` && method === 'GET') {
        const id = await agentOf(request);
        await registry.seen(id, address).catch((error: unknown) => {
          throw error instanceof UnknownAgentError ? refused(address) : error;
        });
        const { pollSeconds, spreadSeconds } = options.settings();
        return { kind: 'stream', agentId: id, hello: formatEvent('hello', { release: release?.index.release ?? 0, pollSeconds, spreadSeconds } satisfies HelloEvent) };
      }
    }
    if (method === 'POST') {
      if (pathname === `/${AGENT_PATHS.enroll}`) {
        // Past the limit of failures from this address, refused unchecked until its window ends.
        const wait = refusals.retryAfter('enrollment', address);
        if (wait !== undefined) throw new HttpError(429, `too many failed enrollments from this address; try again in ${wait} s`, { 'retry-after': String(wait) });
        const refuse = (status: number, message: string, detail = '') => {
          refusals.refused('enrollment', address, detail);
          return new HttpError(status, message);
        };
        let body: unknown;
        try {
          body = parse(request);
        } catch (error) {
          throw refuse(400, (error as Error).message);
        }
        const validateEnroll = schemas().enroll;
        if (!validateEnroll(body)) throw refuse(400, `invalid enrollment: ${validateEnroll.errors?.[0]?.instancePath || 'body'} ${validateEnroll.errors?.[0]?.message ?? ''}`.trim());
        const { pollSeconds, spreadSeconds } = options.settings();
        let enrolled: Awaited<ReturnType<AgentRegistry['enroll']>>;
        try {
          // The token decides the ring (an agent cannot choose its own: body.ring is ignored).
          enrolled = await registry.enroll(body.token, { name: body.name, hostname: body.hostname, address, pollSeconds: body.pollSeconds ?? pollSeconds });
        } catch (error) {
          if (error instanceof EnrollmentRefusedError) throw refuse(401, 'the enrollment token is wrong or was rotated; get the current join string with `bulwark agents token` on the server', `it gave the name ${quoted(body.name)}`);
          throw error;
        }
        const renamed = enrolled.name !== body.name ? ` (it asked for ${quoted(body.name)}, which another agent has)` : '';
        log(`agent ${quoted(enrolled.name)} enrolled from ${address} into ${enrolled.ring}${renamed}`);
        changed();
        return json(200, { id: enrolled.id, credential: enrolled.credential, name: enrolled.name, ring: enrolled.ring, pollSeconds, spreadSeconds } satisfies EnrollAnswer);
      }
      if (pathname === `/${AGENT_PATHS.report}`) {
        const id = await agentOf(request);
        const body = parse(request);
        const validateReport = schemas().report;
        if (!validateReport(body)) throw new HttpError(400, `invalid report: ${validateReport.errors?.[0]?.instancePath || 'body'} ${validateReport.errors?.[0]?.message ?? ''}`.trim());
        const news = await registry.report(id, body, address).catch((error: unknown) => {
          throw error instanceof UnknownAgentError ? refused(address) : error;
        });
        options.onReport?.(id, body, address, news);
        const { pollSeconds, spreadSeconds } = options.settings();
        return json(200, { release: release?.index.release ?? 0, pollSeconds, spreadSeconds } satisfies ReportAnswer);
      }
    }
    if (!['GET', 'HEAD', 'POST'].includes(method)) return { kind: 'status', status: 405, headers: { allow: 'GET, HEAD, POST' } };
    throw new HttpError(404, 'not found');
  };

  // Every failure becomes an answer, so that a file thread always gets one.
  return (request) =>
    route(request).catch((error: unknown): Reply => {
      if (error instanceof HttpError) return { ...json(error.status, { error: error.message }), ...(error.headers ? { headers: error.headers } : {}) };
      log(`agents: ${request.method} ${request.url} failed: ${describeError(error)}`);
      return json(500, { error: 'internal error; see the server log' });
    });
}

/**
 * The file threads (file-thread.ts) and the notification streams they hold. A thread that fails is
 * replaced; its connections are gone with it, and its agents reconnect as after any dropped stream.
 */
class FileThreads {
  private readonly threads = new Map<Worker, Map<string, number>>();
  private releaseSeq = 0;
  private readonly acks = new Map<number, { waiting: Set<Worker>; done: () => void }>();
  private closing = false;
  /** Why the native front is missing is logged once, not once per thread. */
  private toldWithoutFront = false;

  constructor(
    private readonly listen: FileThreadData['listen'],
    private readonly answer: (request: AgentRequest) => Promise<Reply>,
    private readonly current: () => ReleaseAnswers | undefined,
    private readonly log: (line: string) => void,
    /** Called when the last thread has ended and none replaces it: the port would be left unserved. */
    private readonly onNoneLeft: () => void,
  ) {}

  /** Resolves once `count` threads listen; a release that comes meanwhile reaches them too. */
  async start(count: number): Promise<void> {
    try {
      await Promise.all(Array.from({ length: count }, () => this.spawn()));
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  private spawn(): Promise<void> {
    const worker = new Worker(FILE_THREAD_URL, { workerData: { listen: this.listen, release: this.current() } satisfies FileThreadData, resourceLimits: FILE_THREAD_LIMITS });
    const streams = new Map<string, number>();
    this.threads.set(worker, streams);
    const post = (message: ToFileThread) => worker.postMessage(message);
    return new Promise<void>((resolve, reject) => {
      let listening = false;
      let listeningSince = 0;
      worker.on('message', (message: FromFileThread) => {
        switch (message.type) {
          case 'listening':
            listening = true;
            listeningSince = Date.now();
            if (message.withoutFront !== undefined && !this.toldWithoutFront) {
              this.toldWithoutFront = true;
              this.log(`agents: file threads serve without the native front (${message.withoutFront})`);
            }
            resolve();
            return;
          case 'request':
            void this.answer(message.request).then((reply) => post({ type: 'reply', id: message.id, reply }));
            return;
          case 'opened':
            streams.set(message.agentId, (streams.get(message.agentId) ?? 0) + 1);
            return;
          case 'closed': {
            const left = (streams.get(message.agentId) ?? 1) - 1;
            if (left > 0) streams.set(message.agentId, left);
            else streams.delete(message.agentId);
            return;
          }
          case 'released':
            this.acknowledged(worker, message.seq);
            return;
        }
      });
      worker.on('error', (error) => {
        if (!listening) reject(error);
        else this.log(`agents: a file thread failed: ${describeError(error)}`);
      });
      worker.on('exit', (code) => {
        this.threads.delete(worker);
        for (const [seq] of this.acks) this.acknowledged(worker, seq);
        if (!listening) reject(new Error(`a file thread ended before it listened (exit code ${code})`));
        if (!listening || this.closing) return;
        // One that ends soon after its start would only end again: the other threads carry on.
        if (Date.now() - listeningSince < REPLACE_AFTER_MS) {
          this.log(`agents: a file thread ended (exit code ${code}) within ${REPLACE_AFTER_MS / 1000} s of its start; not replaced`);
          if (!this.threads.size) this.onNoneLeft();
          return;
        }
        this.log(`agents: replacing the file thread that ended (exit code ${code})`);
        this.spawn().catch((error: unknown) => {
          this.log(`agents: cannot replace a file thread: ${describeError(error)}`);
          if (!this.threads.size) this.onNoneLeft();
        });
      });
    });
  }

  private acknowledged(worker: Worker, seq: number): void {
    const ack = this.acks.get(seq);
    if (!ack) return;
    ack.waiting.delete(worker);
    if (!ack.waiting.size) {
      this.acks.delete(seq);
      ack.done();
    }
  }

  /** Give every thread a release's answers; resolves once all answer from it (so no agent told of it gets the old one). */
  release(answers: ReleaseAnswers): Promise<void> {
    const seq = ++this.releaseSeq;
    const workers = [...this.threads.keys()];
    if (!workers.length) return Promise.resolve();
    return new Promise<void>((done) => {
      this.acks.set(seq, { waiting: new Set(workers), done });
      for (const worker of workers) worker.postMessage({ type: 'release', seq, answers } satisfies ToFileThread);
    });
  }

  send(message: string, to?: string): void {
    for (const worker of this.threads.keys()) worker.postMessage({ type: 'send', message, ...(to === undefined ? {} : { to }) } satisfies ToFileThread);
  }

  count(): number {
    return this.threads.size;
  }

  /** Agents with a stream open on some thread. */
  ids(): Set<string> {
    const ids = new Set<string>();
    for (const streams of this.threads.values()) for (const id of streams.keys()) ids.add(id);
    return ids;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      [...this.threads.keys()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            worker.once('exit', () => resolve());
            worker.postMessage({ type: 'close' } satisfies ToFileThread);
            // A thread that does not end by itself is ended.
            setTimeout(() => void worker.terminate(), 2_000).unref();
          }),
      ),
    );
  }
}

/**
 * A file thread's young generation: V8's default grows to 32 MB under load, in each thread; a thread's
 * live objects are its connections and its cache, so a small one costs little time in scavenges.
 */
const FILE_THREAD_LIMITS = { maxYoungGenerationSizeMb: 6 };
/** A file thread that ends later than this after its start is replaced. */
const REPLACE_AFTER_MS = 10_000;

const FILE_THREAD_URL = import.meta.url.endsWith('.ts') ? new URL('../../out/main/distribution/file-thread.js', import.meta.url) : new URL('./file-thread.js', import.meta.url);

export interface AgentServer {
  /** Base URLs agents can use, one per listening address. */
  urls: string[];
  /** File threads taking the agents' connections now (0: the main thread takes them). */
  readonly fileThreads: number;
  /** Agents with a notification stream open now. */
  connected(): number;
  /** Ask every connected agent, or only agent `id`, to update now (each still waits its random spread); returns how many were asked. */
  askToUpdate(id?: string): Promise<number>;
  close(): Promise<void>;
}

export async function startAgentServer(options: AgentServerOptions, listen: ListenAddress[]): Promise<AgentServer> {
  const { distribution, registry } = options;
  const log = options.log ?? (() => {});
  const plan = options.fileThreads ?? { now: 0, whenFleetGrows: 0 };
  let threads: FileThreads | undefined;
  // Until they run, file threads may join as agents enroll (checked once at a time, and again if
  // agents enrolled meanwhile).
  let checkingFleet = false;
  let checkFleetAgain = false;
  const joinIfFleetGrew = () => {
    if (!plan.whenFleetGrows || threads) return;
    if (checkingFleet) {
      checkFleetAgain = true;
      return;
    }
    checkingFleet = true;
    registry
      .count()
      .then(async (enrolled) => {
        if (enrolled < AUTO_THREADS_FROM_AGENTS || threads) return;
        await startThreads(plan.whenFleetGrows);
        log(`${enrolled} agents enrolled: ${plan.whenFleetGrows} file thread${plan.whenFleetGrows === 1 ? '' : 's'} now take the agents' connections; the main thread keeps those it holds`);
      })
      .catch((error: unknown) => log(`agents: cannot start file threads: ${describeError(error)}`))
      .finally(() => {
        checkingFleet = false;
        if (checkFleetAgain) {
          checkFleetAgain = false;
          joinIfFleetGrew();
        }
      });
  };
  const changed = () => {
    options.onAgentsChanged?.();
    joinIfFleetGrew();
  };
  const refusals = options.refusals ?? new Refusals(log);
  const answer = agentRoutes({ ...options, refusals, onAgentsChanged: changed });
  const streams = new Streams();
  const serving = threadServing();
  const { cache, burst } = serving;
  const current = () => releaseAnswers(distribution.current());
  const initial = current();
  if (initial) cacheRelease(cache, initial);

  const openStream = (id: string, res: http.ServerResponse) => streams.add(id, res);
  const onRequest = agentRequestListener(answer, cache, openStream, log, burst);

  /** Every agent with a stream open, on any thread. */
  const connectedIds = (): string[] => {
    const ids = threads?.ids() ?? new Set<string>();
    for (const id of streams.ids()) ids.add(id);
    return [...ids];
  };
  const broadcast = (name: ServerEventName, data: HelloEvent | ReleaseEvent, to?: string): string[] => {
    const message = formatEvent(name, data);
    streams.send(message, to);
    threads?.send(message, to);
    const ids = connectedIds();
    return to === undefined ? ids : ids.filter((id) => id === to);
  };

  // Each release's answers reach every thread before any agent is told of it.
  const onRelease = (release: Release, { news }: { news: boolean }) => {
    const answers = releaseAnswers(release)!;
    cacheRelease(cache, answers);
    void (threads?.release(answers) ?? Promise.resolve()).then(() => {
      if (!news) return;
      const ids = broadcast('release', { release: release.index.release, spreadSeconds: options.settings().spreadSeconds });
      registry
        .markNotified(ids, release.index.release)
        .then(changed, (error: unknown) => log(`agents: cannot record notifications: ${describeError(error)}`));
      log(`distribution: ${ids.length} connected agent${ids.length === 1 ? '' : 's'} notified of release ${release.index.release}`);
    });
  };
  distribution.on('release', onRelease);
  const ping = setInterval(() => streams.send(': ping\n\n'), PING_MS);
  ping.unref();

  const agentServers = listen.map(() => agentHttpServer(onRequest, serving));
  const servers = agentServers.map(({ server }) => server);
  const urls: string[] = [];
  /** Where the file threads listen (the port resolved), shared with SO_REUSEPORT. */
  const bound: FileThreadData['listen'] = [];
  // The main thread stops taking connections once file threads listen: an http.Server's close()
  // would also end idle keep-alive connections, so only the listening socket is closed. Those it
  // holds (notification streams among them) stay until they end, and still hear every release.
  const stopAccepting = () => {
    for (const server of servers) if (server.listening) net.Server.prototype.close.call(server);
  };
  const takeBackPort = () => {
    log('agents: no file thread is left; the main thread takes the agents\' connections again');
    Promise.all(servers.map((server, i) => bindServer(server, bound[i]!, true))).catch((error: unknown) => log(`agents: cannot take the agents' port back: ${describeError(error)}`));
  };
  const startThreads = async (count: number) => {
    // Assigned before the threads start, so that a release during their start reaches them.
    // What the threads ask of the routes is the main thread's share of a burst.
    const answerThread = (request: AgentRequest) => {
      burst.request();
      return answer(request);
    };
    threads = new FileThreads(bound, answerThread, current, log, takeBackPort);
    try {
      await threads.start(count);
    } catch (error) {
      threads = undefined;
      throw error;
    }
    stopAccepting();
  };
  const sharing = plan.now > 0 || plan.whenFleetGrows > 0;
  try {
    for (const [i, address] of listen.entries()) {
      // A port to share is first taken alone, for a moment: sockets with SO_REUSEPORT share a port
      // with any other of the same user, so another server already on it would otherwise get a
      // share of the agents' connections instead of this one failing to start.
      const at = sharing ? await reserve(address) : await bindServer(servers[i]!, address, false);
      bound.push({ host: at.address, port: at.port });
      // Until file threads come, the main thread takes the connections, on a socket they can share.
      if (sharing && !plan.now) await bindServer(servers[i]!, bound[i]!, true);
      urls.push(agentUrl(at));
    }
    if (plan.now > 0) await startThreads(plan.now);
  } catch (error) {
    distribution.off('release', onRelease);
    clearInterval(ping);
    burst.stop();
    for (const server of servers) server.close();
    await threads?.close();
    throw error;
  }
  return {
    urls,
    get fileThreads() {
      return threads?.count() ?? 0;
    },
    connected: () => connectedIds().length,
    askToUpdate: async (id) => {
      const release = distribution.current()?.index.release ?? 0;
      const ids = broadcast('update', { release, spreadSeconds: options.settings().spreadSeconds }, id);
      await registry.markNotified(ids, release);
      changed();
      return ids.length;
    },
    close: async () => {
      distribution.off('release', onRelease);
      clearInterval(ping);
      refusals.stop();
      burst.stop();
      streams.endAll();
      await threads?.close();
      await Promise.all(
        agentServers.map(
          ({ server, fastPath }) =>
            new Promise<void>((resolve) => {
              fastPath.closeAllConnections();
              server.close(() => resolve());
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

/**
 * Listen on one address, with SO_REUSEPORT when it is to be shared; "::" also takes IPv4 (dual stack),
 * or falls back to 0.0.0.0 on a host without IPv6. Resolves with the address bound.
 */
function bindServer(server: net.Server, address: ListenAddress, reusePort: boolean): Promise<AddressInfo> {
  const bind = (host: string) =>
    new Promise<AddressInfo>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      // reusePort is Node 22.12's; older types do not know it.
      server.listen({ host, port: address.port, ipv6Only: false, backlog: AGENT_LISTEN_BACKLOG, ...(reusePort ? { reusePort } : {}) } satisfies ListenOptions & { reusePort?: boolean }, () => {
        server.off('error', onError);
        resolve(server.address() as AddressInfo);
      });
    });
  return bind(address.host).catch((error: NodeJS.ErrnoException) => {
    if (address.host === '::' && (error.code === 'EAFNOSUPPORT' || error.code === 'EADDRNOTAVAIL')) return bind('0.0.0.0');
    throw error;
  });
}

/** Take an address alone for a moment: fails if anything listens on it, else resolves the port. */
async function reserve(address: ListenAddress): Promise<AddressInfo> {
  const probe = net.createServer();
  const at = await bindServer(probe, address, false);
  await new Promise((resolve) => probe.close(resolve));
  return at;
}
