// The console contract: every method and event the console (Svelte renderer) can use, with its
// types. The Electron preload (contextBridge + IPC) and the browser console (HTTP + server-sent
// events) both implement exactly this, so the renderer never knows which one it talks to.
//
// Types only: this file is imported by src-main and by src-renderer alike, and must not import
// anything that exists only in Node.

export type Trigger = 'install' | 'startup' | 'schedule' | 'manual' | 'notification';
export type InstallMethod = 'incremental' | 'full';

/** Mirrors the engine's state machine (src-main/engine/state.ts). */
export type EngineStateView =
  | { type: 'idle' }
  | { type: 'checking'; trigger: Trigger }
  | { type: 'downloading'; trigger: Trigger; component: string; index: number; total: number; method: InstallMethod; bytes: number }
  | { type: 'applying'; trigger: Trigger; component: string; index: number; total: number; bytes: number }
  | { type: 'distributing'; trigger: Trigger }
  | { type: 'failed'; error: string; code?: string; at: string };

export interface ComponentView {
  id: string;
  name: string;
  installedVersion: number | null;
  /** Latest version the source's catalogue offered at the last check. */
  latestVersion: number | null;
  installedAt: string | null;
  /** How the installed version arrived. */
  method: InstallMethod | null;
  sha256: string | null;
  /** Pinned at this version (updates leave it), and why; null when not pinned. */
  pinned: { version: number; reason: string; at: string } | null;
  /** Versions kept in the store that can be rolled back to (the vendor's signed metadata kept with them). */
  rollbackTo: number[];
}

export interface ComponentRunView {
  id: string;
  previousVersion: number | null;
  version: number | null;
  method: InstallMethod | 'none';
  reason: string;
  bytes: number;
  fullBytes: number;
  durationMs: number;
  result: 'ok' | 'failed';
  error?: string;
  errorCode?: string;
}

export interface RunView {
  trigger: Trigger;
  startedAt: string;
  finishedAt: string;
  result: 'ok' | 'failed';
  bytes: number;
  error?: string;
  errorCode?: string;
  components: ComponentRunView[];
}

/** A plain-language card: what is wrong and what to do about it. */
export interface Reminder {
  id: string;
  severity: 'info' | 'warning' | 'error';
  title: string;
  body: string;
  /** What to do, in one sentence. */
  action: string;
  /** The raw error behind it, for a "Details" disclosure. */
  detail?: string;
}

export type ScheduleView = { kind: 'interval'; every: number; unit: 'minutes' | 'hours' } | { kind: 'daily'; at: string };

export interface ProxyView {
  enabled: boolean;
  host: string;
  port: number;
  username: string;
  /** The password never leaves the server; the console only learns whether one is stored. */
  hasPassword: boolean;
}

export interface SettingsView {
  schedule: ScheduleView;
  source: { url: string; trustedRoot: string };
  proxy: ProxyView;
  notifications: { updateFailed: boolean; componentsInstalled: boolean; webhook?: string; syslog?: string };
  startAtLogin: boolean;
  /** Where the console runs: some settings (start at login) only apply to the desktop app. */
  host: 'desktop' | 'browser';
}

export type AgentStateView = 'current' | 'held' | 'outdated' | 'notified' | 'updating' | 'failed' | 'unreachable';

export interface AgentCountsView {
  total: number;
  current: number;
  /** Held back by the rollout on purpose (their ring is not released yet): not outdated. */
  held: number;
  /** Notified agents count here too: they have not started yet. */
  outdated: number;
  updating: number;
  failed: number;
  unreachable: number;
}

export type RingView = 'canary' | 'early' | 'broad';

/** Where a release is in its ring-by-ring rollout. */
export interface RolloutView {
  /** Off: every agent gets each release at once. */
  enabled: boolean;
  /** The release being rolled out (null before the first). */
  release: number | null;
  /** The ring that got it last: it and the rings before it are released. */
  stage: RingView | null;
  stageSince: string | null;
  soakSeconds: number;
  halted: {
    at: string;
    reason: string;
    failing: { name: string; error: string }[];
    /** Content that an engine would not load on canary agents: which, where, and the engine's words. */
    content?: { component?: string; version?: number; engine?: string; stage?: string; message: string; agents: string[] };
  } | null;
  rings: { ring: RingView; agents: number; current: number; failed: number; released: boolean }[];
}

