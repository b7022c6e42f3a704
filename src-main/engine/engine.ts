// The engine: owns the data directory, runs updates (single flight), distributes the result, keeps
// the schedule, and reports through its state machine. Hosts (CLI `serve`, the Electron shell, the
// browser console) drive it and observe it; none of them imports anything else of the engine's.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { consumerViews, Consumers, type ConsumerView } from './consumers.js';
import { BulwarkError, ConsumerError, describeError, errorCodeOf, UsageError } from './errors.js';
import { Evidence } from './evidence.js';
import { readPins, writePins, type Pins } from './pins.js';
import { cooldownFor, HttpFetcher, sweepDownloads } from './fetcher.js';
import { sha256, sweepTempFiles, writeFileAtomic } from './files.js';
import { History, runFailure, type RunRecord, type Trigger } from './history.js';
import { DEFAULT_LIMITS, type Limits } from './limits.js';
import { acquireLock, isRunning, processIdentity, type ProcessIdentity } from './lock.js';
import { dispatcherFor, routeFor } from './proxy.js';
import { collectGarbage } from './memory.js';
import { checkNetwork, interfacesFingerprint, type NetworkReport } from './network.js';
import { remindersFor, type Reminder } from './reminders.js';
import { setAsideReminders } from './set-aside.js';
import { savedWords } from './words.js';
import { UpdateScheduler } from './schedule.js';
import type { Settings, SourceSetting } from './settings.js';
import { checkSourceUrl, UpdateSource } from './source.js';
import { isBusy, StateMachine, type EngineState } from './state.js';
import { ComponentStore, type InstalledComponent, type StoreProblem } from './store.js';
import { runUpdate, type RunProgress, type ServerOffers } from './update-run.js';

export interface EngineOptions {
  dataDir: string;
  settings: Settings;
  /** Use this source instead of the one in the settings (the one-off `bulwark update` does). */
  source?: SourceSetting;
  limits?: Limits;
  /** undici dispatcher for all upstream traffic (a proxy agent, for instance). */
  dispatcher?: Dispatcher;
  /** How often to compare the network interfaces for changes (default 30 s). */
  networkPollMs?: number;
  /** A server: hands each run's verified result to its agents. */
  distributor?: Distributor;
  /** An agent: its server's offers beside the signed targets (see update-run.ts). */
  offers?: (fetcher: HttpFetcher) => Promise<ServerOffers | undefined>;
  /** An agent: HTTP caches of its server, tried in order for metadata and files before the server itself. */
  mirrors?: string[];
  /** What to hold: pinned components, and whether to hold every installed one (an agent whose ring the rollout has not reached). This data directory's own pins by default; an agent adds its server's policy. */
  policy?: () => Promise<Policy>;
  /** What to do about an address-family mismatch, when not the settings' Proxy tab (an agent's --proxy). */
  familyRemedy?: string;
  /**
   * The host took the data directory's lock itself, before it wrote anything (settings saved from its
   * flags, an enrollment), and releases it: hosting does not take it again.
   */
  lockTaken?: boolean;
  /** Hash every active file at this process's first run (true: servers, agents, the desktop app); false for a one-shot run. */
  verifyStoreAtStart?: boolean;
  /** The consumers file (engines each component is handed to); DATA/consumers.json when absent and present. */
  consumers?: string;
  log?: (line: string) => void;
}

/** The server's side of distribution, driven by the engine in its 'distributing' state. */
export interface Distributor {
  /** A signed target was downloaded and verified during a run: keep it for relaying. */
  keepVerifiedTarget(target: string, file: string): void;
  /** After a run whose signed metadata was refreshed: publish what was verified to the agents. */
  distribute(run: RunRecord, source: UpdateSource): Promise<void>;
}

export interface EngineStatus {
  state: EngineState;
  components: InstalledComponent[];
  lastRun: RunRecord | undefined;
  nextRun: string | null;
  source: SourceSetting;
  network: NetworkReport | undefined;
  reminders: Reminder[];
  /** A cool-down the source asked for, still running. */
  cooldownUntil: string | null;
  /** Installed components whose file or record is damaged (the next update repairs them). */
  problems: StoreProblem[];
  /** The engines components are handed to here, and whether each has the active version. */
  consumers: ConsumerView[];
}

