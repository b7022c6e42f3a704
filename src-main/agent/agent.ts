// `bulwark agent`: an endpoint's updater. It runs the same engine as the server, pointed at its
// server, and trusts only the vendor's signatures:
//
//   enroll (first contact, with the enrollment token) -> pinned trusted root + own credential
//   start-up update -> follow the server's notification stream
//     - "release": wait a random spread (no thundering herd), then update
//     - a jittered poll timer as a fallback, and a poll after every reconnect
//     - reconnect with capped exponential back-off and jitter
//   after every run and on each poll: report to the server
//
// Files in the agent's data directory, beside the engine's own (store/, history.jsonl, tuf/...):
//   agent.json         the server, this agent's id and credential (mode 0600)
//   trusted-root.json  the root pinned at enrollment (from --trusted-root or, trust on first use, the server)
//   settings.json      the server as update source, and the proxy
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { Engine, pinnedVersions } from '../engine/engine.js';
import { isValidVersion } from '../engine/components.js';
import { BulwarkError, describeError, HttpStatusError, NetworkError, UsageError } from '../engine/errors.js';
import { writeFileAtomic } from '../engine/files.js';
import type { RunRecord } from '../engine/history.js';
import { consumerViews, type ConsumerView } from '../engine/consumers.js';
import { networkReason } from '../engine/fetcher.js';
import { bufferedRequest } from '../engine/http.js';
import { errorCode, explainUnreachable } from '../engine/network.js';
import { dispatcherFor, routeFor } from '../engine/proxy.js';
import type { ProxySetting } from '../engine/settings.js';
import { Settings } from '../engine/settings.js';
import { checkSourceUrl } from '../engine/source.js';
import { startControl } from '../engine/control.js';
import { AGENT_DEADLINES, AGENT_LIMITS, AGENT_PATHS, DEFAULT_POLL_SECONDS, DEFAULT_SPREAD_SECONDS, type AgentReport, type EnrollRequest, type Ring } from '../protocol/agent-protocol.js';
import type { BrokerAddress } from '../protocol/broker.js';
import { followBroker } from './broker.js';
import { Backoff, followEvents } from './events.js';
import { loadOffers } from './offers.js';

export interface AgentOptions {
  /** The server's agent URL, e.g. http://server.example:8470/ */
  server: string;
  /** The enrollment token: needed on first contact, and again if the server forgot this agent. */
  token?: string;
  dataDir: string;
  /** How the agent is listed on the server (default: the host name). */
  name?: string;
  /** The vendor's root.json to trust, instead of the one the server hands out at enrollment. */
  trustedRoot?: string;
  /** Reach the server through this HTTP proxy (saved in the agent's settings). */
  proxy?: ProxySetting;
  /** The rollout ring to enroll in (canary, early or broad; the server's default is broad). */
  ring?: Ring;
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
  name: string;
  enrolledAt: string;
}

/** The server refused this agent's enrollment token (or forgot it and the token no longer works). */
export class EnrollmentError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_USAGE', message, options);
  }
}

export const AGENT_FAMILY_REMEDY = 'A dual-stack proxy (a host with both IPv4 and IPv6, running squid for instance) bridges the two: start the agent with --proxy HOST:PORT.';

