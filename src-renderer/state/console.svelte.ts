// The console's state: the server's snapshot plus the live engine state and progress. It is the
// only thing that talks to the API; components read it and call its methods, nothing else.
//
// - start(): subscribe to the events, then load the snapshot.
// - 'state' and 'progress' are applied as they come (they are small and frequent).
// - 'run' and 'changed' mean the snapshot is stale: it is loaded again (coalesced, so a burst of
//   events costs one or two loads, never one per event).
// - 'agents' carries the new agent counts: they are applied at once, and when they changed the
//   snapshot is loaded again for the reminders that follow from them (agents gone silent...).
// - Whenever the browser console's event stream opens (the first time too), the snapshot is loaded
//   again: events sent while no stream was open are lost, the snapshot is not.
// - A component's pin, unpin or roll-back (changeComponent) keeps its last result for the table to
//   show; the server's 'changed' event (reason 'pins') and 'run' event bring the new snapshot.
import type {
  AgentCountsView,
  ConnectionTestResult,
  ConsoleApi,
  ConsoleMethods,
  EngineStateView,
  InstallMethod,
  ProgressView,
  SaveResult,
  SettingsChange,
  SettingsView,
  Snapshot,
} from '../../src-main/console/contract.js';
import type { ConnectionMonitor, ConnectionStatus } from '../api/connection.js';
import { errorMessage, sentence } from '../api/errors.js';
import { titleCase } from '../lib/format.js';
import { headline, type Headline } from '../../src-main/engine/words.js';
import { clock } from './clock.svelte.js';

export type LoadStatus = 'loading' | 'ready' | 'failed';

/** What the engine is doing right now, for the progress line and the Update now button. */
export interface Activity {
  stage: 'checking' | 'downloading' | 'applying' | 'distributing';
  componentName?: string;
  /** 1-based, for "3 of 7". */
  position?: number;
  total?: number;
  method?: InstallMethod;
  /** Bytes received so far in this run. */
  bytes?: number;
}

export type UpdateRequest = { kind: 'idle' } | { kind: 'sending' } | { kind: 'joined' } | { kind: 'failed'; message: string };

export type TestConnectionParams = ConsoleMethods['testConnection']['params'];

/** An operator's change to a component: pin, unpin, or roll back to a kept version (pinned there). */
export type ComponentChange = ConsoleMethods['changeComponent']['params'];

/**
 * The last component change: being sent (the server waits for an update in progress first), done
 * (the server's reason), refused by the server (its message), or not delivered at all.
 */
export type ComponentChangeStatus =
  | { kind: 'idle' }
  | { kind: 'sending'; change: ComponentChange }
  | { kind: 'done'; change: ComponentChange; reason: string }
  | { kind: 'refused'; change: ComponentChange; message: string }
  | { kind: 'failed'; change: ComponentChange; message: string };

export class ConsoleState {
  /** The last snapshot the server sent (null until the first one arrives). */
  snapshot = $state.raw<Snapshot | null>(null);
  /** The engine state, kept live between snapshots by 'state' events. */
  engine = $state.raw<EngineStateView>({ type: 'idle' });
  /** The last 'progress' event of the running update. */
  progress = $state.raw<ProgressView | null>(null);
  status = $state<LoadStatus>('loading');
  loadError = $state<string | null>(null);
  connection = $state.raw<ConnectionStatus>({ kind: 'connecting' });
  updateRequest = $state.raw<UpdateRequest>({ kind: 'idle' });
  componentChange = $state.raw<ComponentChangeStatus>({ kind: 'idle' });

  readonly busy = $derived(this.engine.type !== 'idle' && this.engine.type !== 'failed');
  /** Nothing installed and no run recorded yet. */
  readonly neverUpdated = $derived(!this.snapshot?.lastRun && !this.snapshot?.components.some((c) => c.installedVersion !== null));
  /** A fresh install: nothing installed or run yet; the overview shows how to begin (set a source, run the first update). */
  readonly firstRun = $derived(!!this.snapshot && this.neverUpdated);
  /** The whole installation in one line, the worst first (the same words the tray and `bulwark status` use). */
  readonly headline = $derived.by((): Headline | null => {
    const snapshot = this.snapshot;
    if (!snapshot) return null;
    return headline({
      engine: this.engine,
      neverUpdated: this.neverUpdated,
      sourceSet: !!snapshot.settings.source.url,
      agents: snapshot.agents && { ...snapshot.agents, halted: snapshot.agents.rollout.halted },
      nameOf: (id) => this.componentName(id),
      now: clock.now,
    });
  });
  readonly activity = $derived.by(() => activityOf(this.engine, this.progress, (id) => this.componentName(id)));
  readonly settings = $derived<SettingsView | null>(this.snapshot?.settings ?? null);

