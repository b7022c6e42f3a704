// Rollout rings: a new release does not reach every agent at once. Each agent belongs to a ring —
// canary, early or broad (new agents: broad) — and a release goes ring by ring:
//
//   new release ─► canary ──(soak, no failures)──► early ──(soak)──► broad (everyone)
//                     │                               │
//                     └──── failures over the threshold: halted ────┘  (until Resume, or Promote now)
//
// A ring is released when the rollout has reached it; agents of rings not yet released hold their
// versions (the server's policy tells each agent whether it may move: it can hold an agent back, never
// make it accept content the vendor did not sign). Empty rings are passed at once. Thresholds: any
// failure in canary halts; more than failurePercent of a later ring halts. State in DATA/rollout.json.
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

export interface RolloutState {
  /** The release being rolled out. */
  release: number;
  startedAt: string;
  /** The ring that got it last: it and the rings before it are released. */
  stage: Ring;
  /** When that ring got it (its soak runs from here). */
  stageSince: string;
  halted?: { at: string; reason: string; failing: { name: string; error: string }[] };
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

  /** A new release: it starts at the first ring that has agents. */
  start(release: number, sizes: RingSizes, now = new Date()): void {
    if (!this.settings().enabled) return;
    const stage = this.firstWithAgents(0, sizes);
    this.save({ release, startedAt: now.toISOString(), stage, stageSince: now.toISOString() });
    // No 'released' here: the release itself is being announced to every agent right now.
    this.log(`rollout of release ${release}: ${stage}${stage === 'canary' ? ' first' : ' (no agents in the rings before it)'}`);
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
      const { agents, failing } = tallies.get(ring) ?? { agents: 0, failing: 0 };
      const over = ring === 'canary' ? failing > settings.canaryFailures : agents > 0 && (failing / agents) * 100 > settings.failurePercent;
      if (over) {
        const examples = await source.failing(ring, since, 20);
        if (this.state !== state) return;
        this.halt(`${failing} of ${agents} ${ring} agent${agents === 1 ? '' : 's'} failed with release ${state.release}`, examples, now);
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
    this.save({ ...rest, stage, stageSince: now.toISOString() });
    this.log(`rollout of release ${state.release}: ${stage} released`);
    this.emit('released', stage);
    return this.state;
  }

  halt(reason: string, failing: readonly { name: string; error: string }[] = [], now = new Date()): RolloutState | undefined {
    const state = this.state;
    if (!state) return undefined;
    this.save({ ...state, halted: { at: now.toISOString(), reason, failing: failing.slice(0, 20).map(({ name, error }) => ({ name, error })) } });
    this.log(`rollout of release ${state.release} HALTED at ${state.stage}: ${reason}`);
    return this.state;
  }

  /** Go on after a halt: the soak of the current ring starts again, and only failures from now on count. */
  resume(now = new Date()): RolloutState | undefined {
    const state = this.state;
    if (!state?.halted) return state;
    const { halted: _, ...rest } = state;
    this.save({ ...rest, startedAt: now.toISOString(), stageSince: now.toISOString() });
    this.log(`rollout of release ${state.release} resumed at ${state.stage}`);
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