export function enrollmentFile(dataDir: string): string {
  return path.join(dataDir, 'agent.json');
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
  private seenRelease = 0;
  private stopping = false;
  /** The report being sent, and whether another was asked for meanwhile. */
  private reporting: Promise<void> | undefined;
  private reportAgain = false;
  private readonly abort = new AbortController();
  private pollTimer: NodeJS.Timeout | undefined;
  private spreadTimer: NodeJS.Timeout | undefined;
  private streamLoop: Promise<void> | undefined;
  private dispatcher: Dispatcher | undefined;
  private control: { close(): Promise<void> } | undefined;
  /** Why the agent gave up (a refused credential), for the command to report with exit code 1. */
  fatal: Error | undefined;
  private onFatal: ((error: Error) => void) | undefined;

  constructor(private readonly options: AgentOptions) {
    this.server = checkSourceUrl(options.server).href.replace(/\/?$/, '/');
    this.log = options.log ?? (() => {});
    this.random = options.random ?? Math.random;
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
      // The agent follows its server's policy (its pins: a rollback there is a rollback here; its
      // rollout: hold until the agent's ring is reached), and its own pins.
      policy: async () => {
        const server = await this.serverPolicy();
        return { pins: new Map([...server.pins, ...pinnedVersions(options.dataDir)]), hold: server.hold, holdAt: server.holdAt };
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
    this.settings.set('source', { url: this.server, trustedRoot: path.join(this.options.dataDir, 'trusted-root.json') });
    this.engine.on('run', (run) => void this.report(run));
    this.engine.on('state', (state) => {
      // Emitted as a run begins, before the engine counts itself busy.
      if (state.type === 'checking') void this.report(undefined, 'updating');
    });
    this.engine.host({ schedule: false });
    // A server that has not finished its first update has nothing to serve: wait for its announcement
    // rather than record a failed run (which would show this agent as failed on the server).
    const startup = (await this.serverHasRelease()) ? this.engine.startupUpdate() : undefined;
    if (!startup) this.log('the server has no release yet (its first update has not finished); updating when it announces one');
    // `bulwark update --data DIR` on this agent's directory asks it to update now, like on a server.
    this.control = await startControl(this.options.dataDir, { update: () => this.engine.update('manual'), change: (request) => this.engine.change(request) }, this.log).catch((error: unknown) => {
      this.log(`the control channel is unavailable (\`bulwark update\` cannot reach this agent): ${describeError(error)}`);
      return undefined;
    });
    this.schedulePoll();
    this.streamLoop = this.options.notify ? this.followBroker(this.options.notify) : this.followServer();
    await startup;
  }

  /** Whether the server has a release to serve (GET /agents/v1/index.json: 404 until its first update); yes when it cannot say. */
  private async serverHasRelease(): Promise<boolean> {
    try {
      const response = await bufferedRequest(this.url(AGENT_PATHS.index), { timeoutMs: AGENT_DEADLINES.idleMs, maxBytes: AGENT_LIMITS.indexBytes, ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}) });
      return response.status !== 404;
    } catch {
      return true; // the start-up update says what is wrong
    }
  }

  /** The server's policy for this agent (GET /agents/v1/policy); nothing held when it cannot say. */
  private async serverPolicy(): Promise<{ pins: Map<string, number>; hold: boolean; holdAt: Map<string, number> }> {
    const none = { pins: new Map<string, number>(), hold: false, holdAt: new Map<string, number>() };
    if (!this.enrollment) return none;
    try {
      const response = await bufferedRequest(this.url(AGENT_PATHS.policy), {
        headers: { authorization: `Bearer ${this.enrollment.credential}` },
        timeoutMs: AGENT_DEADLINES.idleMs,
        maxBytes: AGENT_LIMITS.policyBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
      if (response.status !== 200) return none;
      const policy = JSON.parse(response.body.toString('utf8')) as { pins?: Record<string, unknown>; hold?: unknown; holdAt?: Record<string, unknown> };
      const versions = (map: Record<string, unknown> | undefined) => new Map(Object.entries(map ?? {}).filter((entry): entry is [string, number] => isValidVersion(entry[1])));
      return { pins: versions(policy.pins), hold: policy.hold === true, holdAt: versions(policy.holdAt) };
    } catch {
      // Unreachable now: the run itself will say so; without the server's word, nothing is rolled back or held.
      return none;
    }
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
    await this.streamLoop?.catch(() => undefined);
    await this.control?.close();
    await this.engine.stop();
    await this.dispatcher?.close().catch(() => undefined);
  }

  private url(pathname: string): string {
    return new URL(pathname, this.server).href;
  }

  /** A request to the server's agent API, with the failure explained (family mismatch, proxy...). */
  private async call(pathname: string, body: unknown, credential?: string): Promise<{ status: number; json: unknown }> {
    let response;
    try {
      response = await bufferedRequest(this.url(pathname), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
        body: JSON.stringify(body),
        timeoutMs: AGENT_DEADLINES.idleMs,
        maxBytes: AGENT_LIMITS.answerBytes,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (cause) {
      throw await this.unreachable(cause);
    }
    let json: unknown = null;
    try {
      json = JSON.parse(response.body.toString('utf8'));
    } catch {
      // an error page: the status says enough
    }
    return { status: response.status, json };
  }

  private async unreachable(cause: unknown): Promise<NetworkError> {
    const route = routeFor(this.settings.data.proxy, this.server);
    if (!route.viaProxy) {
      const mismatch = await explainUnreachable(new URL(this.server).hostname, cause, { remedy: AGENT_FAMILY_REMEDY });
      if (mismatch) return new NetworkError(`cannot reach the server ${new URL(this.server).origin}: ${mismatch.message} (${errorCode(cause) ?? networkReason(cause)}). ${mismatch.action}`, { familyMismatch: true });
    }
    return new NetworkError(`cannot reach the server ${new URL(this.server).origin}${route.viaProxy ? ` through the ${route.description}` : ''}: ${networkReason(cause)}`, { cause });
  }

  /** The enrollment on disk, or a new one made with the token (retrying while the server is unreachable). */
  private async enroll(): Promise<Enrollment> {
    const existing = readEnrollment(this.options.dataDir);
    if (existing && existing.server === this.server) return existing;
    if (!this.options.token) {
      throw new UsageError(existing ? `this agent was enrolled with ${existing.server}; to move it to ${this.server}, give --token` : 'first contact with the server needs the enrollment token: --token TOKEN (see `bulwark agents token` on the server)');
    }
    const backoff = new Backoff(1000, 30_000, this.random);
    for (;;) {
      try {
        return await this.enrollOnce(this.options.token);
      } catch (error) {
        if (!(error instanceof NetworkError) || this.stopping) throw error;
        const wait = backoff.next();
        this.log(`${describeError(error)}; trying again in ${Math.round(wait / 1000)} s`);
        await sleep(wait, this.abort.signal);
        if (this.stopping) throw new UsageError('stopped before the agent could enroll');
      }
    }
  }

  private async enrollOnce(token: string): Promise<Enrollment> {
    const name = this.options.name ?? os.hostname();
    const request: EnrollRequest = { token, name, hostname: os.hostname(), ...(this.options.ring ? { ring: this.options.ring } : {}) };
    const { status, json } = await this.call(AGENT_PATHS.enroll, request);
    if (status === 401) throw new EnrollmentError(`the server refused the enrollment token: it is wrong or was rotated (get the current one with \`bulwark agents token\` on the server)`);
    if (status !== 200) throw new EnrollmentError(`the server answered HTTP ${status} to the enrollment${(json as { error?: string })?.error ? `: ${(json as { error: string }).error}` : ''}`);
    const answer = json as { id?: unknown; credential?: unknown; root?: unknown; pollSeconds?: unknown; spreadSeconds?: unknown };
    if (typeof answer.id !== 'string' || typeof answer.credential !== 'string') throw new EnrollmentError('the server answered the enrollment without a credential; is this a Bulwark server?');
    this.pinTrustedRoot(typeof answer.root === 'string' ? answer.root : undefined);
    const enrollment: Enrollment = { server: this.server, id: answer.id, credential: answer.credential, name, enrolledAt: new Date().toISOString() };
    writeFileAtomic(enrollmentFile(this.options.dataDir), JSON.stringify(enrollment, null, 1) + '\n');
    fs.chmodSync(enrollmentFile(this.options.dataDir), 0o600);
    this.applyServerSettings(answer);
    this.log(`enrolled with ${this.server} as "${name}"`);
    return enrollment;
  }

  /** Pin the trusted root: --trusted-root if given, else the server's (trust on first use). Kept from then on. */
  private pinTrustedRoot(fromServer: string | undefined): void {
    const pinned = path.join(this.options.dataDir, 'trusted-root.json');
    if (fs.existsSync(pinned)) return;
    let root: Buffer;
    if (this.options.trustedRoot) {
      root = fs.readFileSync(this.options.trustedRoot);
    } else if (fromServer) {
      root = Buffer.from(fromServer, 'utf8');
      this.log('pinned the trusted root the server handed out (pass --trusted-root to bring the vendor\'s own)');
    } else {
      throw new EnrollmentError('the server has no verified root to hand out yet (it has not completed an update); pass --trusted-root FILE or try again later');
    }
    writeFileAtomic(pinned, root);
  }

  private applyServerSettings(answer: { pollSeconds?: unknown; spreadSeconds?: unknown }): void {
    if (typeof answer.pollSeconds === 'number' && answer.pollSeconds >= 1) this.pollSeconds = answer.pollSeconds;
    if (typeof answer.spreadSeconds === 'number' && answer.spreadSeconds >= 0) this.spreadSeconds = answer.spreadSeconds;
  }

  /** The credential was refused: enroll again with the token if there is one, else give up. */
  private async credentialRefused(): Promise<void> {
    if (this.options.token) {
      try {
        this.enrollment = await this.enrollOnce(this.options.token);
        return;
      } catch (error) {
        if (error instanceof NetworkError) return; // try again at the next reconnect
        this.giveUp(error as Error);
        return;
      }
    }
    this.giveUp(new EnrollmentError('the server no longer knows this agent\'s credential; start it again with --token (see `bulwark agents token` on the server)'));
  }

  private giveUp(error: Error): void {
    this.fatal = error;
    this.log(`agent stopping: ${error.message}`);
    this.onFatal?.(error);
  }

  /** Keep the notification stream open, reconnecting with back-off. */
  private async followServer(): Promise<void> {
    const backoff = new Backoff(1000, 60_000, this.random);
    let connectedOnce = false;
    while (!this.stopping && !this.fatal) {
      const opened = Date.now();
      try {
        await followEvents(this.url(AGENT_PATHS.events), { credential: this.enrollment!.credential, ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}), idleMs: AGENT_DEADLINES.streamIdleMs, signal: this.abort.signal }, (event) => {
          if (event.event === 'hello') {
            if (connectedOnce) this.log('reconnected to the server');
            connectedOnce = true;
            backoff.reset();
            const hello = safeJson(event.data) as { release?: number; pollSeconds?: number; spreadSeconds?: number } | undefined;
            this.applyServerSettings(hello ?? {});
            // A poll after every (re)connect: releases announced while the stream was down are caught now
            // (none when the server has no release yet: it announces its first).
            if (hello?.release !== 0) this.afterSpread('schedule', hello?.release);
          } else if (event.event === 'update') {
            // The server's operator asked its agents to update now.
            const update = safeJson(event.data) as { release?: number; spreadSeconds?: number } | undefined;
            this.applyServerSettings(update ?? {});
            this.log('the server asked for an update');
            this.afterSpread('notification', update?.release);
          } else if (event.event === 'release') {
            const release = safeJson(event.data) as { release?: number; spreadSeconds?: number } | undefined;
            this.applyServerSettings(release ?? {});
            if (typeof release?.release === 'number' && release.release > this.seenRelease) {
              this.log(`the server announced release ${release.release}`);
              this.afterSpread('notification', release.release);
            }
          }
        });
      } catch (error) {
        if (this.stopping) return;
        if (error instanceof HttpStatusError && error.status === 401) {
          await this.credentialRefused();
          continue;
        }
        if (Date.now() - opened > 30_000) backoff.reset();
        const wait = backoff.next();
        this.log(`notification stream: ${describeError(await this.unreachable(error))}; reconnecting in ${(wait / 1000).toFixed(1)} s`);
        await sleep(wait, this.abort.signal);
      }
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
        this.afterSpread('schedule', message.release);
      } else if (message.updateAsked && message.updateAsked !== updateAsked) {
        updateAsked = message.updateAsked;
        this.log('the server asked for an update');
        this.afterSpread('notification', message.release);
      } else if (message.release > this.seenRelease) {
        this.log(`the server announced release ${message.release}`);
        this.afterSpread('notification', message.release);
      }
    });
  }

  /** A run is to follow the one in flight (see update). */
  private followUp = false;

  /** Update after a random wait of up to the server's spread, once, however many triggers arrive meanwhile. */
  private afterSpread(trigger: 'notification' | 'schedule', release: number | undefined): void {
    if (release !== undefined) this.seenRelease = Math.max(this.seenRelease, release);
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

  /** The fallback: a poll (and so a report) every pollSeconds, ±20%. */
  private schedulePoll(): void {
    const wait = this.pollSeconds * 1000 * (0.8 + 0.4 * this.random());
    this.pollTimer = setTimeout(() => {
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
      this.reportAgain = true;
      return this.reporting;
    }
    this.reporting = (async () => {
      try {
        await this.sendReport(run, phase);
        // The state as it is now: the history's last run, and busy or not.
        while (this.reportAgain) {
          this.reportAgain = false;
          await this.sendReport();
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
      phase: phase ?? (run ? 'idle' : this.engine.busy ? 'updating' : 'idle'),
      pollSeconds: this.pollSeconds,
    };
    try {
      const { status, json } = await this.call(AGENT_PATHS.report, report, this.enrollment.credential);
      if (status === 401) await this.credentialRefused();
      else if (status === 200) this.applyServerSettings((json ?? {}) as object);
      else this.log(`the server refused the report (HTTP ${status})${(json as { error?: string })?.error ? `: ${(json as { error: string }).error}` : ''}`);
    } catch (error) {
      this.log(`cannot report to the server: ${describeError(error)}`);
    }
  }
}

/** The engines this agent hands its components to, as its report carries them (none: no field). */
function consumersReport(views: readonly ConsumerView[]): Pick<AgentReport, 'consumers'> {
  if (!views.length) return {};
  return { consumers: views.map((c) => ({ id: c.id, engine: c.engine, version: c.version, active: c.active, ...(c.failure ? { error: c.failure.message.slice(0, 2000) } : {}) })) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** This machine's own addresses (not loopback, not link-local), for the server's family checks. */
export function ownAddresses(): { address: string; family: 4 | 6 }[] {
  return Object.values(os.networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((nic) => !nic.internal && !nic.address.startsWith('169.254.') && !/^fe[89ab]/i.test(nic.address))
    .map((nic) => ({ address: nic.address, family: nic.family === 'IPv6' ? (6 as const) : (4 as const) }))
    .slice(0, 64);
}