/** Who runs (PID and start time, so a reused PID is not taken for a server), and what it is doing. */
export interface PersistedState extends ProcessIdentity {
  state: EngineState;
  nextRun: string | null;
  updatedAt: string;
  /** What the host found wrong around the engine (the agents' port taken): its reminders. */
  reminders?: Reminder[];
}

/** The last network check recorded in the data directory (by this or another process). */
export function readNetworkReport(dataDir: string): NetworkReport | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dataDir, 'network.json'), 'utf8')) as NetworkReport;
  } catch {
    return undefined;
  }
}

/** What a running engine last published about itself, if that process is still alive. */
export function readPersistedState(dataDir: string): PersistedState | undefined {
  try {
    const data = JSON.parse(fs.readFileSync(path.join(dataDir, 'state.json'), 'utf8')) as PersistedState;
    return isRunning(data) ? data : undefined;
  } catch {
    return undefined;
  }
}

/** What a run must leave where it is. */
export interface Policy {
  /** Components held at a version (pinned here, or by the agent's server). */
  pins: ReadonlyMap<string, number>;
  /** Hold every installed component at its version (the rollout has not reached this agent's ring). */
  hold: boolean;
  /** While held: the versions of the last release that passed the rollout, which a held agent with less moves up to. */
  holdAt?: ReadonlyMap<string, number>;
  /** A hold no longer obeyed: held since `since`, longer than the agent's maximum; components behind are taken to the latest, and say why. */
  holdLapsed?: { since: string; maxHoldSeconds: number };
}

/** An operator's change to a component (see Engine.change). */
export type ComponentChange =
  | { action: 'pin'; id: string; reason?: string }
  | { action: 'unpin'; id: string; reason?: string }
  | { action: 'rollback'; id: string; version: number; reason?: string };

export interface EngineEvents {
  /** Pins changed (an operator's pin, unpin or rollback). */
  pins: [Pins];
  state: [EngineState];
  progress: [RunProgress];
  run: [RunRecord];
  /** The network check changed (address families, source reachability). */
  network: [NetworkReport];
  /** The host's own reminders changed (see setHostReminders). */
  reminders: [];
}

/** How often the interfaces are compared to notice a network change. */
const NETWORK_POLL_MS = 30_000;

export class Engine extends EventEmitter<EngineEvents> {
  readonly store: ComponentStore;
  readonly history: History;
  readonly evidence: Evidence;
  private readonly machine = new StateMachine();
  private readonly scheduler: UpdateScheduler;
  private readonly limits: Limits;
  private readonly log: (line: string) => void;
  private inFlight: Promise<RunRecord> | undefined;
  /**
   * Whether this process has hashed every active file yet: a long-running one (server, agent, desktop)
   * does at its first run, then daily (ComponentStore.fullCheckDue); other runs check by size, time and
   * inode. A one-shot `bulwark update` hashes only when the store's last full check is a day old.
   */
  private storeVerified: boolean;
  private network: NetworkReport | undefined;
  private networkTimer: NodeJS.Timeout | undefined;
  private releaseLock: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private hosting = false;
  private hostReminders: Reminder[] = [];

  constructor(private readonly options: EngineOptions) {
    super();
    this.storeVerified = options.verifyStoreAtStart === false;
    fs.mkdirSync(options.dataDir, { recursive: true });
    this.store = new ComponentStore(options.dataDir);
    this.history = new History(options.dataDir);
    this.evidence = new Evidence(options.dataDir);
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.log = options.log ?? (() => {});
    this.scheduler = new UpdateScheduler(() => void this.update('schedule'));
    this.machine.on('change', (state) => {
      this.persistState();
      this.emit('state', state);
    });
  }

  /** Published for `bulwark status` in another process: the state, the next run and who runs. */
  private persistState(): void {
    const snapshot: PersistedState = {
      ...processIdentity(process.pid),
      state: this.machine.state,
      nextRun: this.scheduler.next()?.toISOString() ?? null,
      updatedAt: new Date().toISOString(),
      ...(this.hostReminders.length ? { reminders: this.hostReminders } : {}),
    };
    try {
      writeFileAtomic(path.join(this.options.dataDir, 'state.json'), JSON.stringify(snapshot) + '\n');
    } catch (error) {
      this.log(`cannot record the engine state: ${describeError(error)}`);
    }
  }

