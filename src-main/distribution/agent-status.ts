// Where each agent stands against the server's current release, derived from what it last reported
// (so nothing here is stored, and nothing can drift):
//
//   unreachable   not heard from for twice its poll interval
//   updating      it said it started a run
//   failed        its last run failed
//   current       it holds every component at the version the server serves
//   notified      told of the release, not started yet
//   outdated      anything else
import type { AgentRecord } from './registry.js';
import type { Release } from './release.js';

export type AgentState = 'current' | 'outdated' | 'notified' | 'updating' | 'failed' | 'unreachable';

/** The counts the console shows: a notified agent is still outdated. */
export interface AgentCounts {
  total: number;
  current: number;
  outdated: number;
  updating: number;
  failed: number;
  unreachable: number;
}

/** Whether the agent holds every component of the release at (at least) the version the server serves. */
export function isCurrent(agent: Pick<AgentRecord, 'components'>, release: Release | undefined): boolean {
  if (!release) return true;
  const held = new Map(agent.components.map((c) => [c.id, c.version]));
  return release.index.components.every((c) => (held.get(c.id) ?? 0) >= c.version);
}

export function agentState(agent: AgentRecord, release: Release | undefined, now = Date.now()): AgentState {
  if (now - Date.parse(agent.lastSeen) > 2 * agent.pollSeconds * 1000) return 'unreachable';
  if (agent.phase === 'updating') return 'updating';
  if (agent.lastRun?.result === 'failed') return 'failed';
  if (isCurrent(agent, release)) return 'current';
  if (agent.phase === 'notified' && release && agent.notifiedRelease >= release.index.release) return 'notified';
  return 'outdated';
}

export function countAgents(states: readonly AgentState[]): AgentCounts {
  const counts: AgentCounts = { total: states.length, current: 0, outdated: 0, updating: 0, failed: 0, unreachable: 0 };
  for (const state of states) counts[state === 'notified' ? 'outdated' : state]++;
  return counts;
}
