// Rollout rings: a new release does not reach every agent at once. Each agent belongs to a ring —
// canary, early or broad (new agents: broad) — and a release goes ring by ring:
//
//   new release ─► canary ──(soak, no failures)──► early ──(soak)──► broad (everyone)
//                     │                               │
//                     └──── failures over the threshold: halted ────┘  (until Resume, or Promote now)
//
// A ring is released when the rollout has reached it; agents of rings not yet released are held: they
// keep their versions, and one that has less (a new agent) gets the last release that passed, the last
// one that reached every ring (the server's policy tells each agent whether it may move: it can hold an
// agent back, never make it accept content the vendor did not sign). Empty rings are passed at once.
//
// Failures are judged by whose they are (what the agent reports): a content failure (an engine on the
// agent would not load the version: its check, reload or health failed) in canary halts at once; a
// failure of the agent's own (its disk, permissions, network) marks that agent and never halts; any
// other failure counts against the thresholds: any in canary, more than failurePercent of a later ring.
// State in DATA/rollout.json.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../engine/files.js';
import { isRing, RINGS, type Ring } from '../protocol/agent-protocol.js';
import type { RingCounts } from './overview.js';
import type { AgentRegistry } from './registry.js';

export interface RolloutSettings {
  /** Roll releases out ring by ring (otherwise every agent gets a release at once). */
  enabled: boolean;
  /** How long a ring runs a release without failures before the next ring gets it. */
  soakSeconds: number;
  /** Failures in canary that halt the rollout when exceeded (0: any failure halts). */
  canaryFailures: number;
  /** Share of a later ring's agents failing that halts the rollout when exceeded. */
  failurePercent: number;
}

export const DEFAULT_ROLLOUT: RolloutSettings = { enabled: true, soakSeconds: 900, canaryFailures: 0, failurePercent: 5 };

/** An engine would not load the content on agents of a ring (what a content failure halt names). */
export interface ContentFailure {
  component?: string;
  version?: number;
  engine?: string;
  stage?: string;
  /** The engine's own words. */
  message: string;
  /** The agents it failed on (the first few). */
  agents: string[];
}

export interface RolloutState {
  /** The release being rolled out. */
  release: number;
  /** Its components' versions (what held agents get once it has passed). */
  versions?: Record<string, number>;
  startedAt: string;
  /** The ring that got it last: it and the rings before it are released. */
  stage: Ring;
  /** When that ring got it (its soak runs from here). */
  stageSince: string;
  halted?: { at: string; reason: string; failing: { name: string; error: string }[]; content?: ContentFailure };
  /** The last release that reached every ring: held agents get its versions when they have less. */
  passed?: { release: number; versions: Record<string, number> };
}

export interface RingProgress {
  ring: Ring;
  agents: number;
  current: number;
  failed: number;
  released: boolean;
}

/** How many agents a ring has. */
export type RingSizes = (ring: Ring) => number;

/** Where failures are counted: the registry. */
export type FailureSource = Pick<AgentRegistry, 'ringFailures' | 'failing'>;

/** The rings a rollout state holds back (none when rollouts are off, or before the first release). */
export function heldRings(state: RolloutState | undefined, settings: RolloutSettings): Ring[] {
  if (!settings.enabled || !state) return [];
  return RINGS.slice(RINGS.indexOf(state.stage) + 1);
}

/** 'released': a later ring was reached (its agents, told of the release before, must update now). */
export class Rollout extends EventEmitter<{ change: [RolloutState | undefined]; released: [Ring] }> {
  private state: RolloutState | undefined;
  private readonly file: string;

  constructor(
    dataDir: string,
    private readonly settings: () => RolloutSettings,
    private readonly log: (line: string) => void = () => {},
  ) {
    super();
    this.file = path.join(dataDir, 'rollout.json');
    this.state = Rollout.read(dataDir);
  }

  /** The rollout state a server left in `dataDir` (for read-only commands). */
  static read(dataDir: string): RolloutState | undefined {
    try {
      const state = JSON.parse(fs.readFileSync(path.join(dataDir, 'rollout.json'), 'utf8')) as RolloutState;
      return Number.isSafeInteger(state.release) && isRing(state.stage) ? state : undefined;
    } catch {
      return undefined;
    }
  }

  current(): RolloutState | undefined {
    return this.state;
  }

  /** Whether agents of `ring` may install the current release. */
  released(ring: Ring): boolean {
    if (!this.settings().enabled || !this.state) return true;
    return RINGS.indexOf(ring) <= RINGS.indexOf(this.state.stage);
  }

  /** The rings held back now. */
  heldRings(): Ring[] {
    return heldRings(this.state, this.settings());
  }

  /** The versions held agents may move up to: the last release that passed (empty when none has). */
  passedVersions(): Record<string, number> {
    return this.state?.passed?.versions ?? {};
  }

  /**
   * A new release: it starts at the first ring that has agents. `previousVersions`: the versions of the
   * release before it, which passed if its rollout reached broad (a rollout.json written before the
   * last passed release was recorded says no more than that).
   */
  start(release: number, sizes: RingSizes, versions: Record<string, number> = {}, previousVersions: Record<string, number> = {}, now = new Date()): void {
    if (!this.settings().enabled) return;
    const stage = this.firstWithAgents(0, sizes);
    const previous = this.state;
    const passed = previous?.passed ?? (previous?.stage === 'broad' && !previous.halted ? { release: previous.release, versions: previous.versions ?? previousVersions } : undefined);
    this.save(this.passedIfBroad({ release, versions, startedAt: now.toISOString(), stage, stageSince: now.toISOString(), ...(passed ? { passed } : {}) }));
    // No 'released' here: the release itself is being announced to every agent right now.
    this.log(`rollout of release ${release}: ${stage}${stage === 'canary' ? ' first' : ' (no agents in the rings before it)'}`);
  }

