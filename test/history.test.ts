// The update history on disk: newest first, robust to a torn line, bounded in size.
import fs from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { History, type RunRecord } from '../src-main/engine/history.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
beforeEach(() => {
  dir = tempDir('bulwark-history-');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(n: number, padding = 0): RunRecord {
  return {
    trigger: 'schedule',
    startedAt: new Date(n * 1000).toISOString(),
    finishedAt: new Date(n * 1000 + 500).toISOString(),
    result: 'ok',
    bytes: n,
    components: padding ? [{ id: 'virus-pattern', previousVersion: 1, version: 1, method: 'none', reason: 'x'.repeat(padding), bytes: 0, fullBytes: 0, durationMs: 0, result: 'ok' }] : [],
  };
}

it('returns the newest runs first and skips a torn last line', () => {
  const history = new History(dir);
  for (let n = 1; n <= 5; n++) history.append(run(n));
  fs.appendFileSync(history.file, '{"trigger":"sched'); // a crash mid-append
  const fresh = new History(dir);
  expect(fresh.recent(3).map((r) => r.bytes)).toEqual([5, 4, 3]);
  expect(fresh.last()?.bytes).toBe(5);
});

it('reads only the end of a long history, and trims it past its size limit keeping the newest runs', () => {
  const history = new History(dir);
  // ~4 KB per run: the 8 MB limit is passed after about 2,000 runs, then trimmed to the newest 4 MB.
  for (let n = 1; n <= 2100; n++) history.append(run(n, 4000));
  expect(history.recent(2).map((r) => r.bytes)).toEqual([2100, 2099]);
  const size = fs.statSync(history.file).size;
  expect(size).toBeLessThanOrEqual(8 * 1024 * 1024);
  const all = new History(dir).recent(5000);
  expect(all[0]!.bytes).toBe(2100);
  expect(all.length).toBeGreaterThan(900);
  expect(all.length).toBeLessThan(2100);
  // Consecutive, newest first: nothing lost in the middle.
  expect(all.every((r, i) => i === 0 || all[i - 1]!.bytes === r.bytes + 1)).toBe(true);
});
