// `bulwark agent`: an endpoint's updater. It runs the same engine as the server, pointed at its
// server, and trusts only the vendor's signatures:
//
//   enroll (first contact, with the join string): the vendor's root, checked against the join
//     string's SHA-256 (or the operator's --trusted-root file), before the token is sent
//     -> pinned trusted root + own credential
//   start-up update -> follow the server's notification stream
//     - "release": wait a random spread (no thundering herd), then update
//     - a jittered poll timer as a fallback, and a poll after every reconnect
//     - every reconnection, after a stream that failed or one that ended cleanly, waits out the same
//       capped, jittered back-off; a stream that lived long starts it over
//   an answer the proxy on the way wrote (its 401/407, its 5xx) is told from the server's: only a
//     refusal from the server itself ends the agent; anything else is said and retried
//   after every run and on each poll: report to the server
//
// Files in the agent's data directory, beside the engine's own (store/, history.jsonl, tuf/...):
//   agent.json         the server, this agent's id and credential (mode 0600)
//   trusted-root.json  the vendor's root pinned at enrollment (see TrustMode)
//   settings.json      the server as update source, and the proxy
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { Engine, pinnedVersions } from '../engine/engine.js';
import { isValidVersion } from '../engine/components.js';
import { BulwarkError, describeError, NetworkError, ProxyAuthError, UsageError } from '../engine/errors.js';
import { sha256, writeFileAtomic } from '../engine/files.js';
import type { RunRecord } from '../engine/history.js';
import { consumerViews, type ConsumerView } from '../engine/consumers.js';
import { networkReason } from '../engine/fetcher.js';
import { bufferedRequest } from '../engine/http.js';
import { errorCode, explainUnreachable } from '../engine/network.js';
import { answeredByProxy, dispatcherFor, proxyRefusalStatus, routeFor } from '../engine/proxy.js';
import type { ProxySetting } from '../engine/settings.js';
import { Settings } from '../engine/settings.js';
import { checkSourceUrl } from '../engine/source.js';
import { startControl } from '../engine/control.js';
import { isBusy } from '../engine/state.js';
import {
  AGENT_DEADLINES,
  AGENT_LIMITS,
  AGENT_PATHS,
  AGENT_TIMING,
  clampTiming,
  DEFAULT_MAX_HOLD_SECONDS,
  DEFAULT_POLL_SECONDS,
  describeOrder,
  DEFAULT_SPREAD_SECONDS,
  type AgentPolicy,
  type AgentReport,
  type EnrollAnswer,
  type EnrollRequest,
  type HelloEvent,
  type ReleaseEvent,
  isRing,
  parseJoinString,
  type JoinString,
  type TrustMode,
} from '../protocol/agent-protocol.js';
import type { BrokerAddress } from '../protocol/broker.js';
import { followBroker } from './broker.js';
import { Backoff, followEvents, LONG_LIVED_MS, sleep, StreamRefused, StreamViolation } from './events.js';
import { loadOffers } from './offers.js';
import { holdFor, judgeRun, readOrders, writeOrders, type OrdersFile } from './orders.js';

export interface AgentOptions {
  /** The server's agent URL, e.g. http://server.example:8470/ */
  server: string;
  /**
   * The join string (the enrollment token and the SHA-256 of the vendor's root, from `bulwark agents
   * token`), or a bare token: needed on first contact, and again if the server forgot this agent.
   */
  token?: string;
  dataDir: string;
  /** How the agent is listed on the server (default: the host name). */
  name?: string;
  /** The vendor's root.json to trust, given by the operator (instead of the join string's hash). */
  trustedRoot?: string;
  /** Pin whatever root the server hands out at enrollment, with nothing to check it against: a server met first may be anyone's. */
  insecureTrustFirstServer?: boolean;
  /** The longest a server's rollout hold is obeyed, in seconds (DEFAULT_MAX_HOLD_SECONDS by default). */
  maxHoldSeconds?: number;
  /** Reach the server through this HTTP proxy (saved in the agent's settings). */
  proxy?: ProxySetting;
  /** Learn of releases from this MQTT broker instead of a stream held open to the server. */
  notify?: BrokerAddress;
  /** HTTP caches of the server's files (base URLs), tried in order before the server itself. */
  mirrors?: string[];
  /** The consumers file: the engines each component is handed to (default: DATA/consumers.json, if any). */
  consumers?: string;
  log?: (line: string) => void;
  /** For tests: the random source for spreads and jitter. */
  random?: () => number;
  /** The caller took the data directory's lock before anything was written (and releases it). */
  lockTaken?: boolean;
}

/** What agent.json holds. */
interface Enrollment {
  server: string;
  id: string;
  credential: string;
  /** The name the server lists it under (the one asked for, or with a suffix when another agent had it). */
  name: string;
  enrolledAt: string;
  /** The ring its enrollment token put it in. */
  ring?: string;
  /** How it came to trust the vendor's root (absent: enrolled before agents recorded it). */
  trust?: TrustMode;
}

/** The server refused this agent's enrollment token (or forgot it and the token no longer works). */
export class EnrollmentError extends BulwarkError {
  /** The server itself refused the enrollment token (its 401): the one answer that ends an enrolled agent. */
  readonly tokenRefused: boolean;
  constructor(message: string, options?: { cause?: unknown; tokenRefused?: boolean }) {
    super('ERR_USAGE', message, options);
    this.tokenRefused = options?.tokenRefused ?? false;
  }
}