/** The agent service at a glance (in every snapshot). */
export interface AgentsSummary {
  /** Agents are served (the setting); false when turned off. */
  enabled: boolean;
  /** Where agents connect, when serving. */
  urls: string[];
  /** Why agents cannot be served, when enabled but not serving. */
  error?: string;
  counts: AgentCountsView;
  /** The release agents are offered now. */
  release: number | null;
  rollout: RolloutView;
  /** Held back by the rollout (its ring not reached yet): counts.held, never in counts.outdated. */
  held: number;
  /** Since when outdated agents lack what the server serves (when the server installed it); null when none is. */
  outdatedSince: string | null;
}

/** How new agents enroll into a ring (`bulwark agents token --ring RING`). */
export interface EnrollmentView {
  ring: RingView;
  token: string;
  /** The join string: the token and the SHA-256 of the vendor's root.json the server trusts (null while no update source is set). */
  join: string | null;
  rootSha256: string | null;
}

export interface AgentView {
  id: string;
  name: string;
  hostname: string;
  /** The address its last request came from. */
  address: string;
  /** Address families of its own interfaces. */
  families: (4 | 6)[];
  versions: { id: string; version: number; method?: string }[];
  state: AgentStateView;
  lastSeen: string;
  lastRun: { result: 'ok' | 'failed'; at: string; trigger?: string; method?: string; bytes: number; error?: string } | null;
  ring: RingView;
  /** Not current because the rollout has not reached its ring yet (on purpose, not a problem). */
  held: boolean;
  /** The engines its components are handed to, and whether each has the component's active version. */
  consumers: { id: string; engine: string; version: number | null; active: boolean; error?: string }[];
  /** How it came to trust the vendor's root, as it reports ('first-server': unchecked, insecure); null when it does not say. */
  trust: 'join-string' | 'trusted-root' | 'first-server' | null;
  /** What it reports the server keeps it at below the vendor's latest: a few words ("virus-pattern pinned by the server at 175"), and in full ("… since …; the vendor's latest is 177"). */
  orders: { short: string; text: string }[];
}

/** One run of an agent, as it reported it. */
export interface AgentRunView {
  result: 'ok' | 'failed';
  at: string;
  trigger?: string;
  method?: string;
  bytes: number;
  error?: string;
}

/** One agent in full, for its details panel. */
export interface AgentDetailsView extends AgentView {
  enrolledAt: string;
  pollSeconds: number;
  /** Its own interfaces' addresses, as it reported them. */
  addresses: { address: string; family: 4 | 6 }[];
  /** Its last runs, newest first. */
  runs: AgentRunView[];
}

/** An operator's action, from the audit log: who (a console session or the command line), when, what. */
export interface AuditEntryView {
  at: string;
  via: 'console' | 'desktop' | 'cli';
  who: string;
  action: string;
  target: string;
  detail?: string;
  reason?: string;
}

/** The fleet at one moment, for the chart over time. */
export interface FleetSampleView {
  at: string;
  current: number;
  held: number;
  outdated: number;
  /** Failed or unreachable. */
  failed: number;
}

export type AgentSort = 'name' | 'state' | 'address' | 'lastSeen';

export interface AgentsQuery {
  /** Case-insensitive text matched against name, host name, address and error. */
  filter?: string;
  /** Agents in this state ('outdated' includes the notified ones, as the counts do). */
  state?: AgentStateView;
  ring?: RingView;
  sort?: AgentSort;
  descending?: boolean;
  /** At most this many rows (default 500). */
  limit?: number;
}

export interface AgentsPage {
  summary: AgentsSummary;
  /** Agents matching the query (before the limit). */
  matching: number;
  agents: AgentView[];
}

export interface Snapshot {
  state: EngineStateView;
  components: ComponentView[];
  lastRun: RunView | null;
  nextRun: string | null;
  history: RunView[];
  reminders: Reminder[];
  settings: SettingsView;
  /** The agents at a glance; null where this console has no agent service (never for a server). */
  agents: AgentsSummary | null;
  /** Offered schedule intervals, for the settings form. */
  scheduleChoices: { minutes: number[]; hours: number[] };
  /** The newest operator actions, newest first. */
  audit: AuditEntryView[];
  /** The fleet's counts over time, oldest first (empty without agents). */
  fleet: FleetSampleView[];
}

/** A change to one settings section. Omitted password keeps the stored one; "" clears it. */
export type SettingsChange =
  | { section: 'schedule'; value: ScheduleView }
  | { section: 'source'; value: { url: string; trustedRoot: string } }
  | { section: 'proxy'; value: { enabled: boolean; host: string; port: number; username: string; password?: string } }
  | { section: 'notifications'; value: { updateFailed: boolean; componentsInstalled: boolean; webhook?: string; syslog?: string } }
  | { section: 'startAtLogin'; value: boolean };

export type SaveResult = { ok: true; settings: SettingsView } | { ok: false; field: string; message: string };

