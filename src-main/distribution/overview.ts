// The server's running picture of its agents, for the console, the tray, the rollout and the
// reminders: every agent with its state against the current release (agent-status.ts), the counts,
// and the reminders that follow. A report updates its agent's row in place (a fleet reporting
// thousands of times a second must not reread the registry each time); the whole registry is reread
// when agents enroll or move, on a new release, every half minute (another process may have written
// it), and when the next agent would turn unreachable by silence.
import { EventEmitter } from 'node:events';
import type { Reminder } from '../engine/reminders.js';
import type { Family, StackKind } from '../engine/network.js';
import { agentState, countAgents, type AgentCounts, type AgentState } from './agent-status.js';
import type { AgentRecord, AgentRegistry, AgentReport } from './registry.js';
import type { Distribution, Release } from './release.js';

export type AgentRow = AgentRecord & { state: AgentState; families: Family[] };

/** Wait after a change before rereading, so a burst of changes costs one reread. */
const SETTLE_MS = 500;
/** Reread at least this often (the registry may be written by another process: enrollment from the CLI). */
const REFRESH_MS = 30_000;
/** Changes of state are news at most this often; heartbeats alone at most every SEEN_EVERY_MS. */
const NEWS_EVERY_MS = 250;
const SEEN_EVERY_MS = 5_000;

export class AgentsOverview extends EventEmitter<{ change: [] }> {
  counts: AgentCounts = countAgents([]);
  private readonly byId = new Map<string, AgentRow>();
  private list: AgentRow[] | undefined = [];
  private timer: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private newsTimer: NodeJS.Timeout | undefined;
  /** What is waiting to be told: a change of state, or only agents heard from again. */
  private pending: 'state' | 'seen' | undefined;
  private emittedAt = 0;
  private loading: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly registry: AgentRegistry,
    private readonly distribution: Distribution,
    private readonly log: (line: string) => void = () => {},
  ) {
    super();
  }

  /** Every agent, as of the last report or reread. */
  get rows(): AgentRow[] {
    return (this.list ??= [...this.byId.values()]);
  }

  /** Load now and keep rereading; resolves after the first load. */
  async start(): Promise<void> {
    this.timer = setInterval(() => this.changed(0), REFRESH_MS);
    this.timer.unref();
    this.distribution.on('release', this.onRelease);
    await this.reload();
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.settle);
    clearTimeout(this.silenceTimer);
    clearTimeout(this.newsTimer);
    this.distribution.off('release', this.onRelease);
  }

  private readonly onRelease = () => this.changed();

  /** Something about the agents changed (an enrollment, a ring moved): reread soon. */
  changed(delayMs = SETTLE_MS): void {
    if (this.settle) return;
    this.settle = setTimeout(() => {
      this.settle = undefined;
      void this.reload();
    }, delayMs);
    this.settle.unref();
  }

  /** An agent reported (and the registry has its row): update that row in place. */
  reported(id: string, report: AgentReport, address: string, at = Date.now()): void {
    const row = this.byId.get(id);
    if (!row) {
      this.changed(0); // enrolled since the last reread
      return;
    }
    const before = [row.state, row.name, row.lastRun?.at, row.families.join()].join('|');
    const stateBefore = row.state;
    Object.assign(row, {
      name: report.name,
      hostname: report.hostname,
      addresses: report.addresses,
      components: report.components,
      phase: report.phase,
      pollSeconds: report.pollSeconds,
      address,
      lastSeen: new Date(at).toISOString(),
      ...(report.lastRun ? { lastRun: report.lastRun } : {}),
    });
    row.families = familiesOf(row);
    row.state = agentState(row, this.distribution.current(), at);
    if (row.state !== stateBefore) {
      // The counts follow one row, not the whole fleet.
      this.counts = { ...this.counts, [countOf(stateBefore)]: this.counts[countOf(stateBefore)] - 1 };
      this.counts[countOf(row.state)]++;
    }
    this.tell([row.state, row.name, row.lastRun?.at, row.families.join()].join('|') === before ? 'seen' : 'state');
  }

  /** Reread the registry; concurrent calls share the read in flight and one more after it. */
  reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        try {
          const rows = agentRows(await this.registry.list(), this.distribution.current());
          this.byId.clear();
          for (const row of rows) this.byId.set(row.id, row);
          this.list = rows;
          this.counts = countAgents(rows.map((r) => r.state));
          this.tell('state');
          this.wakeForSilence(rows, Date.now());
        } catch (error) {
          this.log(`cannot read the agent registry: ${(error as Error).message}`);
        }
      } while (this.again);
      this.loading = undefined;
    })();
    return this.loading;
  }

  /**
   * Tell listeners (console, tray, rollout), throttled: a change of state within NEWS_EVERY_MS, agents
   * merely heard from again within SEEN_EVERY_MS, so a large fleet does not flood them.
   */
  private tell(kind: 'state' | 'seen'): void {
    if (kind === 'state' || !this.pending) this.pending = kind;
    if (this.newsTimer) return;
    const wait = Math.max(0, this.emittedAt + (this.pending === 'state' ? NEWS_EVERY_MS : SEEN_EVERY_MS) - Date.now());
    this.newsTimer = setTimeout(() => {
      this.newsTimer = undefined;
      this.pending = undefined;
      this.emittedAt = Date.now();
      this.emit('change');
    }, wait);
    this.newsTimer.unref();
  }

  /** Reread when the next agent would pass twice its poll interval unheard, so "unreachable" shows on time. */
  private wakeForSilence(rows: AgentRow[], now: number): void {
    clearTimeout(this.silenceTimer);
    let next = Infinity;
    for (const r of rows) if (r.state !== 'unreachable') next = Math.min(next, Date.parse(r.lastSeen) + 2 * r.pollSeconds * 1000);
    if (!Number.isFinite(next)) return;
    this.silenceTimer = setTimeout(() => this.changed(0), Math.max(0, next - now) + 100);
    this.silenceTimer.unref();
  }

  /** Cards for agents that need attention (see agentReminders). */
  reminders(server: { stack: StackKind | undefined; url: string | undefined }): Reminder[] {
    return agentReminders(this.rows, server);
  }
}