  get state(): EngineState {
    return this.machine.state;
  }

  /**
   * What the host found wrong around the engine that the operator must act on (the agents' port
   * taken by another program): shown with the engine's own reminders, here and — through state.json,
   * while this process runs — in `bulwark status`.
   */
  setHostReminders(reminders: Reminder[]): void {
    this.hostReminders = reminders;
    if (this.hosting) this.persistState();
    this.emit('reminders');
  }

  /** An update is running (a new request would join it). */
  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  /**
   * Start hosting: lock the data directory, run the start-up update (the first one after install is
   * recorded as such) and keep the schedule, following settings changes without a restart.
   */
  start(options: { schedule?: boolean } = {}): Promise<RunRecord> {
    this.host(options);
    return this.startupUpdate();
  }

  /** Start hosting without the start-up update (an agent whose server has nothing to serve yet). */
  host(options: { schedule?: boolean } = {}): void {
    if (!this.options.lockTaken) this.releaseLock = acquireLock(this.options.dataDir);
    this.hosting = true;
    this.sweepLeftovers();
    // An agent updates when its server says so (and on its own poll timer), not on the settings' schedule.
    const scheduled = options.schedule ?? true;
    if (scheduled) this.scheduler.set(this.options.settings.data.schedule);
    this.persistState();
    this.watchNetwork();
    this.unsubscribe = this.options.settings.onChange((key) => {
      if (key === 'schedule' && scheduled) {
        this.scheduler.set(this.options.settings.data.schedule);
        this.persistState();
        this.log(`schedule changed; next update at ${this.scheduler.next()?.toISOString() ?? 'never'}`);
      }
    });
  }

  /** The update a start runs: the first one after install is recorded as such. */
  startupUpdate(): Promise<RunRecord> {
    return this.update(this.history.last() ? 'startup' : 'install');
  }

  async stop(): Promise<void> {
    this.scheduler.stop();
    clearInterval(this.networkTimer);
    this.unsubscribe?.();
    await this.inFlight?.catch(() => undefined);
    if (this.hosting) fs.rmSync(path.join(this.options.dataDir, 'state.json'), { force: true });
    this.hosting = false;
    this.releaseLock?.();
    this.releaseLock = undefined;
  }

  /** A single update without hosting (the `bulwark update` command): lock, update, unlock. */
  async runOnce(trigger: Trigger = 'manual'): Promise<RunRecord> {
    const release = acquireLock(this.options.dataDir);
    this.sweepLeftovers();
    try {
      return await this.update(trigger);
    } finally {
      fs.rmSync(path.join(this.options.dataDir, 'state.json'), { force: true });
      release();
    }
  }

  /** Run `work` on this data directory without a process holding it (the CLI on a stopped server): lock, work, unlock. */
  async withLock<T>(work: () => Promise<T>): Promise<T> {
    const release = acquireLock(this.options.dataDir);
    this.sweepLeftovers();
    try {
      return await work();
    } finally {
      fs.rmSync(path.join(this.options.dataDir, 'state.json'), { force: true });
      release();
    }
  }

  /**
   * An operator's change to a component, recorded in the history like a run and handed to the agents:
   *   pin       keep the active version through every update until unpinned
   *   unpin     let updates move it again (from the next one)
   *   rollback  re-activate a version the store keeps, after checking the vendor's signed metadata kept
   *             with it (the one time a lower version is installed), and pin it there
   * Waits for a run in progress; an update asked for meanwhile joins this change.
   */
  change(request: ComponentChange): Promise<RunRecord> {
    const previous = this.inFlight?.catch(() => undefined);
    const work: Promise<RunRecord> = (async () => {
      await previous;
      return this.applyChange(request);
    })().finally(() => {
      if (this.inFlight === work) this.inFlight = undefined;
    });
    this.inFlight = work;
    return work;
  }

