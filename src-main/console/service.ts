// The console's server side, shared by both transports (Electron IPC and the HTTP console): it
// validates every call's parameters, answers from the engine and the settings, and forwards the
// engine's events. Transports only move bytes and check who is calling.
import fs from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { componentInfo } from '../engine/components.js';
import type { Engine } from '../engine/engine.js';
import { BulwarkError, describeError, FileError, SettingsError } from '../engine/errors.js';
import { readPins } from '../engine/pins.js';
import { sha256, writeFileAtomic } from '../engine/files.js';
import type { RunProgress } from '../engine/update-run.js';
import type { EngineState } from '../engine/state.js';
import type { RunRecord } from '../engine/history.js';
import type { Reminder as EngineReminder } from '../engine/reminders.js';
import { HOUR_INTERVALS, MINUTE_INTERVALS } from '../engine/schedule.js';
import { SETTINGS_SCHEMA, type Settings, type SettingsData } from '../engine/settings.js';
import { testConnection } from '../engine/connection-test.js';
import { cooldownFor } from '../engine/fetcher.js';
import type { AgentServer } from '../distribution/agent-server.js';
import type { AgentsOverview } from '../distribution/overview.js';
import type { JoinInfo } from '../distribution/enrollment.js';
import type { AgentListed, AgentRegistry } from '../distribution/registry.js';
import { shortId } from '../distribution/agent-status.js';
import { headline, runFailureWords, type Headline } from '../engine/words.js';
import { AuditLog, type Actor } from '../engine/audit.js';
import { DEFAULT_ROLLOUT, type Rollout } from '../distribution/rollout.js';
import { describeOrder, isRing, orderLabel, type AgentLastRun, type Ring } from '../protocol/agent-protocol.js';
import type { ComponentChange } from '../engine/engine.js';
import type { Distribution } from '../distribution/release.js';
import { visible } from '../distribution/untrusted.js';
import {
  CONSOLE_METHODS,
  type AgentDetailsView,
  type AgentRunView,
  type FleetSampleView,
  type AgentsPage,
  type AgentsQuery,
  type AgentsSummary,
  type AgentStateView,
  type AgentView,
  type RolloutView,
  type ConsoleEvent,
  type ConsoleEvents,
  type ConsoleMethod,
  type ConsoleMethods,
  type EngineStateView,
  type ProgressView,
  type Reminder,
  type RunView,
  type SettingsChange,
  type SettingsView,
  type Snapshot,
} from './contract.js';

// The contract restates the engine's types for the renderer, which cannot import Node code. These
// aliases stop compiling if the engine's types drift from what the contract promises.
type Assignable<Contract, Engine extends Contract> = [Contract, Engine];
export type ContractMatchesEngine = [
  Assignable<EngineStateView, EngineState>,
  Assignable<RunView, RunRecord>,
  Assignable<Reminder, EngineReminder>,
  Assignable<ProgressView, ReturnType<typeof progressView>>,
];

/** A refused call: the transport answers 400 (or 404 for an unknown method). */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const MAX_ROOT_BYTES = 512 * 1024;

const proxyShape = {
  type: 'object',
  additionalProperties: false,
  required: ['enabled', 'host', 'port', 'username'],
  properties: {
    enabled: { type: 'boolean' },
    host: { type: 'string', maxLength: 253 },
    port: { type: 'integer' },
    username: { type: 'string', maxLength: 256 },
    password: { type: 'string', maxLength: 1024 },
  },
} as const;