export interface ConnectionTestResult {
  ok: boolean;
  /** Which step failed, for the console to point at the right field. */
  stage: 'proxy' | 'auth' | 'dns' | 'connect' | 'tls' | 'http' | 'timeout' | 'ok';
  message: string;
  /** What to do about it. */
  action?: string;
}

/** Request/response pairs, by method name. */
export interface ConsoleMethods {
  snapshot: { params: void; result: Snapshot };
  updateNow: { params: void; result: { joined: boolean } };
  saveSettings: { params: SettingsChange; result: SaveResult };
  /** Import a trusted root.json given as text; returns where it was stored (use as source.trustedRoot). */
  importTrustedRoot: { params: { fileName: string; contents: string }; result: { ok: true; path: string } | { ok: false; message: string } };
  testConnection: { params: { url?: string; proxy?: { enabled: boolean; host: string; port: number; username: string; password?: string } }; result: ConnectionTestResult };
  agents: { params: AgentsQuery; result: AgentsPage };
  /** Ask every connected agent to update now. */
  updateAgentsNow: { params: void; result: { asked: number } };
  /** What new agents of `ring` (broad when absent) enroll with; `rotate` replaces that ring's token first. */
  enrollmentToken: { params: { rotate: boolean; ring?: RingView }; result: EnrollmentView };
  /** Promote the rollout to the next ring now, halt it, or resume it after a halt. */
  rollout: { params: { action: 'promote' | 'halt' | 'resume' }; result: RolloutView };
  /** Move an agent to a ring; answers with the ring it was in (for an undo). */
  setAgentRing: { params: { id: string; ring: RingView }; result: { ok: true; from: RingView } };
  /** Pin a component at its version, unpin it, or roll it back to a kept version (pinning it there); `reason` goes to the history and the audit log. */
  changeComponent: {
    params: { action: 'pin' | 'unpin'; id: string; reason?: string } | { action: 'rollback'; id: string; version: number; reason?: string };
    result: { ok: true; reason: string } | { ok: false; message: string };
  };
  /** One agent in full (null when it is not, or no longer, enrolled). */
  agentDetails: { params: { id: string }; result: AgentDetailsView | null };
  /** Ask one agent to update now; `asked` is false when it is not connected (it catches up at its next poll). */
  updateAgentNow: { params: { id: string }; result: { asked: boolean } };
  /** Forget an agent (a machine taken out of service): its credential is refused from then on. */
  forgetAgent: { params: { id: string }; result: { ok: true } };
}

export type ConsoleMethod = keyof ConsoleMethods;
export const CONSOLE_METHODS: readonly ConsoleMethod[] = [
  'snapshot',
  'updateNow',
  'saveSettings',
  'importTrustedRoot',
  'testConnection',
  'agents',
  'updateAgentsNow',
  'enrollmentToken',
  'rollout',
  'setAgentRing',
  'changeComponent',
  'agentDetails',
  'updateAgentNow',
  'forgetAgent',
];

export interface ProgressView {
  stage: 'checking' | 'downloading' | 'applying' | 'component-done';
  component?: string;
  index?: number;
  total?: number;
  method?: InstallMethod;
  bytes?: number;
}

/** Pushed to every console, by event name. */
export interface ConsoleEvents {
  state: EngineStateView;
  progress: ProgressView;
  run: RunView;
  /** Something besides the engine state changed (settings, reminders): fetch a new snapshot. */
  changed: { reason: string };
  /** The agents changed (a report, an enrollment, a stream opened or closed): the new counts. */
  agents: AgentCountsView;
}

export type ConsoleEvent = keyof ConsoleEvents;
export const CONSOLE_EVENTS: readonly ConsoleEvent[] = ['state', 'progress', 'run', 'changed', 'agents'];

/** What the renderer holds: one implementation over IPC, one over HTTP. */
export interface ConsoleApi {
  call<M extends ConsoleMethod>(method: M, params: ConsoleMethods[M]['params']): Promise<ConsoleMethods[M]['result']>;
  on<E extends ConsoleEvent>(event: E, listener: (payload: ConsoleEvents[E]) => void): () => void;
}

/** IPC channel names: one per method and one per event, derived so they cannot drift. */
export const ipcChannel = {
  method: (method: ConsoleMethod) => `bulwark:call:${method}`,
  event: (event: ConsoleEvent) => `bulwark:event:${event}`,
};

/** Errors a transport reports for a refused call (HTTP 400/401/404, IPC rejection). */
export interface ApiErrorBody {
  error: string;
  code: 'bad-request' | 'unauthorized' | 'not-found' | 'internal';
}