  /** A release that reached every ring has passed: held agents may have it from now on. */
  private passedIfBroad(state: RolloutState): RolloutState {
    return state.stage === 'broad' && !state.halted ? { ...state, passed: { release: state.release, versions: state.versions ?? {} } } : state;
  }

  /** Count the failures since the rollout started: halt when over the threshold, or move on after a clean soak. */
  async evaluate(source: FailureSource, sizes: RingSizes, now = new Date()): Promise<void> {
    const state = this.state;
    if (!this.settings().enabled || !state || state.halted) return;
    const settings = this.settings();
    const since = Date.parse(state.startedAt);
    const tallies = new Map((await source.ringFailures(since)).map((t) => [t.ring, t]));
    // The operator may have halted, resumed or promoted meanwhile: judge only the state the counts are for.
    if (this.state !== state) return;
    for (const ring of RINGS.slice(0, RINGS.indexOf(state.stage) + 1)) {
      // Failures of the agents' own (local) are not counted here: they mark only their agent.
      const { agents, failing, content: refusals } = tallies.get(ring) ?? { agents: 0, failing: 0, content: 0 };
      // Content that an engine would not load, on a canary: halted at once, whatever the threshold.
      const contentHalt = ring === 'canary' && refusals > 0;
      const over = contentHalt || (ring === 'canary' ? failing > settings.canaryFailures : agents > 0 && (failing / agents) * 100 > settings.failurePercent);
      if (over) {
        const examples = await source.failing(ring, since, 20);
        if (this.state !== state) return;
        const refused = examples.filter((e) => e.failure?.kind === 'content');
        const first = refused[0]?.failure;
        if (contentHalt && first) {
          const content: ContentFailure = {
            ...(first.component ? { component: first.component } : {}),
            ...(first.version !== undefined ? { version: first.version } : {}),
            ...(first.engine ? { engine: first.engine } : {}),
            ...(first.stage ? { stage: first.stage } : {}),
            message: first.message,
            agents: refused.map((e) => e.name),
          };
          this.halt(`the content failed to load in ${first.engine ?? 'its engine'} on ${listNames(content.agents, refusals)}: ${first.message}`, examples, now, content);
        } else {
          this.halt(`${failing} of ${agents} ${ring} agent${agents === 1 ? '' : 's'} failed with release ${state.release}`, examples, now);
        }
        return;
      }
    }
    if (state.stage !== 'broad' && now.getTime() - Date.parse(state.stageSince) >= settings.soakSeconds * 1000) this.promote(sizes, now);
  }

  /** Release the next ring now (the operator's "Promote now", or a clean soak). */
  promote(sizes: RingSizes, now = new Date()): RolloutState | undefined {
    const state = this.state;
    if (!state) return undefined;
    if (state.stage === 'broad') return state;
    const stage = this.firstWithAgents(RINGS.indexOf(state.stage) + 1, sizes);
    const { halted: _, ...rest } = state;
    this.save(this.passedIfBroad({ ...rest, stage, stageSince: now.toISOString() }));
    this.log(`rollout of release ${state.release}: ${stage} released`);
    this.emit('released', stage);
    return this.state;
  }

  halt(reason: string, failing: readonly { name: string; error: string }[] = [], now = new Date(), content?: ContentFailure): RolloutState | undefined {
    const state = this.state;
    if (!state) return undefined;
    this.save({ ...state, halted: { at: now.toISOString(), reason, failing: failing.slice(0, 20).map(({ name, error }) => ({ name, error })), ...(content ? { content } : {}) } });
    this.log(`rollout of release ${state.release} HALTED at ${state.stage}: ${reason}`);
    return this.state;
  }

  /**
   * Go on after a halt: the soak of the current ring starts again, and only failures from now on count.
   * When no later ring has agents there is nobody for a soak to protect: the rollout moves on at once.
   */
  resume(sizes?: RingSizes, now = new Date()): RolloutState | undefined {
    const state = this.state;
    if (!state?.halted) return state;
    const { halted: _, ...rest } = state;
    this.save({ ...rest, startedAt: now.toISOString(), stageSince: now.toISOString() });
    this.log(`rollout of release ${state.release} resumed at ${state.stage}`);
    const later = RINGS.slice(RINGS.indexOf(state.stage) + 1);
    if (sizes && later.length && later.every((ring) => sizes(ring) === 0)) return this.promote(sizes, now);
    return this.state;
  }

  progress(counts: (ring: Ring) => RingCounts): RingProgress[] {
    return RINGS.map((ring) => ({ ring, ...counts(ring), released: this.released(ring) }));
  }

  private firstWithAgents(from: number, sizes: RingSizes): Ring {
    for (const ring of RINGS.slice(from)) if (ring === 'broad' || sizes(ring) > 0) return ring;
    return 'broad';
  }

  private save(state: RolloutState): void {
    this.state = state;
    writeFileAtomic(this.file, JSON.stringify(state, null, 1) + '\n');
    this.emit('change', state);
  }
}

/** "a", "a and b", "a, b and 3 more" (of `total`). */
function listNames(names: readonly string[], total: number): string {
  const shown = names.slice(0, 3);
  const more = total - shown.length;
  if (more > 0) return `${shown.join(', ')} and ${more} more`;
  return shown.length <= 1 ? shown.join('') : `${shown.slice(0, -1).join(', ')} and ${shown.at(-1)}`;
}
