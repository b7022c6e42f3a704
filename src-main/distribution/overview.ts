// The server's running picture of its agents, for the console, the tray and the reminders: every
// agent with its state against the current release (agent-status.ts), the counts, and the reminders
// that follow. Reloaded from the registry shortly after agents report (a burst costs one reload) and
// every half minute, since "unreachable" comes with the passing of time rather than with an event.
import { EventEmitter } from 'node:events';
import type { Reminder } from '../engine/reminders.js';
import type { Family, StackKind } from '../engine/network.js';
import { agentState, countAgents, type AgentCounts, type AgentState } from './agent-status.js';
import type { AgentRecord, AgentRegistry } from './registry.js';
import type { Distribution, Release } from './release.js';

export type AgentRow = AgentRecord & { state: AgentState; families: Family[] };

/** Wait after a change before reloading, so a burst of reports costs one reload. */
const SETTLE_MS = 500;
/** Reload at least this often (the registry may be written by another process: enrollment from the CLI). */
const REFRESH_MS = 30_000;
/** Heartbeats alone make news at most this often. */
const SEEN_EVERY_MS = 5_000;

export class AgentsOverview extends EventEmitter<{ change: [] }> {
  rows: AgentRow[] = [];
  counts: AgentCounts = countAgents([]);
  private timer: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private stateKey = '';
  private seenKey = '';
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

  /** Load now and keep reloading; resolves after the first load. */
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
    this.distribution.off('release', this.onRelease);
  }

  private readonly onRelease = () => this.changed();

  /** Something about the agents changed: reload soon. */
  changed(delayMs = SETTLE_MS): void {
    if (this.settle) return;
    this.settle = setTimeout(() => {
      this.settle = undefined;
      void this.reload();
    }, delayMs);
    this.settle.unref();
  }

  /** Reload from the registry; concurrent calls share the load in flight and one more after it. */
  reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        try {
          this.apply(agentRows(await this.registry.list(), this.distribution.current()));
        } catch (error) {
          this.log(`cannot read the agent registry: ${(error as Error).message}`);
        }
      } while (this.again);
      this.loading = undefined;
    })();
    return this.loading;
  }

  /**
   * Take new rows. A change of state (or a new run) is news at once; agents merely heard from again
   * (their heartbeats) are news at most every SEEN_EVERY_MS, so a large fleet does not flood the console.
   */
  private apply(rows: AgentRow[]): void {
    const stateKey = JSON.stringify(rows.map((r) => [r.id, r.state, r.lastRun?.at, r.families, r.name]));
    const seenKey = JSON.stringify(rows.map((r) => r.lastSeen));
    this.rows = rows;
    this.counts = countAgents(rows.map((r) => r.state));
    const now = Date.now();
    if (stateKey !== this.stateKey || (seenKey !== this.seenKey && now - this.emittedAt >= SEEN_EVERY_MS)) {
      this.stateKey = stateKey;
      this.seenKey = seenKey;
      this.emittedAt = now;
      this.emit('change');
    }
    this.wakeForSilence(rows, now);
  }

  /** Reload when the next agent would pass twice its poll interval unheard, so "unreachable" shows on time. */
  private wakeForSilence(rows: AgentRow[], now: number): void {
    clearTimeout(this.silenceTimer);
    const next = Math.min(...rows.filter((r) => r.state !== 'unreachable').map((r) => Date.parse(r.lastSeen) + 2 * r.pollSeconds * 1000));
    if (!Number.isFinite(next)) return;
    this.silenceTimer = setTimeout(() => this.changed(0), Math.max(0, next - now) + 100);
    this.silenceTimer.unref();
  }

  /** Cards for agents that need attention (see agentReminders). */
  reminders(server: { stack: StackKind | undefined; url: string | undefined }): Reminder[] {
    return agentReminders(this.rows, server);
  }
}

/** Rows for the console and the CLI: each agent with its state and its address families. */
export function agentRows(agents: readonly AgentRecord[], release: Release | undefined, now = Date.now()): AgentRow[] {
  return agents.map((agent) => ({
    ...agent,
    state: agentState(agent, release, now),
    families: [...new Set(agent.addresses.map((a) => a.family))].sort() as Family[],
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