  private async applyChange(request: ComponentChange): Promise<RunRecord> {
    const started = new Date().toISOString();
    const { id } = request;
    const installed = this.store.active(id);
    const pins = readPins(this.options.dataDir);
    let reason: string;
    let version = installed?.version ?? null;
    if (request.action === 'unpin') {
      if (!pins[id]) throw new UsageError(`${id} is not pinned`);
      delete pins[id];
      reason = 'unpinned: updates move it again';
    } else if (request.action === 'pin') {
      if (!installed) throw new UsageError(`${id} is not installed: there is nothing to pin`);
      pins[id] = { version: installed.version, at: started, reason: request.reason ?? 'pinned by the operator' };
      reason = `pinned at ${installed.version}`;
    } else {
      const target = request.version;
      const file = this.store.versions(id).includes(target) ? this.store.pathOf(id, target) : undefined;
      if (!file) throw new UsageError(`${id} ${target} is not kept here (kept: ${this.store.versions(id).join(', ') || 'none'})`);
      const data = fs.readFileSync(file);
      const hash = sha256(data);
      // The vendor's word, not the store's: the metadata kept with the version must verify against the trusted root.
      this.evidence.verify(id, target, hash);
      this.machine.transition({ type: 'checking', trigger: 'manual' });
      this.machine.transition({ type: 'applying', trigger: 'manual', component: id, index: 0, total: 1, bytes: 0 });
      // The kept version goes to the engine that uses it the same way as an update's (check, place, reload, health).
      try {
        await this.consumers('manual')?.hand(id, { version: target, sha256: hash, file });
      } catch (error) {
        return this.refusedChange(started, id, installed?.version ?? null, target, error);
      }
      this.store.activate(id, target, { sha256: hash, length: data.length, installedAt: started, method: this.evidence.method(id, target) ?? 'full' });
      reason = installed && installed.version > target ? `rolled back from ${installed.version} to ${target}, and pinned there` : `moved to ${target}, and pinned there`;
      pins[id] = { version: target, at: started, reason: request.reason ?? reason };
      version = target;
    }
    writePins(this.options.dataDir, pins);
    const record: RunRecord = {
      trigger: 'manual',
      startedAt: started,
      finishedAt: new Date().toISOString(),
      result: 'ok',
      bytes: 0,
      components: [{ id, previousVersion: installed?.version ?? null, version, method: 'none', reason: request.reason ? `${reason} (${request.reason})` : reason, bytes: 0, fullBytes: 0, durationMs: 0, result: 'ok' }],
    };
    // The agents follow the server's pins: publish and tell them.
    if (this.options.distributor && request.action === 'rollback' && this.source().url) {
      try {
        this.machine.transition({ type: 'distributing', trigger: 'manual' });
        await this.options.distributor.distribute(record, this.openSource(new HttpFetcher({ timeoutMs: 1, tempDir: path.join(this.options.dataDir, 'tmp', 'downloads') })));
      } catch (error) {
        // The rollback itself is done (and pinned); the agents learn of it at the next release.
        record.warning = `the agents could not be told yet: ${describeError(error)}`;
        this.log(record.warning);
      }
    }
    if (this.machine.state.type !== 'idle' && this.machine.state.type !== 'failed') this.machine.transition({ type: 'idle' });
    this.record(record);
    this.log(summarize(record));
    this.emit('run', record);
    this.emit('pins', readPins(this.options.dataDir));
    return record;
  }

  /** A rollback whose version the engine that uses it would not take: recorded as a failed change; nothing moved. */
  private refusedChange(started: string, id: string, previous: number | null, target: number, error: unknown): RunRecord {
    const message = describeError(error);
    const code = error instanceof BulwarkError ? { errorCode: error.code } : {};
    const consumer =
      error instanceof ConsumerError ? { consumer: { version: target, engine: error.engine, stage: error.stage, kind: error.kind, message: error.engineMessage ?? error.message, at: error.at } } : {};
    const record: RunRecord = {
      trigger: 'manual',
      startedAt: started,
      finishedAt: new Date().toISOString(),
      result: 'failed',
      bytes: 0,
      error: message,
      ...code,
      components: [{ id, previousVersion: previous, version: previous, offeredVersion: target, method: 'none', reason: `not rolled back to ${target}`, bytes: 0, fullBytes: 0, durationMs: 0, result: 'failed', error: message, ...code, ...consumer }],
    };
    const failure = runFailure(record);
    if (failure) record.failure = failure;
    this.machine.transition({ type: 'failed', error: message, ...(code.errorCode ? { code: code.errorCode } : {}), at: record.finishedAt });
    this.record(record);
    this.log(summarize(record));
    this.emit('run', record);
    return record;
  }

