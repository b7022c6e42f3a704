// Where each agent stands against the server's current release, derived from what it last reported
// (so nothing here is stored, and nothing can drift). The first that applies:
//
//   unreachable   not heard from for twice its poll interval
//   updating      it said it started a run
//   failed        its last run failed
//   current       it holds every component at (at least) the version the server serves
//   held          its ring is held back by the rollout (on purpose: not outdated)
//   notified      told of the release, not started yet
//   outdated      anything else
//
// This is one SQL expression over the registry's columns, so counting, filtering and sorting 100,000
// agents happens in SQLite and the server keeps no row per agent in memory.
import type { Release } from './release.js';

export type AgentState = 'current' | 'held' | 'outdated' | 'notified' | 'updating' | 'failed' | 'unreachable';

export const AGENT_STATES: readonly AgentState[] = ['current', 'held', 'outdated', 'notified', 'updating', 'failed', 'unreachable'];

/** The counts the console shows: a notified agent is still outdated. */
export interface AgentCounts {
  total: number;
  current: number;
  /** Held back by the rollout (their ring is not released yet). */
  held: number;
  outdated: number;
  updating: number;
  failed: number;
  unreachable: number;
}

/** Named parameters of a statement (node-sqlite3 binds `$name` from an object). */
export type SqlParams = Record<`$${string}`, string | number | null>;

/** The moment and release an agent's state is judged against. */
export interface StateBasis {
  release: Release | undefined;
  now: number;
  /** Rings the rollout holds back now (rollout.ts heldRings). */
  held?: readonly string[];
}

/**
 * The `versions` column: component id → version as JSON, keys in id order and written by this one
 * function, so that an agent holding exactly the release's versions has the release's very text.
 */
export function versionsJson(components: readonly { id: string; version: number }[]): string {
  const sorted = [...components].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return `{${sorted.map((c) => `${JSON.stringify(c.id)}:${JSON.stringify(c.version)}`).join(',')}}`;
}

/** SQL that holds for an agent not heard from for twice its poll interval. */
export const SILENT_SQL = `($now - last_seen > 2 * poll_seconds * 1000)`;

/**
 * The agent's state as an SQL expression over the agents table, and the parameters it binds. `versions`
 * is the JSON object of the versions it reported (component id → version).
 */
export function stateSql({ release, now, held: heldRings = [] }: StateBasis): { sql: string; params: SqlParams } {
  const params: SqlParams = { $now: now, $release: release?.index.release ?? 0, $releaseVersions: versionsJson(release?.index.components ?? []) };
  heldRings.forEach((ring, i) => (params[`$heldRing${i}`] = ring));
  const heldSql = heldRings.length ? `WHEN ring IN (${heldRings.map((_, i) => `$heldRing${i}`).join(', ')}) THEN 'held'` : '';
  const held = (release?.index.components ?? []).map((component, i) => {
    params[`$path${i}`] = `$.${JSON.stringify(component.id)}`;
    params[`$version${i}`] = component.version;
    return `COALESCE(json_extract(versions, $path${i}), 0) >= $version${i}`;
  });
  const current = held.length ? held.join(' AND ') : '1';
  // `current`: most of a settled fleet holds exactly the release, found by one text comparison before a lookup per component.
  const sql = `(CASE
    WHEN ${SILENT_SQL} THEN 'unreachable'
    WHEN phase = 'updating' THEN 'updating'
    WHEN last_result = 'failed' THEN 'failed'
    WHEN versions = $releaseVersions OR (${current}) THEN 'current'
    ${heldSql}
    WHEN phase = 'notified' AND $release > 0 AND notified_release >= $release THEN 'notified'
    ELSE 'outdated' END)`;
  return { sql, params };
}

/** The count an agent's state falls under (a notified agent is still outdated). */
export function countOf(state: AgentState): Exclude<keyof AgentCounts, 'total'> {
  return state === 'notified' ? 'outdated' : state;
}

export function emptyCounts(): AgentCounts {
  return { total: 0, current: 0, held: 0, outdated: 0, updating: 0, failed: 0, unreachable: 0 };
}

/** The short form of an agent id that `bulwark agents list` and the console show, and commands accept. */
export const shortId = (id: string): string => id.slice(0, 8);