/** The root.json a server handed out at enrollment was refused (not the join string's, or not a TUF root): nothing was pinned or sent. */
export class RootRefusedError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VERIFY', message, options);
  }
}

/** What an agent says when it is asked to enroll with no way to verify the vendor's root. */
export const NO_ROOT_TO_VERIFY =
  'enrolling needs a way to verify the vendor\'s root.json: give the join string from `bulwark agents token` on the server as --token (it carries the root\'s SHA-256), or the vendor\'s root.json as --trusted-root FILE. (--insecure-trust-first-server pins whatever root the server hands out: anyone who answers in its place at enrollment could then get their own content installed here.)';

export const TRUST_DESCRIPTIONS: Record<TrustMode, string> = {
  'join-string': "the vendor's root.json, checked against the join string's SHA-256 at enrollment",
  'trusted-root': "the vendor's root.json given with --trusted-root at enrollment",
  'first-server': 'INSECURE: the root.json the server handed out at enrollment, unchecked (--insecure-trust-first-server): a server met first may have been anyone\'s',
};

/** The first retry of a report the server did not take comes within this (doubling to a minute, capped by the poll interval). */
const REPORT_RETRY_MS = 2_000;

/**
 * Announcements that bring nothing new space the runs they start: the next one waits 2 s after the
 * last run, doubling with each such run, up to the poll interval (a server announcing without end,
 * whether compromised or broken, gets a run every few seconds at first, then one per poll, not run
 * after run). A run that installs anything starts it over.
 */
const QUIET_ANNOUNCEMENT_GAP_MS = 2_000;

export const AGENT_FAMILY_REMEDY = 'A dual-stack proxy (a host with both IPv4 and IPv6, running squid for instance) bridges the two: start the agent with --proxy HOST:PORT.';

export function enrollmentFile(dataDir: string): string {
  return path.join(dataDir, 'agent.json');
}

/** A server's address as an agent keeps it (and its enrollment names it): checked, with one trailing slash. */
export function serverAddress(server: string): string {
  return checkSourceUrl(server).href.replace(/\/?$/, '/');
}

/** The enrollment of an agent data directory, if it is one. */
export function readEnrollment(dataDir: string): Enrollment | undefined {
  try {
    const data = JSON.parse(fs.readFileSync(enrollmentFile(dataDir), 'utf8')) as Enrollment;
    return typeof data.id === 'string' && typeof data.credential === 'string' && typeof data.server === 'string' ? data : undefined;
  } catch {
    return undefined;
  }
}

export class Agent {
  readonly engine: Engine;
  readonly settings: Settings;
  private readonly server: string;
  private readonly log: (line: string) => void;
  private readonly random: () => number;
  private enrollment: Enrollment | undefined;
  private pollSeconds = DEFAULT_POLL_SECONDS;
  private spreadSeconds = DEFAULT_SPREAD_SECONDS;
  private stopping = false;
  /** The report being sent, and whether another was asked for meanwhile. */
  private reporting: Promise<void> | undefined;
  /** A report asked for while one was on its way, with the phase it was asked with (the last ask wins). */
  private reportAgain: { phase?: AgentReport['phase'] } | undefined;
  /** A report the server did not take (unreachable, 5xx, 429) is sent again after this back-off, not at the next poll. */
  private readonly reportBackoff: Backoff;
  private reportRetry: NodeJS.Timeout | undefined;
  /** Runs started by announcements, in a row, that installed nothing (see QUIET_ANNOUNCEMENT_GAP_MS). */
  private quietAnnouncements = 0;
  private lastRunEnded = 0;
  private gapTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private pollTimer: NodeJS.Timeout | undefined;
  private spreadTimer: NodeJS.Timeout | undefined;
  private streamLoop: Promise<void> | undefined;
  private dispatcher: Dispatcher | undefined;
  private control: { close(): Promise<void> } | undefined;
  /** Why the agent gave up (a refused credential), for the command to report with exit code 1. */
  fatal: Error | undefined;
  private onFatal: ((error: Error) => void) | undefined;

  /** The join string (or bare token) given, parsed. */
  private readonly join: JoinString | undefined;
  /** The longest a rollout hold is obeyed. */
  private readonly maxHoldSeconds: number;
  /** What the server's policy orders this agent, as judged after the last run (orders.ts). */
  private orders: OrdersFile;
  /** The server's policy the run in flight was given. */
  private runPolicy: { pins: Map<string, number>; hold: boolean } = { pins: new Map(), hold: false };

