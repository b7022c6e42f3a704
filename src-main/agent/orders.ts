// What the server's policy orders this agent, judged by the agent itself and kept in its data
// directory (orders.json), so that the rules of docs/agents.md hold across restarts:
//
//   - a rollout hold is obeyed for at most --max-hold, counted from the first run it held this agent
//     behind the vendor's latest; past it the agent takes the vendor's latest ("hold lapsed"). A
//     hold's clock starts again only once the agent has been level with the vendor's latest. The
//     server's index saying it does not hold the latest yet ("waiting") runs on the same clock;
//   - a server pin below the vendor's latest is obeyed only to a version this agent installed
//     (update-run.ts refuses the others), and shown with the time it was first obeyed;
//   - whatever keeps the agent behind the vendor's latest is in every report and in `bulwark status`,
//     never a plain "ok".
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../engine/files.js';
import type { RunRecord } from '../engine/history.js';
import type { ServerOrder } from '../protocol/agent-protocol.js';

export interface OrdersFile {
  /** When the rollout first held this agent behind the vendor's latest (cleared once it is level again). */
  holdSince?: string;
  /** A hold it stopped obeying: when it began, when it lapsed, and what it moved (kept while the server still holds). */
  lapsed?: { since: string; at: string; ids: string[] };
  /** Server pins obeyed below the vendor's latest, with when each was first obeyed at its version. */
  pins: Record<string, { version: number; since: string }>;
  /** The orders after the last run: what reports and `bulwark status` show. */
  current: ServerOrder[];
}

const file = (dataDir: string) => path.join(dataDir, 'orders.json');

/** The orders kept after the last run; `onDamaged` hears of a file that is there but unreadable. */
export function readOrders(dataDir: string, onDamaged?: (message: string) => void): OrdersFile {
  try {
    const data = JSON.parse(fs.readFileSync(file(dataDir), 'utf8')) as Partial<OrdersFile>;
    return { ...(typeof data.holdSince === 'string' ? { holdSince: data.holdSince } : {}), ...(data.lapsed ? { lapsed: data.lapsed } : {}), pins: data.pins ?? {}, current: Array.isArray(data.current) ? data.current : [] };
  } catch (error) {
    // None yet, or damaged: no order is known. A hold's clock then starts again, which lengthens
    // the hold, so a damaged file is said.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') onDamaged?.(`${file(dataDir)} is damaged (${(error as Error).message}): the server's hold, if any, is counted again from the next run`);
    return { pins: {}, current: [] };
  }
}

export function writeOrders(dataDir: string, orders: OrdersFile): void {
  writeFileAtomic(file(dataDir), JSON.stringify(orders, null, 1) + '\n');
}

/** Whether the next run obeys the server's hold, or takes the vendor's latest because the hold has lasted too long. */
export function holdFor(orders: OrdersFile, serverHold: boolean, now: Date, maxHoldSeconds: number): { hold: boolean; holdLapsed?: { since: string; maxHoldSeconds: number } } {
  // Held (or kept waiting by the server's index) for too long: neither is obeyed any more.
  if (orders.holdSince && now.getTime() - Date.parse(orders.holdSince) >= maxHoldSeconds * 1000) return { hold: false, holdLapsed: { since: orders.holdSince, maxHoldSeconds } };
  return { hold: serverHold };
}

/**
 * The orders after `run`, which ran with the server's `policy`. A run that judged no component (the
 * source unreachable, an operator's change) leaves them as they were.
 */
export function judgeRun(previous: OrdersFile, run: RunRecord, policy: { pins: ReadonlyMap<string, number>; hold: boolean }, maxHoldSeconds: number): OrdersFile {
  // Nothing installed yet counts too: a new agent held (or kept waiting) is behind the vendor's latest like any other.
  const judged = run.components.filter((c) => c.offeredVersion !== undefined);
  if (!judged.length) return previous;
  const behind = (c: (typeof judged)[number]) => c.version === null || c.version < c.offeredVersion!;
  // A rollout hold, and the server's index saying it does not hold the latest yet: both keep the agent behind, on one clock.
  const held = judged.filter((c) => c.order === 'hold' || c.order === 'wait');
  // A lapsed hold's run, whether it got the vendor's latest or not (the server may have none of its files).
  const lapsedNow = judged.filter((c) => c.order === 'hold-lapsed');
  // Pins the server gave (the agent's own operator's pins are not orders).
  const pinned = judged.filter((c) => c.order === 'pin' && c.version !== null && policy.pins.get(c.id) === c.version);
  // Still behind for any reason but a pin (a failed run, a lapsed hold whose files the server does not
  // have): the clock goes on. Only level with the vendor's latest does it start over, so a failed run
  // cannot buy the server another --max-hold.
  const stillBehind = judged.some((c) => behind(c) && c.order !== 'pin');
  const next: OrdersFile = { pins: {}, current: [] };
  if (held.length || (previous.holdSince && stillBehind)) next.holdSince = previous.holdSince ?? run.startedAt;
  if (lapsedNow.length) {
    const since = previous.holdSince ?? run.startedAt;
    // When it lapsed: the first run that stopped obeying it.
    const at = previous.lapsed?.since === since ? previous.lapsed.at : run.finishedAt;
    next.lapsed = { since, at, ids: lapsedNow.map((c) => c.id) };
  } else if (previous.lapsed && ((policy.hold && !held.length) || stillBehind)) next.lapsed = previous.lapsed;
  for (const c of pinned) {
    const before = previous.pins[c.id];
    next.pins[c.id] = before?.version === c.version ? before : { version: c.version!, since: run.finishedAt };
  }
  const until = next.holdSince ? new Date(Date.parse(next.holdSince) + maxHoldSeconds * 1000).toISOString() : undefined;
  for (const c of held) next.current.push({ id: c.id, order: c.order as 'hold' | 'wait', version: c.version ?? 0, vendorLatest: c.offeredVersion!, since: next.holdSince!, ...(until ? { until } : {}) });
  for (const c of pinned) next.current.push({ id: c.id, order: 'pin', version: c.version!, vendorLatest: c.offeredVersion!, since: next.pins[c.id]!.since });
  if (next.lapsed) {
    for (const c of judged.filter((c) => next.lapsed!.ids.includes(c.id))) {
      next.current.push({ id: c.id, order: 'hold-lapsed', version: c.version ?? 0, vendorLatest: c.offeredVersion!, since: next.lapsed.since, until: next.lapsed.at });
    }
  }
  return next;
}