  /**
   * Remove what a process killed mid-write left behind (atomic writes' temporary files: state,
   * network, cool-downs, the lock, TUF metadata, releases, evidence). Only the lock holder may.
   */
  private sweepLeftovers(): void {
    const { dataDir } = this.options;
    const dirs = [dataDir, path.join(dataDir, 'distribution'), path.join(dataDir, 'distribution', 'metadata'), path.join(dataDir, 'evidence')];
    const tuf = path.join(dataDir, 'tuf');
    if (fs.existsSync(tuf)) for (const name of fs.readdirSync(tuf)) dirs.push(path.join(tuf, name), path.join(tuf, name, 'targets'));
    for (const dir of dirs) sweepTempFiles(dir);
  }

  /**
   * Append a run to the history. The work itself is done: a history that cannot be written (a full
   * disk, a directory in its place) must not stop the server; it is logged and said in the record.
   */
  private record(record: RunRecord): void {
    try {
      this.history.append(record);
    } catch (error) {
      record.warning = describeError(error);
      this.log(record.warning);
    }
  }

  /** The cool-down the current source asked for, if it has not run out. */
  cooldownUntil(): Date | undefined {
    const { url } = this.source();
    return url ? cooldownFor(this.options.dataDir, url) : undefined;
  }

  nextRun(): Date | null {
    return this.scheduler.next();
  }

  status(): EngineStatus {
    const lastRun = this.history.last();
    const problems = this.store.problems(false);
    const network = this.network ?? readNetworkReport(this.options.dataDir);
    const { dataDir, settings } = this.options;
    // Damaged files set aside here (and where the desktop app keeps its settings), and what the host
    // found: this process's own, or the running host's as it published them.
    const settingsDir = path.dirname(settings.file);
    const setAside = [...setAsideReminders(dataDir), ...(path.resolve(settingsDir) !== path.resolve(dataDir) ? setAsideReminders(settingsDir) : [])];
    const host = this.hosting ? this.hostReminders : (readPersistedState(dataDir)?.reminders ?? []);
    return {
      state: this.machine.state,
      components: this.store.list(),
      lastRun,
      nextRun: this.scheduler.next()?.toISOString() ?? null,
      source: this.source(),
      network,
      reminders: [...remindersFor({ settings: settings.data, lastRun, network, cooldownUntil: this.cooldownUntil(), storeProblems: problems }), ...setAside, ...host],
      problems,
      cooldownUntil: this.cooldownUntil()?.toISOString() ?? null,
      consumers: consumerViews(this.options.dataDir, (id) => this.store.active(id)),
    };
  }

  /** The consumers file this engine uses, if any (read for each run, so an edit applies at the next one). Throws ConsumerConfigError. */
  consumers(trigger: Trigger): Consumers | undefined {
    return Consumers.open(this.options.dataDir, this.options.consumers, { log: this.log, trigger });
  }

  /**
   * Check the address families of this server, the source and the agents (TUF-independent, cheap:
   * a DNS lookup and a TCP connect per family). Runs before each update and on network changes.
   */
  async checkNetwork(): Promise<NetworkReport> {
    const { url } = this.source();
    const settings = this.options.settings.data;
    const report = await checkNetwork({
      ...(url ? { sourceUrl: url } : {}),
      agents: settings.agents,
      probe: !settings.proxy.enabled,
      timeoutMs: 3000,
    });
    this.network = report;
    try {
      writeFileAtomic(path.join(this.options.dataDir, 'network.json'), JSON.stringify(report) + '\n');
    } catch (error) {
      this.log(`cannot record the network check: ${describeError(error)}`);
    }
    this.emit('network', report);
    return report;
  }

  private watchNetwork(): void {
    let fingerprint = interfacesFingerprint();
    this.networkTimer = setInterval(() => {
      const now = interfacesFingerprint();
      if (now === fingerprint) return;
      fingerprint = now;
      this.log('network interfaces changed; checking address families again');
      void this.checkNetwork().catch((error: unknown) => this.log(`network check failed: ${describeError(error)}`));
    }, this.options.networkPollMs ?? NETWORK_POLL_MS);
    this.networkTimer.unref();
  }