/** Shapes of each method's parameters; values are then checked by the settings' own rules. */
const PARAM_SCHEMAS: Record<ConsoleMethod, object> = {
  snapshot: { type: 'null' },
  updateNow: { type: 'null' },
  saveSettings: {
    type: 'object',
    required: ['section', 'value'],
    additionalProperties: false,
    properties: {
      section: { enum: ['schedule', 'source', 'proxy', 'notifications', 'startAtLogin'] },
      value: {},
    },
    // Each section's value has its own shape; its values are then checked by the settings' own rules.
    allOf: [
      {
        // The shape only: which intervals are offered is the settings' rule, refused at the field.
        if: { properties: { section: { const: 'schedule' } } },
        then: {
          properties: {
            value: {
              oneOf: [
                { type: 'object', additionalProperties: false, required: ['kind', 'every', 'unit'], properties: { kind: { const: 'interval' }, every: { type: 'integer' }, unit: { enum: ['minutes', 'hours'] } } },
                { type: 'object', additionalProperties: false, required: ['kind', 'at'], properties: { kind: { const: 'daily' }, at: { type: 'string', maxLength: 5 } } },
              ],
            },
          },
        },
      },
      {
        if: { properties: { section: { const: 'source' } } },
        then: { properties: { value: { type: 'object', additionalProperties: false, required: ['url', 'trustedRoot'], properties: { url: { type: 'string', maxLength: 2048 }, trustedRoot: { type: 'string', maxLength: 4096 } } } } },
      },
      { if: { properties: { section: { const: 'proxy' } } }, then: { properties: { value: proxyShape } } },
      { if: { properties: { section: { const: 'notifications' } } }, then: { properties: { value: SETTINGS_SCHEMA.notifications } } },
      { if: { properties: { section: { const: 'startAtLogin' } } }, then: { properties: { value: { type: 'boolean' } } } },
    ],
  },
  importTrustedRoot: {
    type: 'object',
    required: ['fileName', 'contents'],
    additionalProperties: false,
    properties: { fileName: { type: 'string', maxLength: 255 }, contents: { type: 'string', maxLength: MAX_ROOT_BYTES } },
  },
  testConnection: {
    type: 'object',
    additionalProperties: false,
    properties: { url: { type: 'string', maxLength: 2048 }, proxy: proxyShape },
  },
  agents: {
    type: 'object',
    additionalProperties: false,
    properties: {
      filter: { type: 'string', maxLength: 200 },
      state: { enum: ['current', 'outdated', 'notified', 'updating', 'failed', 'unreachable'] },
      ring: { enum: ['canary', 'early', 'broad'] },
      sort: { enum: ['name', 'state', 'address', 'lastSeen'] },
      descending: { type: 'boolean' },
      limit: { type: 'integer', minimum: 1, maximum: 5000 },
    },
  },
  updateAgentsNow: { type: 'null' },
  enrollmentToken: { type: 'object', required: ['rotate'], additionalProperties: false, properties: { rotate: { type: 'boolean' }, ring: { enum: ['canary', 'early', 'broad'] } } },
  rollout: { type: 'object', required: ['action'], additionalProperties: false, properties: { action: { enum: ['promote', 'halt', 'resume'] } } },
  setAgentRing: {
    type: 'object',
    required: ['id', 'ring'],
    additionalProperties: false,
    properties: { id: { type: 'string', maxLength: 64 }, ring: { enum: ['canary', 'early', 'broad'] } },
  },
  changeComponent: {
    oneOf: [
      {
        type: 'object',
        required: ['action', 'id'],
        additionalProperties: false,
        properties: { action: { enum: ['pin', 'unpin'] }, id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' }, reason: { type: 'string', maxLength: 200 } },
      },
      {
        type: 'object',
        required: ['action', 'id', 'version'],
        additionalProperties: false,
        properties: {
          action: { const: 'rollback' },
          id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' },
          version: { type: 'integer', minimum: 1, maximum: 2147483647 },
          reason: { type: 'string', maxLength: 200 },
        },
      },
    ],
  },
  agentDetails: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
  updateAgentNow: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
  forgetAgent: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
};

/** Each method's parameter check, compiled on first call (not at import: every CLI command imports this). */
const validators = (() => {
  let ajv: Ajv | undefined;
  const compiled = new Map<ConsoleMethod, ReturnType<Ajv['compile']>>();
  return (method: ConsoleMethod) => {
    let validate = compiled.get(method);
    if (!validate) compiled.set(method, (validate = (ajv ??= new Ajv({ allErrors: false })).compile(PARAM_SCHEMAS[method])));
    return validate;
  };
})();

export interface ConsoleServiceOptions {
  engine: Engine;
  settings: Settings;
  dataDir: string;
  host: 'desktop' | 'browser';
  /** The desktop shell applies "start at login" to the system when it is saved. */
  applyStartAtLogin?: (enabled: boolean) => void;
  /** The server's agents: registry, releases, and the agent service (absent when it could not start). */
  agents?: AgentsAccess;
}

export interface AgentsAccess {
  registry: AgentRegistry;
  distribution: Distribution;
  overview: AgentsOverview;
  rollout: Rollout;
  /** Ask every agent (over their streams, and the broker if there is one), or only agent `id`, to update now; resolves with how many were reached directly. */
  askToUpdate(id?: string): Promise<number>;
  /** The join string of a ring (`rotate`: with a new token). */
  joinString(ring: Ring, rotate?: boolean): Promise<JoinInfo>;
  server?: AgentServer;
  /** Why agents cannot be served, when they cannot. */
  error?: string;
}

type Listener = <E extends ConsoleEvent>(event: E, payload: ConsoleEvents[E]) => void;

export class ConsoleService {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly options: ConsoleServiceOptions) {
    const { engine, settings } = options;
    this.audit = new AuditLog(options.dataDir);
    engine.on('state', (state) => this.emit('state', state));
    engine.on('progress', (progress) => this.emit('progress', progressView(progress)));
    engine.on('run', (run) => this.emit('run', run));
    engine.on('network', () => this.emit('changed', { reason: 'network' }));
    engine.on('pins', () => this.emit('changed', { reason: 'pins' }));
    engine.on('reminders', () => this.emit('changed', { reason: 'reminders' }));
    options.agents?.rollout.on('change', () => this.emit('changed', { reason: 'rollout' }));
    this.fleet = loadFleetSamples(options.dataDir);
    let agentReminders = '';
    options.agents?.overview.on('change', () => {
      this.sampleFleet();
      this.emit('agents', options.agents!.overview.counts);
      // Reminders about agents can change while the counts stay (one agent recovers as another goes silent).
      const now = JSON.stringify(this.agentReminders());
      if (now !== agentReminders) {
        agentReminders = now;
        this.emit('changed', { reason: 'agents.reminders' });
      }
    });
    settings.onChange((key) => this.emit('changed', { reason: `settings.${key}` }));
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit<E extends ConsoleEvent>(event: E, payload: ConsoleEvents[E]): void {
    for (const listener of this.listeners) listener(event, payload);
  }

  /** The operator actions, newest first (the audit log). */
  readonly audit: AuditLog;

  /** Validate and run one call, as `actor` (for the audit log). Throws ApiError for calls the contract does not allow. */
  async call(method: string, params: unknown, actor: Actor = { via: this.options.host === 'desktop' ? 'desktop' : 'console', who: this.options.host === 'desktop' ? 'desktop app' : 'browser' }): Promise<unknown> {
    if (!(CONSOLE_METHODS as readonly string[]).includes(method)) throw new ApiError(404, `unknown method "${method}"`);
    const m = method as ConsoleMethod;
    const value = params === undefined ? null : params;
    const validate = validators(m);
    if (!validate(value)) {
      const problem = validate.errors?.[0];
      throw new ApiError(400, `invalid parameters for ${m}: ${problem?.instancePath || 'params'} ${problem?.message ?? ''}`.trim());
    }
    switch (m) {
      case 'snapshot':
        return this.snapshot();
      case 'updateNow':
        return this.updateNow();
      case 'saveSettings':
        return this.saveSettings(value as SettingsChange);
      case 'importTrustedRoot':
        return this.importTrustedRoot(value as ConsoleMethods['importTrustedRoot']['params']);
      case 'testConnection':
        return this.testConnection(value as ConsoleMethods['testConnection']['params']);
      case 'agents':
        return this.agentsPage(value as AgentsQuery);
      case 'updateAgentsNow': {
        const asked = (await this.options.agents?.askToUpdate()) ?? 0;
        this.record(actor, { action: 'update-agents', target: 'all agents', detail: `${asked} connected asked` });
        return { asked };
      }
      case 'enrollmentToken': {
        const { rotate, ring = 'broad' } = value as ConsoleMethods['enrollmentToken']['params'];
        const info = await this.agentsAccess().joinString(ring, rotate);
        if (rotate) this.record(actor, { action: 'rotate-token', target: `enrollment token of the ${ring} ring` });
        return { ring: info.ring, token: info.token, join: info.join ?? null, rootSha256: info.rootSha256 ?? null };
      }
      case 'rollout':
        return this.changeRollout((value as { action: 'promote' | 'halt' | 'resume' }).action, actor);
      case 'setAgentRing': {
        const { id, ring } = value as { id: string; ring: Ring };
        const agent = await this.agentsAccess().registry.details({ release: undefined, now: Date.now() }, id);
        if (!agent) throw new ApiError(400, 'this agent is no longer enrolled');
        await this.moveAgent(id, ring, actor);
        return { ok: true, from: isRing(agent.ring) ? agent.ring : 'broad' };
      }
      case 'changeComponent':
        return this.changeComponent(value as ComponentChange, actor);
      case 'agentDetails':
        return this.agentDetails((value as { id: string }).id);
      case 'updateAgentNow': {
        const { id } = value as { id: string };
        const agent = await this.agentsAccess().registry.details({ release: undefined, now: Date.now() }, id);
        if (!agent) throw new ApiError(400, 'this agent is no longer enrolled');
        const asked = (await this.agentsAccess().askToUpdate(id)) > 0;
        this.record(actor, { action: 'update-agent', target: agent.name, detail: `${shortId(id)}${asked ? '' : ', not connected'}` });
        return { asked };
      }
      case 'forgetAgent': {
        const { id } = value as { id: string };
        if (!(await this.agentsAccess().registry.details({ release: undefined, now: Date.now() }, id))) throw new ApiError(400, 'this agent is no longer enrolled');
        await this.removeAgent(id, actor);
        return { ok: true };
      }
    }
  }

  /** The fleet's counts over time (DATA/fleet-history.jsonl), oldest first. */
  private fleet: FleetSampleView[];

  /** Take a sample when the counts moved (at most one a minute) or half an hour has passed. */
  private sampleFleet(): void {
    const summary = this.agentsSummary();
    if (!summary || summary.counts.total === 0) return;
    const { counts } = summary;
    const sample: FleetSampleView = {
      at: new Date().toISOString(),
      current: counts.current,
      held: counts.held,
      outdated: counts.outdated + counts.updating,
      failed: counts.failed + counts.unreachable,
    };
    const last = this.fleet[this.fleet.length - 1];
    const age = last ? Date.parse(sample.at) - Date.parse(last.at) : Infinity;
    const moved = !last || ['current', 'held', 'outdated', 'failed'].some((k) => last[k as keyof FleetSampleView] !== sample[k as keyof FleetSampleView]);
    if (!(moved ? age >= 60_000 : age >= 30 * 60_000)) return;
    this.fleet = [...this.fleet, sample].slice(-FLEET_KEPT);
    try {
      const file = path.join(this.options.dataDir, 'fleet-history.jsonl');
      fs.appendFileSync(file, JSON.stringify(sample) + '\n', { mode: 0o600 });
      if (fs.statSync(file).size > 512 * 1024) writeFileAtomic(file, this.fleet.map((s) => JSON.stringify(s)).join('\n') + '\n', 0o600);
    } catch {
      // A chart's history is not worth failing anything for.
    }
  }

  /** Write an operator action to the audit log and tell the consoles. */
  private record(actor: Actor, entry: Parameters<AuditLog['record']>[1]): void {
    this.audit.record(actor, entry);
    this.emit('changed', { reason: 'audit' });
  }

  /** Promote, halt or resume the rollout (the console's buttons, and `bulwark rollout` through the control channel). */
  changeRollout(action: 'promote' | 'halt' | 'resume', actor: Actor): RolloutView {
    const { rollout, overview } = this.agentsAccess();
    const current = rollout.current();
    if (!current) throw new ApiError(400, 'no release is being rolled out yet');
    const from = current.stage;
    if (action === 'promote') rollout.promote((ring) => overview.ring(ring).agents);
    else if (action === 'halt') rollout.halt('halted by the operator');
    else rollout.resume((ring) => overview.ring(ring).agents);
    const view = this.rolloutView();
    this.record(actor, { action, target: `release ${current.release}`, ...(action === 'promote' ? { detail: `${from} → ${view.stage}` } : action === 'halt' ? { detail: `at ${from}` } : {}) });
    this.emit('changed', { reason: 'rollout' });
    return view;
  }

  /** Move one agent (by id, or a name no other agent has) to a ring. */
  async moveAgent(idOrName: string, ring: Ring, actor: Actor) {
    const { registry, overview } = this.agentsAccess();
    const before = await registry.one(idOrName);
    await registry.setRing(before.id, ring);
    await overview.recount();
    this.record(actor, { action: 'ring', target: before.name, detail: `${shortId(before.id)}: ${before.ring} → ${ring}` });
    return { ...before, ring };
  }

  /** Forget one agent (by id, or a name no other agent has). */
  async removeAgent(idOrName: string, actor: Actor) {
    const { registry, overview } = this.agentsAccess();
    const removed = await registry.remove(idOrName);
    await overview.recount();
    this.record(actor, { action: 'remove-agent', target: removed.name, detail: shortId(removed.id) });
    return removed;
  }

  /** An operator's pin, unpin or roll-back from the command line (the control channel), audited. */
  async changeComponentAs(request: ComponentChange, actor: Actor) {
    const before = this.options.engine.store.active(request.id)?.version;
    const record = await this.options.engine.change(request);
    this.recordChange(request, before, record, actor);
    return record;
  }

  private recordChange(request: ComponentChange, before: number | undefined, record: { result: string; components: { version: number | null }[] }, actor: Actor): void {
    if (record.result !== 'ok') return;
    const after = record.components[0]?.version;
    const detail = request.action === 'rollback' ? `${before ?? 'none'} → ${after}` : request.action === 'pin' ? `at ${after}` : undefined;
    this.record(actor, { action: request.action, target: request.id, ...(detail ? { detail } : {}), ...(request.reason ? { reason: request.reason } : {}) });
  }

  private async changeComponent(request: ComponentChange, actor: Actor): Promise<ConsoleMethods['changeComponent']['result']> {
    try {
      const reason = request.reason?.trim();
      const change = { ...request, ...(reason ? { reason } : {}) } as ComponentChange;
      if (!reason) delete change.reason;
      const record = await this.changeComponentAs(change, actor);
      if (record.result !== 'ok') return { ok: false, message: record.error ?? 'failed' };
      const said = record.components[0]?.reason ?? 'done';
      return { ok: true, reason: record.warning ? `${said} (but ${record.warning})` : said };
    } catch (error) {
      if (error instanceof BulwarkError) return { ok: false, message: describeError(error) };
      throw error;
    }
  }

  private async agentDetails(id: string): Promise<AgentDetailsView | null> {
    const { registry, distribution, rollout } = this.agentsAccess();
    const row = await registry.details({ release: distribution.current(), now: Date.now(), held: rollout.heldRings() }, id);
    if (!row) return null;
    return {
      ...agentView(row),
      enrolledAt: row.enrolledAt,
      pollSeconds: row.pollSeconds,
      addresses: row.addresses.map((a) => ({ address: visible(a.address, 64), family: a.family })),
      runs: row.runs.map(agentRunView),
    };
  }

  rolloutView(): RolloutView {
    const { rollout, overview } = this.agentsAccess();
    const state = rollout.current();
    const settings = { ...DEFAULT_ROLLOUT, ...this.options.settings.data.distribution.rollout };
    return {
      enabled: settings.enabled,
      release: state?.release ?? null,
      stage: state?.stage ?? null,
      stageSince: state?.stageSince ?? null,
      soakSeconds: settings.soakSeconds,
      // The failing agents' names and errors are their own words: made visible text.
      halted: state?.halted ? { ...state.halted, failing: state.halted.failing.map((f) => ({ name: visible(f.name, 100), error: visible(f.error, 2000) })) } : null,
      rings: rollout.progress((ring) => overview.ring(ring)),
    };
  }

  private agentsAccess(): AgentsAccess {
    if (!this.options.agents) throw new ApiError(404, 'this console has no agent service');
    return this.options.agents;
  }

  agentsSummary(): AgentsSummary | null {
    const agents = this.options.agents;
    if (!agents) return null;
    const rollout = this.rolloutView();
    // Behind only because the rollout holds their ring: not a problem, and not counted as one (agent-status.ts).
    const { held } = agents.overview.counts;
    const since = agents.overview.picture.lagging
      .map((id) => this.options.engine.store.active(id)?.installedAt)
      .filter((at): at is string => !!at)
      .sort()[0];
    return {
      enabled: this.options.settings.data.distribution.enabled,
      urls: agents.server?.urls ?? [],
      ...(agents.error ? { error: agents.error } : {}),
      counts: agents.overview.counts,
      release: agents.distribution.current()?.index.release ?? null,
      rollout,
      held,
      outdatedSince: since ?? null,
    };
  }

  /** The installation in one line (words.ts), for the tray and `bulwark status`. */
  headline(): Headline {
    const { engine } = this.options;
    const status = engine.status();
    const agents = this.agentsSummary();
    return headline({
      engine: status.state,
      neverUpdated: !status.lastRun && status.components.length === 0,
      sourceSet: !!this.options.settings.data.source.url,
      agents: agents && { ...agents, halted: agents.rollout.halted },
      nameOf: (id) => componentInfo(id).name,
      now: Date.now(),
    });
  }

  private async agentsPage(query: AgentsQuery): Promise<AgentsPage> {
    const { registry, distribution, rollout } = this.agentsAccess();
    const text = query.filter?.trim() ?? '';
    const page = await registry.page(
      { release: distribution.current(), now: Date.now(), held: rollout.heldRings() },
      {
        // "Outdated" as the counts mean it: notified agents have not started yet either.
        ...(query.state ? { states: query.state === 'outdated' ? ['outdated', 'notified'] : [query.state] } : {}),
        ...(query.ring ? { ring: query.ring } : {}),
        ...(text ? { text } : {}),
        sort: query.sort ?? 'state',
        descending: query.descending ?? false,
        limit: query.limit ?? 500,
      },
    );
    return { summary: this.agentsSummary()!, matching: page.matching, agents: page.agents.map(agentView) };
  }

  snapshot(): Snapshot {
    const { engine } = this.options;
    const status = engine.status();
    const history = engine.history.recent(20);
    const offered = new Map<string, number>();
    for (const run of [...history].reverse()) for (const c of run.components) if (c.offeredVersion) offered.set(c.id, c.offeredVersion);
    const installed = new Map(status.components.map((c) => [c.id, c]));
    const ids = [...new Set([...installed.keys(), ...offered.keys()])].sort();
    const pins = readPins(this.options.dataDir);
    return {
      state: status.state,
      components: ids.map((id) => {
        const c = installed.get(id);
        return {
          id,
          name: componentInfo(id).name,
          installedVersion: c?.version ?? null,
          latestVersion: offered.get(id) ?? null,
          installedAt: c?.installedAt ?? null,
          method: c?.method ?? null,
          sha256: c?.sha256 ?? null,
          pinned: pins[id] ?? null,
          rollbackTo: engine.store.versions(id).filter((v) => v !== c?.version && engine.evidence.has(id, v)).reverse(),
        };
      }),
      lastRun: status.lastRun ?? null,
      nextRun: status.nextRun,
      history,
      reminders: [...status.reminders, ...this.agentReminders()],
      settings: this.settingsView(),
      agents: this.agentsSummary(),
      scheduleChoices: { minutes: [...MINUTE_INTERVALS], hours: [...HOUR_INTERVALS] },
      audit: this.audit.recent(30),
      fleet: this.fleet,
    };
  }

  /** Reminders about the agents: a halted rollout, agents gone silent or on the other address family (the server's own, such as its port taken, are the engine's). */
  agentReminders(): Reminder[] {
    const agents = this.options.agents;
    if (!agents) return [];
    const reminders: Reminder[] = [];
    const halted = agents.rollout.current()?.halted;
    if (halted?.content) {
      // An engine would not load the content: which component and version, on which agents, in the engine's words.
      const { content } = halted;
      const what = content.component ? `${content.component}${content.version !== undefined ? ` ${content.version}` : ''}` : 'its content';
      reminders.push({
        id: 'rollout-halted',
        severity: 'error',
        title: `The rollout of release ${agents.rollout.current()!.release} is halted: ${what} failed to load in ${visible(content.engine ?? 'an engine', 64)}`,
        body: `${sentenceCase(halted.reason)}.`,
        action: `The agents that have not received it keep their versions. Publish a fixed version of ${content.component ?? 'the component'} (the next release starts a new rollout) or roll it back; the failing agents are in the Agents view. Resume only once the engine takes it.`,
        ...(halted.failing.length ? { detail: halted.failing.slice(0, 5).map((f) => `${visible(f.name, 100)}: ${visible(f.error, 2000)}`).join('\n') } : {}),
      });
    } else if (halted) {
      // The agents by name with their errors in words (which components failed, and why); the raw
      // errors behind Details, as in the Agents view. All the agents' words: made visible text.
      const shown = halted.failing.slice(0, 5);
      const failing = shown.map((f) => `${visible(f.name, 100)}: ${visible(runFailureWords(f.error), 300)}`).join('; ');
      reminders.push({
        id: 'rollout-halted',
        severity: 'error',
        title: `The rollout of release ${agents.rollout.current()!.release} is halted`,
        body: `${sentenceCase(halted.reason)}.${failing ? ` ${failing}.` : ''}`,
        action: 'Look at the failing agents in the Agents view; then Resume the rollout, or roll the component back.',
        ...(shown.length ? { detail: shown.map((f) => `${visible(f.name, 100)}: ${visible(f.error, 2000)}`).join('\n') } : {}),
      });
    }
    const network = this.options.engine.status().network;
    return [...reminders, ...agents.overview.reminders({ stack: network?.stack.kind, url: agents.server?.urls[0] })];
  }

  private updateNow(): { joined: boolean } {
    const joined = this.options.engine.busy;
    void this.options.engine.update('manual');
    return { joined };
  }

  settingsView(): SettingsView {
    const data = this.options.settings.data;
    const { password, ...proxy } = data.proxy;
    return {
      schedule: data.schedule,
      source: data.source,
      proxy: { ...proxy, hasPassword: password !== '' },
      notifications: data.notifications,
      startAtLogin: data.startAtLogin,
      host: this.options.host,
    };
  }

  private saveSettings(change: SettingsChange): ConsoleMethods['saveSettings']['result'] {
    const { settings } = this.options;
    try {
      switch (change.section) {
        case 'proxy': {
          const { password, ...rest } = change.value;
          settings.set('proxy', { ...rest, password: password ?? settings.data.proxy.password } as SettingsData['proxy']);
          break;
        }
        case 'startAtLogin':
          if (this.options.host !== 'desktop') throw new SettingsError('start at login applies to the desktop app only');
          if (typeof change.value !== 'boolean') throw new SettingsError('start at login must be true or false');
          settings.set('startAtLogin', change.value);
          this.options.applyStartAtLogin?.(change.value);
          break;
        default:
          settings.set(change.section, change.value as never);
      }
    } catch (error) {
      // A settings.json that cannot be written is the user's to fix too: say why, in the form.
      if (error instanceof SettingsError || error instanceof FileError || (error as BulwarkError).code === 'ERR_USAGE') {
        return { ok: false, field: (error instanceof SettingsError && error.field) || change.section, message: describeError(error) };
      }
      throw error;
    }
    return { ok: true, settings: this.settingsView() };
  }

  /** Keep an imported root under the data directory, named by its hash. */
  private importTrustedRoot({ contents }: { fileName: string; contents: string }): ConsoleMethods['importTrustedRoot']['result'] {
    let root: { signed?: { _type?: string; version?: unknown } };
    try {
      root = JSON.parse(contents) as typeof root;
    } catch {
      return { ok: false, message: 'this file is not JSON; choose the root.json your update source publishes' };
    }
    if (root?.signed?._type !== 'root') return { ok: false, message: 'this JSON is not a TUF root (its signed._type is not "root")' };
    const dir = path.join(this.options.dataDir, 'trusted-roots');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${sha256(Buffer.from(contents)).slice(0, 16)}.root.json`);
    writeFileAtomic(file, contents);
    return { ok: true, path: file };
  }

  private async testConnection(params: ConsoleMethods['testConnection']['params']) {
    const data = this.options.settings.data;
    const proxy = params.proxy ? { ...params.proxy, password: params.proxy.password ?? data.proxy.password } : data.proxy;
    const url = params.url || data.source.url;
    const until = cooldownFor(this.options.dataDir, url);
    return testConnection({ url, proxy, ...(until ? { cooldownUntil: until } : {}) });
  }
}

/** Samples kept for the fleet chart (a week at one every half hour, or a busy day at one a minute). */
const FLEET_KEPT = 400;

function loadFleetSamples(dataDir: string): FleetSampleView[] {
  try {
    return fs
      .readFileSync(path.join(dataDir, 'fleet-history.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as FleetSampleView];
        } catch {
          return [];
        }
      })
      .slice(-FLEET_KEPT);
  } catch {
    return [];
  }
}

/** A run as an agent reported it, its strings made visible text. */
function agentRunView(run: AgentLastRun): AgentRunView {
  return {
    result: run.result,
    at: visible(run.at, 40),
    bytes: run.bytes,
    ...(run.trigger ? { trigger: visible(run.trigger, 16) } : {}),
    ...(run.method ? { method: visible(run.method, 16) } : {}),
    ...(run.error ? { error: visible(run.error, 2000) } : {}),
  };
}

/** An agent as the console shows it: every value it sent made visible text (untrusted.ts), so none can hide or fake anything on the page. */
function agentView(row: AgentListed): AgentView {
  return {
    id: row.id,
    name: visible(row.name, 100),
    hostname: visible(row.hostname, 253),
    address: row.address,
    families: row.families,
    versions: row.components.map((c) => ({ id: c.id, version: c.version, ...(c.method ? { method: visible(c.method, 16) } : {}) })),
    state: row.state,
    lastSeen: row.lastSeen,
    lastRun: row.lastRun ? agentRunView(row.lastRun) : null,
    ring: isRing(row.ring) ? row.ring : 'broad',
    held: row.state === 'held',
    consumers: row.consumers.map((c) => ({ id: c.id, engine: visible(c.engine, 64), version: c.version, active: c.active, ...(c.error ? { error: visible(c.error, 2000) } : {}) })),
    trust: row.trust,
    orders: (row.orders ?? []).map((order) => ({ short: visible(orderLabel(order), 120), text: visible(describeOrder(order), 400) })),
  };
}

function sentenceCase(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function progressView(progress: RunProgress): ProgressView {
  if (progress.stage === 'component-done') return { stage: progress.stage, component: progress.component.id, index: progress.index, total: progress.total };
  return { ...progress };
}