  constructor(private readonly options: AgentOptions) {
    this.server = serverAddress(options.server);
    this.join = options.token === undefined ? undefined : parseJoinString(options.token);
    this.maxHoldSeconds = options.maxHoldSeconds ?? DEFAULT_MAX_HOLD_SECONDS;
    if (options.token !== undefined && !this.join) throw new UsageError('--token is neither a join string nor an enrollment token (copy the last line `bulwark agents token` prints on the server)');
    this.log = options.log ?? (() => {});
    this.orders = readOrders(options.dataDir, (message) => this.log(`warning: ${message}`));
    this.random = options.random ?? Math.random;
    this.reportBackoff = new Backoff(REPORT_RETRY_MS, 60_000, this.random);
    this.settings = Settings.open(options.dataDir);
    // Said like the server says it (and kept as a reminder): a damaged settings.json loses its proxy.
    if (this.settings.recovered) this.log(`warning: ${this.settings.recovered}`);
    if (options.proxy) this.settings.set('proxy', options.proxy);
    this.engine = new Engine({
      dataDir: options.dataDir,
      settings: this.settings,
      offers: (fetcher) => loadOffers(this.server, fetcher),
      ...(options.mirrors?.length ? { mirrors: options.mirrors } : {}),
      ...(options.consumers ? { consumers: options.consumers } : {}),
      // The agent follows its server's policy (its pins: a rollback there is a rollback here, to a
      // version installed here; its rollout: hold until the agent's ring is reached, for at most
      // --max-hold), and its own pins.
      policy: async () => {
        const server = await this.serverPolicy();
        this.runPolicy = server;
        const { hold, holdLapsed } = holdFor(this.orders, server.hold, new Date(), this.maxHoldSeconds);
        return { pins: new Map([...server.pins, ...pinnedVersions(options.dataDir)]), hold, holdAt: server.holdAt, ...(holdLapsed ? { holdLapsed } : {}) };
      },
      familyRemedy: AGENT_FAMILY_REMEDY,
      ...(options.lockTaken ? { lockTaken: true } : {}),
      log: this.log,
    });
  }

  /** Enroll if needed, run the start-up update and follow the server; resolves once started. */
  async start(): Promise<void> {
    this.dispatcher = dispatcherFor(this.settings.data.proxy);
    this.enrollment = await this.enroll();
    // Stopped meanwhile (a signal during enrollment): start nothing that stop() would not end.
    if (this.stopping) return;
    this.settings.set('source', { url: this.server, trustedRoot: path.join(this.options.dataDir, 'trusted-root.json') });
    this.engine.on('run', (run) => {
      this.lastRunEnded = Date.now();
      const installed = run.components.some((c) => c.result === 'ok' && c.version !== c.previousVersion);
      if (installed) this.quietAnnouncements = 0;
      else if (run.trigger === 'notification') this.quietAnnouncements++;
      this.judge(run);
      void this.report(run);
    });
    this.engine.on('state', (state) => {
      // Emitted as a run begins, before the engine counts itself busy.
      if (state.type === 'checking') void this.report(undefined, 'updating');
    });
    this.engine.host({ schedule: false });
    // Where it stands, at once: an agent killed mid-update was left "updating" on the server, which
    // this clears now rather than when it is next heard from (a run may not even start: no release yet).
    void this.report();
    // A server that has not finished its first update has nothing to serve: wait for its announcement
    // rather than record a failed run (which would show this agent as failed on the server).
    const hasRelease = await this.serverHasRelease();
    if (this.stopping) return;
    const startup = hasRelease ? this.engine.startupUpdate() : undefined;
    if (!startup) this.log('the server has no release yet (its first update has not finished); updating when it announces one');
    // `bulwark update --data DIR` on this agent's directory asks it to update now, like on a server.
    this.control = await startControl(this.options.dataDir, { update: () => this.engine.update('manual'), change: (request) => this.engine.change(request) }, this.log).catch((error: unknown) => {
      this.log(`the control channel is unavailable (\`bulwark update\` cannot reach this agent): ${describeError(error)}`);
      return undefined;
    });
    if (this.stopping) {
      await this.control?.close();
      await startup?.catch(() => undefined);
      return;
    }
    this.schedulePoll();
    this.streamLoop = this.options.notify ? this.followBroker(this.options.notify) : this.followServer();
    await startup;
  }

