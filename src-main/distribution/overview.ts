// The server's running picture of its agents, for the console, the tray, the rollout and the
// reminders: how many are in each state (agent-status.ts), ring by ring, and the reminders that
// follow. All of it is counted by SQLite from the registry, so the server holds a few numbers, not a
// row per agent: 100,000 agents cost no more memory than ten.
//
// It is recounted after news (reports, enrollments, ring moves, a new release) — at most every
// NEWS_EVERY_MS, and never more than a quarter of the time (a count over a large fleet takes a while)
// — every half minute (another process may have written the registry), and when the next agent
// would turn unreachable by silence. Listeners hear of a recount that changed something, of reports
// that changed what the console lists of an agent (its phase, versions, last run), and of
// agents merely heard from again at most every SEEN_EVERY_MS (the console's list shows when each was seen).
import { EventEmitter } from 'node:events';
import { describeError } from '../engine/errors.js';
import type { Reminder } from '../engine/reminders.js';
import type { Family, StackKind } from '../engine/network.js';
import { AGENT_STATES, countOf, emptyCounts, type AgentCounts } from './agent-status.js';
import type { AgentRegistry, AgentTally } from './registry.js';
import type { Distribution } from './release.js';
import { visible } from './untrusted.js';

/** A ring's agents, and how many of them are current and failed. */
export interface RingCounts {
  agents: number;
  current: number;
  failed: number;
}

/** What the overview knows: the counts, the rings, and the agents the reminders name. */
export interface AgentsPicture {
  counts: AgentCounts;
  /** Components of the release that outdated agents lack (counted only while some are outdated). */
  lagging: string[];
  rings: Record<string, RingCounts>;
  silent: { agents: number; names: string[] };
  /** Silent agents with only IPv4, or only IPv6. */
  only4: { agents: number; names: string[] };
  only6: { agents: number; names: string[] };
}

/** Recount at most this often, and wait this long after news so a burst costs one recount. */
const NEWS_EVERY_MS = 250;
/** Recount at least this often (the registry may be written by another process: enrollment from the CLI). */
const REFRESH_MS = 30_000;
/** Agents merely heard from again are news at most this often. */
const SEEN_EVERY_MS = 5_000;

export class AgentsOverview extends EventEmitter<{ change: [] }> {
  picture: AgentsPicture = emptyPicture();
  private timer: NodeJS.Timeout | undefined;
  private recountTimer: NodeJS.Timeout | undefined;
  /** Waits out SEEN_EVERY_MS for news of agents merely heard from (news of changes does not wait for it). */
  private seenTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private counting: Promise<void> | undefined;
  private again = false;
  /** Reports arrived since the last recount (so listeners hear of them even if no count moved). */
  private heard = false;
  /** Reports that changed an agent's listed state arrived since the last recount (told at once, not after SEEN_EVERY_MS). */
  private news = false;
  private countedAt = 0;
  private countTook = 0;
  private emittedAt = 0;
  private stopped = false;

  constructor(
    private readonly registry: AgentRegistry,
    private readonly distribution: Distribution,
    private readonly log: (line: string) => void = () => {},
    /** The rings the rollout holds back now (their agents count as held, not outdated). */
    private readonly heldRings: () => readonly string[] = () => [],
  ) {
    super();
  }

  get counts(): AgentCounts {
    return this.picture.counts;
  }

  /** Ring by ring (a ring with no agents is absent). */
  ring(name: string): RingCounts {
    return this.picture.rings[name] ?? { agents: 0, current: 0, failed: 0 };
  }