  readonly #api: ConsoleApi;
  readonly #connection: ConnectionMonitor;
  /** Counts 'state' events, so a snapshot that was requested before one does not roll it back. */
  #stateSeq = 0;
  #loading: Promise<void> | undefined;
  #loadAgain = false;
  #joinedTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(api: ConsoleApi, connection: ConnectionMonitor) {
    this.#api = api;
    this.#connection = connection;
    this.connection = connection.status;
  }

  /** Subscribe and load; resolves once the first load has finished (loaded or failed). Returns stop(). */
  start(): { stop: () => void; loaded: Promise<void> } {
    const stops = [
      this.#api.on('state', (state) => this.applyState(state)),
      this.#api.on('progress', (progress) => this.applyProgress(progress)),
      this.#api.on('run', () => void this.reload()),
      this.#api.on('changed', () => void this.reload()),
      this.#api.on('agents', (counts) => this.applyAgentCounts(counts)),
      this.#connection.onStatus((status) => {
        this.connection = status;
        // Also while the first snapshot loads: it may have been read before the stream opened, and
        // what changed in between came as events to no one (reload() then loads once more after it).
        if (status.kind === 'connected') void this.reload();
      }),
    ];
    // The status may have moved between construction and subscription.
    this.connection = this.#connection.status;
    const loaded = this.reload();
    return { stop: () => stops.forEach((stop) => stop()), loaded };
  }

  applyState(state: EngineStateView): void {
    this.#stateSeq += 1;
    this.engine = state;
    const progress = this.progress;
    if (state.type === 'idle' || state.type === 'failed' || state.type === 'checking') this.progress = null;
    else if (progress && 'component' in state && progress.component !== state.component) this.progress = null;
  }

  applyProgress(progress: ProgressView): void {
    this.progress = progress;
  }

  applyAgentCounts(counts: AgentCountsView): void {
    const snapshot = this.snapshot;
    if (!snapshot?.agents) {
      // Counts that arrive while the first snapshot loads may be newer than it: load once more after it.
      if (this.status === 'loading') void this.reload();
      return;
    }
    const before = snapshot.agents.counts;
    if ((Object.keys(counts) as (keyof AgentCountsView)[]).every((key) => before[key] === counts[key])) return;
    this.snapshot = { ...snapshot, agents: { ...snapshot.agents, counts } };
    void this.reload();
  }

  /** Load the snapshot; concurrent requests share the load in flight and one more after it. */
  reload(): Promise<void> {
    if (this.#loading) {
      this.#loadAgain = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#loadAgain = false;
        await this.#loadOnce();
      } while (this.#loadAgain);
      this.#loading = undefined;
    })();
    return this.#loading;
  }

  async #loadOnce(): Promise<void> {
    const seq = this.#stateSeq;
    try {
      const snapshot = await this.#api.call('snapshot', undefined);
      this.snapshot = snapshot;
      if (seq === this.#stateSeq) this.engine = snapshot.state;
      if (!this.busy) this.progress = null;
      this.loadError = null;
      this.status = 'ready';
    } catch (error) {
      this.loadError = errorMessage(error);
      // A console that has shown data keeps showing it (marked stale by the connection banner; a 401
      // has already turned the connection status to unauthorized).
      if (!this.snapshot) this.status = 'failed';
    }
  }

  componentName(id: string): string {
    return this.snapshot?.components.find((c) => c.id === id)?.name ?? titleCase(id);
  }

  async updateNow(): Promise<void> {
    clearTimeout(this.#joinedTimer);
    this.updateRequest = { kind: 'sending' };
    try {
      const { joined } = await this.#api.call('updateNow', undefined);
      this.updateRequest = joined ? { kind: 'joined' } : { kind: 'idle' };
      if (joined) this.#joinedTimer = setTimeout(() => (this.updateRequest = { kind: 'idle' }), 5_000);
    } catch (error) {
      this.updateRequest = { kind: 'failed', message: errorMessage(error) };
    }
  }

  /**
   * Pin, unpin or roll back a component. Resolves true when the server did it; the outcome stays in
   * componentChange either way. One change at a time: a second while one is sent is ignored.
   */
  async changeComponent(change: ComponentChange): Promise<boolean> {
    if (this.componentChange.kind === 'sending') return false;
    this.componentChange = { kind: 'sending', change };
    try {
      const result = await this.#api.call('changeComponent', change);
      if (!result.ok) {
        this.componentChange = { kind: 'refused', change, message: sentence(result.message) };
        return false;
      }
      this.componentChange = { kind: 'done', change, reason: result.reason };
      // The server's events bring the new snapshot too; this makes sure the table shows it at once.
      void this.reload();
      return true;
    } catch (error) {
      this.componentChange = { kind: 'failed', change, message: errorMessage(error) };
      return false;
    }
  }

  /** Save one section. On success the snapshot takes the server's settings at once. Throws on transport errors. */
  async saveSettings(change: SettingsChange): Promise<SaveResult> {
    const result = await this.#api.call('saveSettings', change);
    if (result.ok && this.snapshot) this.snapshot = { ...this.snapshot, settings: result.settings };
    return result;
  }

  /** Read a root.json the user picked and hand it to the server; returns where the server stored it. */
  async importTrustedRoot(file: File): Promise<{ ok: true; path: string } | { ok: false; message: string }> {
    if (file.size > 512 * 1024) return { ok: false, message: `${file.name} is too large for a root.json (512 kB at most)` };
    let contents: string;
    try {
      contents = await file.text();
    } catch (error) {
      return { ok: false, message: `Cannot read ${file.name}: ${errorMessage(error)}` };
    }
    try {
      const result = await this.#api.call('importTrustedRoot', { fileName: file.name, contents });
      return result.ok ? result : { ok: false, message: sentence(result.message) };
    } catch (error) {
      return { ok: false, message: errorMessage(error) };
    }
  }

  /** Throws when the test could not be run at all (transport errors). */
  testConnection(params: TestConnectionParams): Promise<ConnectionTestResult> {
    return this.#api.call('testConnection', params);
  }
}

function activityOf(state: EngineStateView, progress: ProgressView | null, nameOf: (id: string) => string): Activity | null {
  switch (state.type) {
    case 'idle':
    case 'failed':
      return null;
    case 'checking':
    case 'distributing':
      return { stage: state.type };
    case 'downloading':
    case 'applying': {
      const sameComponent = progress?.component === state.component;
      const bytes = Math.max(state.bytes, sameComponent ? (progress?.bytes ?? 0) : 0);
      return {
        stage: state.type,
        componentName: nameOf(state.component),
        position: state.index + 1,
        total: state.total,
        bytes,
        ...(state.type === 'downloading' ? { method: state.method } : {}),
      };
    }
  }
}