  /** Whether the server has a release to serve (GET /agents/v1/index.json: 404 until its first update); yes when it cannot say. */
  private async serverHasRelease(): Promise<boolean> {
    try {
      const response = await bufferedRequest(this.url(AGENT_PATHS.index), {
        timeoutMs: AGENT_DEADLINES.idleMs,
        deadlineMs: AGENT_DEADLINES.indexMs,
        what: 'the index',
        maxBytes: AGENT_LIMITS.indexBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
      return response.status !== 404;
    } catch {
      return true; // the start-up update says what is wrong
    }
  }

  /**
   * The server's policy for this agent (GET /agents/v1/policy); nothing held when it cannot say. Asked
   * before every run, within its deadline: a server that answers too slowly holds up no run.
   */
  private async serverPolicy(): Promise<{ pins: Map<string, number>; hold: boolean; holdAt: Map<string, number> }> {
    const none = { pins: new Map<string, number>(), hold: false, holdAt: new Map<string, number>() };
    if (!this.enrollment) return none;
    try {
      const response = await bufferedRequest(this.url(AGENT_PATHS.policy), {
        headers: { authorization: `Bearer ${this.enrollment.credential}` },
        timeoutMs: AGENT_DEADLINES.idleMs,
        deadlineMs: AGENT_DEADLINES.policyMs,
        what: 'the policy',
        maxBytes: AGENT_LIMITS.policyBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
      if (response.status !== 200) return none;
      const policy = JSON.parse(response.body.toString('utf8')) as Partial<Record<keyof AgentPolicy, Record<string, unknown> | unknown>>;
      const versions = (map: unknown) => new Map(Object.entries((map as Record<string, unknown> | undefined) ?? {}).filter((entry): entry is [string, number] => isValidVersion(entry[1])));
      return { pins: versions(policy.pins), hold: policy.hold === true, holdAt: versions(policy.holdAt) };
    } catch (error) {
      // Without the server's word, nothing is rolled back or held; an unreachable server is the run's to report.
      if (error instanceof NetworkError && /too slow/.test(error.message)) this.log(`the server's policy: ${describeError(error)}; this run goes on without it (nothing held, nothing pinned by the server)`);
      return none;
    }
  }

  /** Judge what the server's policy did to this run (orders.ts), keep it, and say it when it changed. */
  private judge(run: RunRecord): void {
    const before = this.orders.current.map(describeOrder).join('\n');
    this.orders = judgeRun(this.orders, run, this.runPolicy, this.maxHoldSeconds);
    try {
      writeOrders(this.options.dataDir, this.orders);
    } catch (error) {
      this.log(`cannot record the server's orders: ${describeError(error)}`);
    }
    const now = this.orders.current.map(describeOrder).join('\n');
    if (now === before) return;
    if (!now) this.log('the server keeps this agent behind the vendor\'s latest no more');
    for (const order of this.orders.current) this.log(`server order: ${describeOrder(order)}`);
  }

  /** Resolves with the reason when the agent can go on no longer (its credential and token refused). */
  failed(): Promise<Error> {
    return new Promise((resolve) => {
      if (this.fatal) resolve(this.fatal);
      else this.onFatal = resolve;
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    clearTimeout(this.pollTimer);
    clearTimeout(this.spreadTimer);
    clearTimeout(this.gapTimer);
    clearTimeout(this.reportRetry);
    await this.streamLoop?.catch(() => undefined);
    await this.control?.close();
    await this.engine.stop();
    await this.dispatcher?.close().catch(() => undefined);
  }

  private url(pathname: string): string {
    return new URL(pathname, this.server).href;
  }

  /**
   * A POST to the server's agent API within `deadlineMs`, with the failure explained (too slow, family
   * mismatch, proxy...).
   */
  private async call(pathname: string, body: unknown, options: { credential?: string; deadlineMs: number; what: string }): Promise<{ status: number; json: unknown }> {
    let response;
    try {
      response = await bufferedRequest(this.url(pathname), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(options.credential ? { authorization: `Bearer ${options.credential}` } : {}) },
        body: JSON.stringify(body),
        timeoutMs: AGENT_DEADLINES.idleMs,
        deadlineMs: options.deadlineMs,
        what: options.what,
        maxBytes: AGENT_LIMITS.answerBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (cause) {
      throw cause instanceof NetworkError ? cause : await this.unreachable(cause);
    }
    let json: unknown = null;
    try {
      json = JSON.parse(response.body.toString('utf8'));
    } catch {
      // an error page: the status says enough
    }
    const proxied = this.proxyAnswered(response.status, response.headers, json);
    if (proxied) throw proxied;
    return { status: response.status, json };
  }

  /**
   * An answer other than 2xx that the proxy on the way wrote, not the server: the error that says so
   * (ProxyAuthError for its 401/407, NetworkError for the rest), which the agent retries; undefined
   * for the server's own answer. Told apart as the update path tells them (answeredByProxy: a 407,
   * Proxy-Authenticate, a realm or Server header naming a proxy), and through a proxy only the
   * server's own JSON {"error"} counts as the server's word: an error page is never taken for a
   * refusal that would end the agent.
   */
  private proxyAnswered(status: number, headers: IncomingHttpHeaders, body: unknown): ProxyAuthError | NetworkError | undefined {
    if (status < 300) return undefined;
    const route = routeFor(this.settings.data.proxy, this.server);
    if (!route.viaProxy) return undefined;
    const json = /\bjson\b/i.test(String(headers['content-type'] ?? '')) && typeof (body as { error?: unknown } | null)?.error === 'string';
    if (json && !answeredByProxy(status, headers)) return undefined;
    const origin = new URL(this.server).origin;
    if (status === 401 || status === 407) {
      return new ProxyAuthError(`the ${route.description} refused the credentials (HTTP ${status}) on the way to ${origin}: check the proxy user name and password (--proxy-user, BULWARK_PROXY_PASSWORD); the server was not asked`, { status });
    }
    return new NetworkError(`the ${route.description} answered HTTP ${status} instead of the server ${origin}: it could not reach the server (or would not forward the request)`);
  }

  private async unreachable(cause: unknown): Promise<NetworkError | ProxyAuthError> {
    const route = routeFor(this.settings.data.proxy, this.server);
    // undici turns a proxy's refusal of a CONNECT tunnel (https servers) into an error, not an answer.
    const refused = route.viaProxy ? proxyRefusalStatus(cause) : undefined;
    const proxied = refused === undefined ? undefined : this.proxyAnswered(refused, { 'proxy-authenticate': '' }, undefined);
    if (proxied) return proxied;
    if (!route.viaProxy) {
      const mismatch = await explainUnreachable(new URL(this.server).hostname, cause, { remedy: AGENT_FAMILY_REMEDY });
      if (mismatch) return new NetworkError(`cannot reach the server ${new URL(this.server).origin}: ${mismatch.message} (${errorCode(cause) ?? networkReason(cause)}). ${mismatch.action}`, { familyMismatch: true });
    }
    return new NetworkError(`cannot reach the server ${new URL(this.server).origin}${route.viaProxy ? ` through the ${route.description}` : ''}: ${networkReason(cause)}`, { cause });
  }

  /**
   * The enrollment on disk, or a new one made with the join string: retried with back-off while the
   * server is unreachable, or hands out a root that is not the join string's (a man in the middle may
   * be gone later; nothing is pinned or sent meanwhile). With no way to verify the vendor's root at
   * all, refused at once (UsageError).
   */
  private async enroll(): Promise<Enrollment> {
    const existing = readEnrollment(this.options.dataDir);
    if (existing && existing.server === this.server) return existing;
    if (!this.join) {
      throw new UsageError(existing ? `this agent was enrolled with ${existing.server}; to move it to ${this.server}, give its join string as --token` : 'first contact with the server needs its join string: --token JOIN (the last line `bulwark agents token` prints on the server)');
    }
    const pinned = fs.existsSync(this.pinnedRootFile());
    if (!pinned && !this.join.rootSha256 && !this.options.trustedRoot && !this.options.insecureTrustFirstServer) throw new UsageError(NO_ROOT_TO_VERIFY);
    const backoff = new Backoff(1000, 60_000, this.random);
    for (;;) {
      try {
        return await this.enrollOnce(this.join.token);
      } catch (error) {
        if (!(error instanceof NetworkError || error instanceof ProxyAuthError || error instanceof RootRefusedError) || this.stopping) throw error;
        const wait = backoff.next();
        this.log(`${describeError(error)}; trying again in ${Math.round(wait / 1000)} s`);
        await sleep(wait, this.abort.signal);
        if (this.stopping) throw new UsageError('stopped before the agent could enroll');
      }
    }
  }

  private pinnedRootFile(): string {
    return path.join(this.options.dataDir, 'trusted-root.json');
  }

  /**
   * Enroll once: the vendor's root decided first (and only then the token sent), then the root and
   * the credential kept. A root already pinned here (an agent enrolling again) stays, with how it was
   * trusted.
   */
  private async enrollOnce(token: string): Promise<Enrollment> {
    const previous = readEnrollment(this.options.dataDir);
    const toPin = fs.existsSync(this.pinnedRootFile()) ? undefined : await this.rootToPin();
    const trust = toPin?.trust ?? previous?.trust;
    const asked = this.options.name ?? os.hostname();
    const request: EnrollRequest = { token, name: asked, hostname: os.hostname() };
    const { status, json } = await this.call(AGENT_PATHS.enroll, request, { deadlineMs: AGENT_DEADLINES.enrollMs, what: 'the enrollment' });
    const said = (json as { error?: unknown })?.error;
    const why = typeof said === 'string' ? `: ${JSON.stringify(said.slice(0, 300))}` : '';
    if (status === 401) throw new EnrollmentError(`the server refused the enrollment token: it is wrong or was rotated (get the current join string with \`bulwark agents token\` on the server)`, { tokenRefused: true });
    if (status === 429) throw new NetworkError(`the server refuses enrollments from this address for now (too many failed attempts came from it)${why}`);
    // The server failed (not a refusal): tried again, like an unreachable server.
    if (status >= 500) throw new NetworkError(`the server answered HTTP ${status} to the enrollment${why}`);
    if (status !== 200) throw new EnrollmentError(`the server answered HTTP ${status} to the enrollment${why}`);
    const answer = json as Partial<Record<keyof EnrollAnswer, unknown>>;
    if (!isToken(answer.id) || !isToken(answer.credential)) throw new EnrollmentError('the server answered the enrollment without a usable id and credential (each 1 to 512 visible ASCII characters); is this a Bulwark server?');
    // The name goes into every report and log line: one the server's own report schema would refuse is not taken.
    const name = isAgentName(answer.name) ? answer.name : asked;
    if (answer.name !== undefined && name !== answer.name) this.log(`the server named this agent ${JSON.stringify(String(answer.name).slice(0, 120))}, which is not a name (1 to 100 characters): keeping ${JSON.stringify(asked)}`);
    const ring = isRing(answer.ring) ? answer.ring : undefined;
    if (toPin) writeFileAtomic(this.pinnedRootFile(), toPin.root);
    const enrollment: Enrollment = { server: this.server, id: answer.id, credential: answer.credential, name, enrolledAt: new Date().toISOString(), ...(ring ? { ring } : {}), ...(trust ? { trust } : {}) };
    writeFileAtomic(enrollmentFile(this.options.dataDir), JSON.stringify(enrollment, null, 1) + '\n');
    fs.chmodSync(enrollmentFile(this.options.dataDir), 0o600);
    this.applyServerSettings(answer);
    this.log(`enrolled with ${this.server} as ${JSON.stringify(name)}${ring ? ` in the ${ring} ring (its enrollment token's)` : ''}`);
    if (name !== asked) this.log(`the server already has an agent named ${JSON.stringify(asked)}: this one is listed as ${JSON.stringify(name)}`);
    if (trust === 'first-server') this.log(`WARNING: trusting ${TRUST_DESCRIPTIONS[trust]}`);
    return enrollment;
  }

  /** The vendor's root to pin, and how it is trusted: the operator's file, or the server's checked against the join string (or, if told so, unchecked). */
  private async rootToPin(): Promise<{ root: Buffer; trust: TrustMode }> {
    const expected = this.join?.rootSha256;
    // Here, not only in enroll(): every way to a pinned root passes this point, so none pins unchecked unless told to.
    if (!expected && !this.options.trustedRoot && !this.options.insecureTrustFirstServer) throw new UsageError(NO_ROOT_TO_VERIFY);
    if (this.options.trustedRoot) {
      const root = fs.readFileSync(this.options.trustedRoot);
      if (expected && sha256(root) !== expected) throw new UsageError(`--trusted-root ${this.options.trustedRoot} has the SHA-256 ${sha256(root)}, the join string names ${expected}: give one or the other, or the join string of this vendor's root`);
      if (!isRootJson(root)) throw new UsageError(`--trusted-root ${this.options.trustedRoot} is not a TUF root.json`);
      return { root, trust: 'trusted-root' };
    }
    let response;
    try {
      response = await bufferedRequest(this.url(AGENT_PATHS.root), {
        timeoutMs: AGENT_DEADLINES.idleMs,
        deadlineMs: AGENT_DEADLINES.enrollMs,
        what: "the vendor's root",
        maxBytes: AGENT_LIMITS.rootBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (cause) {
      throw cause instanceof NetworkError ? cause : await this.unreachable(cause);
    }
    if (response.status === 404) throw new RootRefusedError("the server has no vendor's root.json to hand out (its update source is not set up)");
    if (response.status !== 200) throw new RootRefusedError(`the server answered HTTP ${response.status} when asked for the vendor's root.json`);
    const root = response.body;
    if (expected) {
      const got = sha256(root);
      if (got !== expected) {
        throw new RootRefusedError(
          `refused the vendor's root.json the server handed out: its SHA-256 is ${got}, the join string's is ${expected}. Nothing was pinned and the token was not sent. Either this is not the server the join string came from (or something between them changed its answer), or that server's trusted root was replaced since: then get a fresh join string with \`bulwark agents token\` on it`,
        );
      }
    }
    if (!isRootJson(root)) throw new RootRefusedError("the root.json the server handed out is not a TUF root.json");
    return { root, trust: expected ? 'join-string' : 'first-server' };
  }

  /** Timing values from the server, each clamped into its documented range (AGENT_TIMING), and said when it had to be. */
  private applyServerSettings(answer: { pollSeconds?: unknown; spreadSeconds?: unknown }): void {
    for (const name of ['pollSeconds', 'spreadSeconds'] as const) {
      const value = clampTiming(name, answer[name]);
      if (value === undefined) continue;
      if (value !== answer[name] && this.clamped[name] !== answer[name]) {
        const { min, max } = AGENT_TIMING[name];
        this.log(`the server asked for ${name === 'pollSeconds' ? 'a poll interval' : 'a spread'} of ${String(answer[name])} s; using ${value} s (an agent takes ${min} to ${max} s)`);
      }
      this.clamped[name] = answer[name];
      this[name] = value;
    }
  }

  /** The last timing values the server sent, to say a clamped one once, not at every report. */
  private readonly clamped: Record<'pollSeconds' | 'spreadSeconds', unknown> = { pollSeconds: undefined, spreadSeconds: undefined };

  /**
   * The credential was refused: enroll again with the token if there is one, else give up. The stream
   * and a report can both meet the refusal at once: they share one re-enrollment, not two (which would
   * list the agent twice).
   */
  private credentialRefused(): Promise<void> {
    this.reenrolling ??= this.enrollAgain().finally(() => (this.reenrolling = undefined));
    return this.reenrolling;
  }

  private reenrolling: Promise<void> | undefined;

  private async enrollAgain(): Promise<void> {
    if (!this.join) {
      this.giveUp(new EnrollmentError('the server no longer knows this agent\'s credential; start it again with --token (see `bulwark agents token` on the server)'));
      return;
    }
    try {
      this.enrollment = await this.enrollOnce(this.join.token);
    } catch (error) {
      // Only the server's own refusal of the token ends the agent (or no way left here to check the
      // vendor's root: nothing is pinned unchecked); anything else (a 403 or 404, an odd answer, an
      // unreachable server) is tried again at the next reconnect.
      if ((error instanceof EnrollmentError && error.tokenRefused) || error instanceof UsageError) this.giveUp(error as Error);
      else this.log(`enrolling again failed: ${describeError(error)}; trying again at the next reconnect`);
    }
  }

  private giveUp(error: Error): void {
    this.fatal = error;
    this.log(`agent stopping: ${error.message}`);
    this.onFatal?.(error);
  }

  /**
   * Keep the notification stream open, reconnecting with back-off. An announcement is only a hint to
   * look: whether anything is new is decided by the verified metadata, never by its number, so a
   * forged number cannot make the agent ignore the real announcements that follow.
   */
  private async followServer(): Promise<void> {
    const backoff = new Backoff(1000, 60_000, this.random);
    let connectedOnce = false;
    while (!this.stopping && !this.fatal) {
      const opened = Date.now();
      let failure: unknown;
      try {
        await followEvents(this.url(AGENT_PATHS.events), { credential: this.enrollment!.credential, ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}), idleMs: AGENT_DEADLINES.streamIdleMs, signal: this.abort.signal }, (event) => {
          if (event.event === 'hello') {
            if (connectedOnce) this.log('reconnected to the server');
            connectedOnce = true;
            const hello = safeJson(event.data) as Partial<HelloEvent> | undefined;
            this.applyServerSettings(hello ?? {});
            // A poll after every (re)connect: releases announced while the stream was down are caught now
            // (none when the server has no release yet: it announces its first).
            if (hello?.release !== 0) this.afterSpread('schedule');
          } else if (event.event === 'update') {
            // The server's operator asked its agents to update now.
            this.applyServerSettings((safeJson(event.data) as Partial<ReleaseEvent> | undefined) ?? {});
            this.log('the server asked for an update');
            this.afterSpread('notification');
          } else if (event.event === 'release') {
            const release = safeJson(event.data) as Partial<ReleaseEvent> | undefined;
            this.applyServerSettings(release ?? {});
            this.log(`the server announced ${Number.isSafeInteger(release?.release) ? `release ${release!.release}` : 'a release'}`);
            this.afterSpread('notification');
          }
        });
      } catch (error) {
        failure = error;
      }
      if (this.stopping) return;
      let why: string;
      if (failure === undefined) why = 'the server ended it';
      else if (failure instanceof StreamViolation) why = `${failure.message}: dropped the connection`;
      else if (failure instanceof StreamRefused) {
        const proxied = this.proxyAnswered(failure.status, failure.headers, safeJson(failure.body.toString('utf8')));
        if (!proxied && failure.status === 401) {
          // The server itself no longer knows the credential: enroll again (or give up), then reconnect.
          await this.credentialRefused();
          if (this.fatal || this.stopping) return;
          why = 'the server refused the credential';
        } else why = proxied ? describeError(proxied) : `the server answered HTTP ${failure.status}`;
      } else why = describeError(await this.unreachable(failure));
      // A stream that lived long was a working connection: start the back-off over. Any other end,
      // clean or not (a proxy answering 200 and closing), waits its turn like a failure.
      if (!(failure instanceof StreamViolation) && Date.now() - opened > LONG_LIVED_MS) backoff.reset();
      const wait = backoff.next();
      this.log(`notification stream: ${why}; reconnecting in ${(wait / 1000).toFixed(1)} s`);
      await sleep(wait, this.abort.signal);
    }
  }

  /** Follow releases announced through an MQTT broker (the retained message counts as a poll, like a hello). */
  private async followBroker(address: BrokerAddress): Promise<void> {
    let first = true;
    let updateAsked: string | undefined;
    await followBroker(address, { clientId: `bulwark-agent-${this.enrollment!.id}`, signal: this.abort.signal, random: this.random, log: this.log }, (message) => {
      this.applyServerSettings(message);
      if (first) {
        first = false;
        updateAsked = message.updateAsked;
        this.afterSpread('schedule');
      } else if (message.updateAsked && message.updateAsked !== updateAsked) {
        updateAsked = message.updateAsked;
        this.log('the server asked for an update');
        this.afterSpread('notification');
      } else {
        // A hint to look, like the stream's (see followServer).
        this.log(`the server announced release ${message.release}`);
        this.afterSpread('notification');
      }
    });
  }

  /** A run is to follow the one in flight (see update). */
  private followUp = false;

  /** Update after a random wait of up to the server's spread, once, however many triggers arrive meanwhile. */
  private afterSpread(trigger: 'notification' | 'schedule'): void {
    if (this.spreadTimer) return;
    const wait = Math.round(this.random() * this.spreadSeconds * 1000);
    this.spreadTimer = setTimeout(() => {
      this.spreadTimer = undefined;
      this.update(trigger);
    }, wait);
  }

  /**
   * Update now. Asked while a run is on its way, which may have read the server's timestamp before
   * the news that asks (a release announced mid-run), another run follows it: one, however many asks.
   */
  private update(trigger: 'notification' | 'schedule'): void {
    if (this.stopping) return;
    if (trigger === 'notification' && this.quietAnnouncements > 0 && !this.engine.busy) {
      const gap = Math.min(QUIET_ANNOUNCEMENT_GAP_MS * 2 ** Math.min(this.quietAnnouncements - 1, 30), this.pollSeconds * 1000);
      const wait = this.lastRunEnded + gap - Date.now();
      if (wait > 0) {
        if (this.gapTimer) return;
        if (this.quietAnnouncements >= 3) this.log(`the last ${this.quietAnnouncements} announcements brought nothing new: the next run waits ${Math.ceil(wait / 1000)} s`);
        this.gapTimer = setTimeout(() => {
          this.gapTimer = undefined;
          this.update(trigger);
        }, wait);
        this.gapTimer.unref();
        return;
      }
    }
    if (this.engine.busy) {
      if (this.followUp) return;
      this.followUp = true;
      // Joins the run in flight, whose outcome that run reports itself.
      void this.engine
        .update(trigger)
        .catch(() => undefined)
        .then(() => {
          this.followUp = false;
          this.update(trigger);
        });
      return;
    }
    this.engine.update(trigger).catch((error: unknown) => this.log(`update failed: ${describeError(error)}`));
  }

  /** The fallback: a poll (and so a report, also mid-run) every pollSeconds, ±20%. */
  private schedulePoll(): void {
    const wait = this.pollSeconds * 1000 * (0.8 + 0.4 * this.random());
    this.pollTimer = setTimeout(() => {
      // Mid-run, a report that it still is: the console tells a run going on from an agent silent
      // since it began one (src-renderer/lib/format.ts agentBadge).
      if (this.engine.busy) void this.report(undefined, 'updating');
      this.update('schedule');
      this.schedulePoll();
    }, wait);
    this.pollTimer.unref();
  }

  /**
   * Tell the server where this agent stands; a failed report is only logged (the next one catches up).
   * One at a time, in order: a report asked for while one is on its way is sent after it, with the
   * state as it is then, so the server never records an older state last (a report sent as a run
   * began, arriving after the one sent as it ended, would show the agent behind until its next poll).
   */
  private report(run?: RunRecord, phase?: AgentReport['phase']): Promise<void> {
    if (this.reporting) {
      this.reportAgain = phase ? { phase } : {};
      return this.reporting;
    }
    this.reporting = (async () => {
      try {
        await this.sendReport(run, phase);
        // The state as it is now: the history's last run, and busy or not (or the phase last asked for:
        // a run that has begun says so before the engine counts itself busy).
        while (this.reportAgain) {
          const again = this.reportAgain;
          this.reportAgain = undefined;
          await this.sendReport(undefined, again.phase);
        }
      } finally {
        this.reporting = undefined;
      }
    })();
    return this.reporting;
  }

  private async sendReport(run?: RunRecord, phase?: AgentReport['phase']): Promise<void> {
    if (!this.enrollment || this.stopping) return;
    const last = run ?? this.engine.history.last();
    const changed = last?.components.filter((c) => c.method !== 'none') ?? [];
    const report: AgentReport = {
      name: this.enrollment.name,
      hostname: os.hostname(),
      addresses: ownAddresses(),
      components: this.engine.store.list().map((c) => ({ id: c.id, version: c.version, sha256: c.sha256, method: c.method })),
      ...(last
        ? {
            lastRun: {
              result: last.result,
              at: last.finishedAt,
              trigger: last.trigger,
              method: changed.some((c) => c.method === 'full') ? 'full' : changed.length ? 'incremental' : 'none',
              bytes: last.bytes,
              ...(last.error ? { error: last.error.slice(0, AGENT_LIMITS.reportErrorChars) } : {}),
              ...(last.failure ? { failure: { ...last.failure, message: last.failure.message.slice(0, AGENT_LIMITS.reportErrorChars) } } : {}),
            },
          }
        : {}),
      ...consumersReport(consumerViews(this.options.dataDir, (id) => this.engine.store.active(id))),
      // The state machine's word, not engine.busy: that stays true for a moment after a run has ended
      // (its 'run' event comes first), and a report sent then would leave the agent "updating".
      phase: phase ?? (run || !isBusy(this.engine.state) ? 'idle' : 'updating'),
      pollSeconds: this.pollSeconds,
      ...(this.enrollment.trust ? { trust: this.enrollment.trust } : {}),
      // Whatever keeps it behind the vendor's latest, in every report: never a plain "ok".
      ...(this.orders.current.length ? { orders: this.orders.current } : {}),
    };
    try {
      const { status, json } = await this.call(AGENT_PATHS.report, report, { credential: this.enrollment.credential, deadlineMs: AGENT_DEADLINES.reportMs, what: 'the report' });
      if (status === 401) await this.credentialRefused();
      else if (status === 200) {
        this.applyServerSettings((json ?? {}) as object);
        this.reportBackoff.reset();
        clearTimeout(this.reportRetry);
        this.reportRetry = undefined;
      } else {
        const said = (json as { error?: unknown } | undefined)?.error;
        // The server's words, quoted: a newline in them forges no log line.
        this.log(`the server refused the report (HTTP ${status})${typeof said === 'string' ? `: ${JSON.stringify(said.slice(0, 300))}` : ''}`);
        if (status >= 500 || status === 429) this.retryReport();
      }
    } catch (error) {
      this.log(`cannot report to the server: ${describeError(error)}`);
      this.retryReport();
    }
  }

  /**
   * Send the state again soon: a run's last report lost (the server restarting, a proxy's hiccup) would
   * otherwise leave the agent "updating" or behind in the console until its next poll, minutes away.
   * Within the poll interval, spread like the agents' other retries.
   */
  private retryReport(): void {
    if (this.reportRetry || this.stopping) return;
    const wait = Math.min(this.reportBackoff.next(), this.pollSeconds * 1000);
    this.reportRetry = setTimeout(() => {
      this.reportRetry = undefined;
      void this.report();
    }, wait);
    this.reportRetry.unref();
  }
}

/** Whether `bytes` is a TUF root.json (its signatures are the engine's to check, against itself and then the chain). */
function isRootJson(bytes: Buffer): boolean {
  try {
    return (JSON.parse(bytes.toString('utf8')) as { signed?: { _type?: unknown } }).signed?._type === 'root';
  } catch {
    return false;
  }
}

/** The engines this agent hands its components to, as its report carries them (none: no field). */
function consumersReport(views: readonly ConsumerView[]): Pick<AgentReport, 'consumers'> {
  if (!views.length) return {};
  return { consumers: views.map((c) => ({ id: c.id, engine: c.engine, version: c.version, active: c.active, ...(c.failure ? { error: c.failure.message.slice(0, 2000) } : {}) })) };
}

/** An id or credential as the agent sends it back in a header: 1 to 512 visible ASCII characters. */
function isToken(value: unknown): value is string {
  return typeof value === 'string' && /^[\x21-\x7e]{1,512}$/.test(value);
}

/** An agent's name as the server's report schema takes it (REPORT_SCHEMA): 1 to 100 characters; it is always logged quoted. */
function isAgentName(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= 100;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** This machine's own addresses (not loopback, not link-local), for the server's family checks. */
export function ownAddresses(): { address: string; family: 4 | 6 }[] {
  return Object.values(os.networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((nic) => !nic.internal && !nic.address.startsWith('169.254.') && !/^fe[89ab]/i.test(nic.address))
    .map((nic) => ({ address: nic.address, family: nic.family === 'IPv6' ? (6 as const) : (4 as const) }))
    .slice(0, 64);
}