  /** Run an update; while one is running, callers join it instead of starting another. */
  update(trigger: Trigger = 'manual'): Promise<RunRecord> {
    if (this.inFlight) return this.inFlight;
    // (An Update now asked for by a person still runs, and fails saying why, as it always did.)
    if (!this.source().url && trigger !== 'manual') {
      // Nothing to run without a source: a fresh install waits for one (its console says so) rather
      // than record a failed run at every start and schedule. The caller gets the reason.
      const now = new Date().toISOString();
      this.log('no update source is set yet; updates start once one is (Settings › Update source, or bulwark settings set source)');
      return Promise.resolve({
        trigger,
        startedAt: now,
        finishedAt: now,
        result: 'failed',
        bytes: 0,
        error: 'no update source is configured: set its URL and trusted root.json in the settings',
        errorCode: 'ERR_USAGE',
        components: [],
      });
    }
    this.inFlight = this.run(trigger).finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async run(trigger: Trigger): Promise<RunRecord> {
    const started = new Date();
    this.machine.transition({ type: 'checking', trigger });
    // Alongside the update, not before it: probing a black-holed family takes its full timeout, while
    // the update's own connections race the families (Happy Eyeballs) anyway.
    const networkChecked = this.checkNetwork().catch((error: unknown) => this.log(`network check failed: ${describeError(error)}`));
    let record: RunRecord;
    let source: UpdateSource | undefined;
    let fetcher: HttpFetcher | undefined;
    let dispatcher: Dispatcher | undefined;
    let url: string | undefined;
    try {
      url = this.source().url || undefined;
      // Read per run, so a proxy saved in the settings applies to the next update without a restart.
      const { proxy } = this.options.settings.data;
      dispatcher = this.options.dispatcher ?? dispatcherFor(proxy);
      const downloads = path.join(this.options.dataDir, 'tmp', 'downloads');
      sweepDownloads(downloads);
      const base = url ? checkSourceUrl(url).href.replace(/\/?$/, '/') : undefined;
      fetcher = new HttpFetcher({
        timeoutMs: this.limits.requestTimeoutMs,
        tempDir: downloads,
        cooldownFile: path.join(this.options.dataDir, 'cooldown.json'),
        // Targets have content-addressed names (consistent snapshots, or the server's own files), so a
        // broken-off download of one can be resumed.
        resumable: (target) => (base !== undefined && target.startsWith(new URL('targets/', base).href)) || /\/made\//.test(new URL(target).pathname),
        route: this.options.dispatcher || !url ? 'configured dispatcher' : routeFor(proxy, url).description,
        ...(this.options.familyRemedy ? { familyRemedy: this.options.familyRemedy } : {}),
        ...(base && this.options.mirrors?.length ? { mirrors: { of: base, bases: this.options.mirrors } } : {}),
        dispatcher,
      });
      const runFetcher = fetcher;
      const { pins, hold, holdAt, holdLapsed } = this.options.policy ? await this.options.policy() : { pins: pinnedVersions(this.options.dataDir), hold: false, holdAt: undefined, holdLapsed: undefined };
      const handoff = this.consumers(trigger);
      source = this.openSource(fetcher);
      const { distributor, offers } = this.options;
      record = await runUpdate(
        {
          source,
          fetcher,
          store: this.store,
          limits: this.limits,
          tempDir: path.join(this.options.dataDir, 'tmp'),
          onProgress: (progress) => this.onProgress(trigger, progress, runFetcher),
          verifyStore: !this.storeVerified || this.store.fullCheckDue(),
          pins,
          hold,
          ...(holdAt ? { holdAt } : {}),
          ...(holdLapsed ? { holdLapsed } : {}),
          evidence: this.evidence,
          ...(handoff ? { handoff } : {}),
          ...(offers ? { offers: () => offers(runFetcher) } : {}),
          ...(distributor ? { onVerifiedTarget: (target: string, file: string) => distributor.keepVerifiedTarget(target, file) } : {}),
        },
        trigger,
      );
      if (source.refreshed) this.storeVerified = true;
    } catch (error) {
      // Whatever went wrong before or around the run (a settings file broken by hand, a full disk):
      // a failed run, recorded like any other.
      const code = errorCodeOf(error);
      record = {
        trigger,
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        result: 'failed',
        bytes: fetcher?.bytesReceived ?? 0,
        error: describeError(error),
        ...(code ? { errorCode: code } : {}),
        components: [],
      };
      const failure = runFailure(record);
      if (failure) record.failure = failure;
    }
    if (url) record.source = url;
    // Distribute after every run that refreshed the signed metadata: agents need the fresh timestamp
    // even when no component changed. Only new components make it a 'distributing' stage (and make
    // the distributor notify the agents); fresh metadata alone is published quietly.
    if (this.options.distributor && source?.refreshed) {
      try {
        const changed = record.components.some((c) => c.method !== 'none' || c.previousVersion !== c.version);
        if (changed && isBusy(this.machine.state)) this.machine.transition({ type: 'distributing', trigger });
        await this.options.distributor.distribute(record, source);
      } catch (error) {
        record.result = 'failed';
        record.error = `distribution to the agents failed: ${describeError(error)}`;
        this.log(record.error);
      }
    }
    if (dispatcher && dispatcher !== this.options.dispatcher) await dispatcher.close().catch(() => undefined);
    await networkChecked; // so the reminders recorded with this run see the fresh report
    this.record(record);
    this.machine.transition(
      record.result === 'ok'
        ? { type: 'idle' }
        : { type: 'failed', error: record.error ?? 'update failed', ...(record.errorCode ? { code: record.errorCode } : {}), at: record.finishedAt },
    );
    this.log(summarize(record));
    this.emit('run', record);
    // The run's buffers and parsed metadata are garbage now: give the memory back while idle.
    setImmediate(collectGarbage).unref();
    return record;
  }

  private openSource(fetcher: HttpFetcher): UpdateSource {
    const { url, trustedRoot } = this.source();
    if (!url) throw new UsageError('no update source is configured: set its URL and trusted root.json in the settings');
    return new UpdateSource({ url, trustedRoot, cacheDir: path.join(this.options.dataDir, 'tuf'), fetcher, limits: this.limits });
  }

  private source(): SourceSetting {
    return this.options.source ?? this.options.settings.data.source;
  }

  private onProgress(trigger: Trigger, progress: RunProgress, fetcher: HttpFetcher): void {
    this.emit('progress', progress);
    if (progress.stage === 'downloading') {
      const { component, index, total, method } = progress;
      this.machine.transition({ type: 'downloading', trigger, component, index, total, method, bytes: fetcher.bytesReceived });
    } else if (progress.stage === 'applying') {
      const { component, index, total } = progress;
      this.machine.transition({ type: 'applying', trigger, component, index, total, bytes: fetcher.bytesReceived });
    }
  }

}

/** The versions this data directory's pins hold components at. */
export function pinnedVersions(dataDir: string): Map<string, number> {
  return new Map(Object.entries(readPins(dataDir)).map(([id, pin]) => [id, pin.version]));
}

/** Bytes for people: 1.2 MB, 16.2 kB, 754 B. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/** A run for the log: a head line, then one line per component that changed, failed, or was left behind on purpose. */
export function summarize(run: RunRecord): string {
  const lines = run.components
    // Changed, failed, or left behind on purpose (pinned, held by a rollout, waiting for the server).
    .filter((c) => c.method !== 'none' || c.result === 'failed' || c.previousVersion !== c.version || (c.reason !== 'up to date' && c.offeredVersion !== c.version))
    .map((c) => {
      const versions = `${c.id} ${c.previousVersion ?? '(none)'} → ${c.result === 'ok' ? c.version : c.previousVersion ?? '(none)'}`;
      if (c.result === 'failed') return `    ${versions}  FAILED: ${c.error}`;
      if (c.method === 'none' && c.previousVersion === c.version) return `    ${c.id} stays at ${c.version ?? '(none)'} (${c.offeredVersion ?? '?'} offered) — ${c.reason}`;
      const words = savedWords(c.method, c.bytes, c.fullBytes);
      const saved = words ? `, ${words}` : '';
      return `    ${versions}  ${c.method}: ${formatBytes(c.bytes)} of ${formatBytes(c.fullBytes)}${saved} — ${c.reason}`;
    });
  let head = `${run.trigger} update ${run.result === 'ok' ? 'done' : 'FAILED'}, ${formatBytes(run.bytes)} received`;
  if (run.result === 'failed' && run.error && !lines.length) head += `: ${run.error}`;
  else if (!lines.length) head += `; all ${run.components.length} components up to date`;
  return [head, ...lines].join('\n');
}