  /** Count now and keep counting; resolves after the first count. */
  async start(): Promise<void> {
    this.timer = setInterval(() => this.changed(), REFRESH_MS);
    this.timer.unref();
    this.distribution.on('release', this.onRelease);
    await this.recount();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.recountTimer);
    clearTimeout(this.seenTimer);
    clearTimeout(this.silenceTimer);
    this.distribution.off('release', this.onRelease);
  }

  private readonly onRelease = () => this.changed();

  /** Something about the agents changed (an enrollment, a ring moved, a report): recount soon. */
  changed(): void {
    if (this.recountTimer || this.stopped) return;
    const wait = Math.max(NEWS_EVERY_MS, 4 * this.countTook) - (Date.now() - this.countedAt);
    this.recountTimer = setTimeout(() => {
      this.recountTimer = undefined;
      void this.recount();
    }, Math.max(wait, 0));
    this.recountTimer.unref();
  }

  /**
   * An agent reported (the registry has its row). `news`: what the console lists of it changed (its
   * phase, versions or last run), which listeners hear of at the next recount even when the counts
   * did not move (an agent that began and ended a run between two counts).
   */
  reported(news = false): void {
    this.heard = true;
    if (news) this.news = true;
    this.changed();
  }

  /** Count again; concurrent calls share the count in flight and one more after it. */
  recount(): Promise<void> {
    if (this.counting) {
      this.again = true;
      return this.counting;
    }
    this.counting = (async () => {
      do {
        this.again = false;
        const started = Date.now();
        const heard = this.heard;
        const news = this.news;
        this.heard = false;
        this.news = false;
        try {
          const basis = { release: this.distribution.current(), now: started, held: this.heldRings() };
          const [tallies, strangers, nextSilence] = await Promise.all([this.registry.tally(basis), this.registry.strangers(started), this.registry.nextSilence(started)]);
          const before = JSON.stringify(this.picture);
          const counted = pictureOf(tallies);
          const lagging = counted.counts.outdated ? await this.registry.lagging(basis) : [];
          this.picture = { ...counted, lagging, ...strangers };
          const moved = JSON.stringify(this.picture) !== before;
          if (moved || news || (heard && Date.now() - this.emittedAt >= SEEN_EVERY_MS)) {
            this.emittedAt = Date.now();
            this.emit('change');
          } else if (heard && !this.seenTimer) {
            // Told by a recount once SEEN_EVERY_MS has passed.
            this.heard = true;
            this.seenTimer = setTimeout(() => {
              this.seenTimer = undefined;
              this.changed();
            }, this.emittedAt + SEEN_EVERY_MS - Date.now());
            this.seenTimer.unref();
          } else if (heard) {
            this.heard = true;
          }
          this.wakeForSilence(nextSilence);
        } catch (error) {
          this.log(`cannot read the agent registry: ${describeError(error)}`);
        }
        this.countedAt = Date.now();
        this.countTook = this.countedAt - started;
      } while (this.again && !this.stopped);
      this.counting = undefined;
    })();
    return this.counting;
  }

  /** Recount when the next agent would pass twice its poll interval unheard, so "unreachable" shows on time. */
  private wakeForSilence(at: number | undefined): void {
    clearTimeout(this.silenceTimer);
    if (at === undefined || this.stopped) return;
    this.silenceTimer = setTimeout(() => this.changed(), Math.max(0, at - Date.now()) + 100);
    this.silenceTimer.unref();
  }

  /** Cards for agents that need attention (see agentReminders). */
  reminders(server: { stack: StackKind | undefined; url: string | undefined }): Reminder[] {
    return agentReminders(this.picture, server);
  }
}

function emptyPicture(): AgentsPicture {
  return { counts: emptyCounts(), lagging: [], rings: {}, silent: { agents: 0, names: [] }, only4: { agents: 0, names: [] }, only6: { agents: 0, names: [] } };
}

/** The counts and the rings from the registry's tally. */
export function pictureOf(tallies: readonly AgentTally[]): Pick<AgentsPicture, 'counts' | 'rings'> {
  const counts = emptyCounts();
  const rings: Record<string, RingCounts> = {};
  for (const { state, ring, agents } of tallies) {
    if (!AGENT_STATES.includes(state)) continue;
    counts.total += agents;
    counts[countOf(state)] += agents;
    const counted = (rings[ring] ??= { agents: 0, current: 0, failed: 0 });
    counted.agents += agents;
    if (state === 'current' || state === 'failed') counted[state] += agents;
  }
  return { counts, rings };
}

/**
 * Cards for agents that need attention: gone silent, and, among those, agents on an address family this
 * server lacks (which explains their silence; one that reports gets through, by a proxy, and is no concern).
 */
export function agentReminders(picture: Pick<AgentsPicture, 'silent' | 'only4' | 'only6'>, server: { stack: StackKind | undefined; url: string | undefined }): Reminder[] {
  const reminders: Reminder[] = [];
  // Names are the agents' words: made visible text (untrusted.ts) before they reach a card.
  const more = (group: { agents: number; names: string[] }) => group.names.map((name) => visible(name, 100)).join(', ') + (group.agents > group.names.length ? ` and ${group.agents - group.names.length} more` : '');
  const { silent } = picture;
  if (silent.agents) {
    const one = silent.agents === 1;
    reminders.push({
      id: 'agents-unreachable',
      severity: 'warning',
      title: `${silent.agents} agent${one ? ' has' : 's have'} not been heard from`,
      body: `${more(silent)} did not report for more than twice ${one ? 'its' : 'their'} poll interval, so ${one ? 'it may be' : 'they may be'} missing updates.`,
      action: `Check that \`bulwark agent\` runs there and can reach this server${server.url ? ` at ${server.url}` : ''}.`,
    });
  }
  const kind = server.stack;
  const theirFamily: Family | undefined = kind === 'ipv6' ? 4 : kind === 'ipv4' ? 6 : undefined;
  const mismatch = theirFamily === 4 ? picture.only4 : theirFamily === 6 ? picture.only6 : undefined;
  if (mismatch?.agents) {
    const one = mismatch.agents === 1;
    const theirs = `IPv${theirFamily}`;
    const ours = theirFamily === 4 ? 'IPv6' : 'IPv4';
    reminders.push({
      id: 'agents-family',
      severity: 'warning',
      title: `${mismatch.agents} agent${one ? ' has' : 's have'} only ${theirs}; this server only ${ours}`,
      body: `${more(mismatch)} cannot reach a pure ${ours} server directly, and ${one ? 'has' : 'have'} not been heard from: ${one ? 'it gets' : 'they get'} through only by way of a proxy.`,
      action: `Run ${one ? 'that agent' : 'those agents'} with --proxy pointing at a dual-stack proxy (such as squid on a host with both IPv4 and IPv6), or give this server an ${theirs} address.`,
    });
  }
  return reminders;
}