/** The count an agent's state falls under (a notified agent is still outdated). */
function countOf(state: AgentState): Exclude<keyof AgentCounts, 'total'> {
  return state === 'notified' ? 'outdated' : state;
}

function familiesOf(agent: Pick<AgentRecord, 'addresses'>): Family[] {
  return [...new Set(agent.addresses.map((a) => a.family))].sort() as Family[];
}

/** Rows for the console and the CLI: each agent with its state and its address families. */
export function agentRows(agents: readonly AgentRecord[], release: Release | undefined, now = Date.now()): AgentRow[] {
  return agents.map((agent) => ({
    ...agent,
    state: agentState(agent, release, now),
    families: familiesOf(agent),
  }));
}

/** Cards for agents that need attention: gone silent, or on an address family this server lacks. */
export function agentReminders(rows: readonly AgentRow[], server: { stack: StackKind | undefined; url: string | undefined }): Reminder[] {
  const reminders: Reminder[] = [];
  const silent = rows.filter((r) => r.state === 'unreachable');
  if (silent.length) {
    const names = silent.slice(0, 5).map((r) => r.name).join(', ') + (silent.length > 5 ? ` and ${silent.length - 5} more` : '');
    reminders.push({
      id: 'agents-unreachable',
      severity: 'warning',
      title: `${silent.length} agent${silent.length === 1 ? ' has' : 's have'} not been heard from`,
      body: `${names} did not report for more than twice ${silent.length === 1 ? 'its' : 'their'} poll interval, so ${silent.length === 1 ? 'it may be' : 'they may be'} missing updates.`,
      action: `Check that \`bulwark agent\` runs there and can reach this server${server.url ? ` at ${server.url}` : ''}.`,
    });
  }
  const kind = server.stack;
  const strangers = (family: Family) => rows.filter((r) => r.families.length === 1 && r.families[0] === family);
  const mismatch = kind === 'ipv6' ? strangers(4) : kind === 'ipv4' ? strangers(6) : [];
  if (mismatch.length) {
    const theirs = kind === 'ipv6' ? 'IPv4' : 'IPv6';
    const ours = kind === 'ipv6' ? 'IPv6' : 'IPv4';
    reminders.push({
      id: 'agents-family',
      severity: 'warning',
      title: `${mismatch.length} agent${mismatch.length === 1 ? ' has' : 's have'} only ${theirs}; this server only ${ours}`,
      body: `${mismatch.slice(0, 5).map((r) => r.name).join(', ')} cannot reach a pure ${ours} server directly; ${mismatch.length === 1 ? 'it gets' : 'they get'} through only by way of a proxy.`,
      action: `Run ${mismatch.length === 1 ? 'that agent' : 'those agents'} with --proxy pointing at a dual-stack proxy (such as squid on a host with both IPv4 and IPv6), or give this server an ${theirs} address.`,
    });
  }
  return reminders;
}
