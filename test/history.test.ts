// The update history on disk: newest first, robust to a torn line, bounded in size.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileError } from '../src-main/engine/errors.js';
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

it('starts the next append on its own line after a torn last line, and reads both sides of it', () => {
  const history = new History(dir);
  history.append(run(1));
  fs.appendFileSync(history.file, '{"trigger":"schedule","startedAt":"19'); // a crash mid-append
  const after = new History(dir);
  after.append(run(2));
  expect(after.recent().map((r) => r.bytes)).toEqual([2, 1]);
  expect(new History(dir).recent().map((r) => r.bytes)).toEqual([2, 1]);
  expect(new History(dir).last()?.bytes).toBe(2);
  // The fragment stays on a line of its own; every other line is a whole record.
  const lines = fs.readFileSync(after.file, 'utf8').split('\n');
  expect(lines).toEqual([JSON.stringify(run(1)), '{"trigger":"schedule","startedAt":"19', JSON.stringify(run(2)), '']);
});

it('recovers a run that an older version glued onto a torn line', () => {
  const history = new History(dir);
  history.append(run(1));
  // What appending after a torn line used to leave: the next run on the same line as the fragment.
  fs.appendFileSync(history.file, '{"trigger":"sched' + JSON.stringify(run(2)) + '\n');
  history.append(run(3));
  expect(new History(dir).recent().map((r) => r.bytes)).toEqual([3, 2, 1]);
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

it('throws a FileError naming the file and the reason when history.jsonl is a directory', () => {
  const history = new History(dir);
  fs.mkdirSync(history.file);
  expect(() => history.append(run(1))).toThrow(FileError);
  expect(() => history.append(run(1))).toThrow(/^cannot record the run in .*history\.jsonl$/);
  try {
    history.append(run(1));
  } catch (error) {
    expect(((error as FileError).cause as NodeJS.ErrnoException).code).toBe('EISDIR');
  }
  // Kept in memory all the same: the console and the tray still show the run.
  expect(history.last()?.bytes).toBe(1);
  expect(history.recent()).toEqual([]);
});

describe('on a full disk (a tiny tmpfs)', () => {
  let mountPoint: string | undefined;
  let cannotMount: string | undefined;

  beforeAll(() => {
    if (process.getuid?.() !== 0) {
      cannotMount = 'mounting a tmpfs needs root';
      return;
    }
    const point = tempDir('bulwark-history-full-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', point], { stdio: 'pipe' });
      mountPoint = point;
    } catch (error) {
      cannotMount = `cannot mount a tmpfs here: ${(error as Error).message.split('\n')[0]}`;
      fs.rmSync(point, { recursive: true, force: true });
    }
  });

  afterAll(() => {
    if (!mountPoint) return;
    execFileSync('umount', [mountPoint], { stdio: 'pipe' });
    fs.rmSync(mountPoint, { recursive: true, force: true });
  });

  /** Write until the file system refuses (ENOSPC). */
  function fillDisk(file: string): void {
    const fd = fs.openSync(file, 'w');
    const chunk = Buffer.alloc(1024, 0x78);
    try {
      for (;;) fs.writeSync(fd, chunk);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
  }

  it('a failed append throws a FileError (ENOSPC), takes back its partial line, and the next append works', (ctx) => {
    if (!mountPoint) return ctx.skip(cannotMount);
    const history = new History(mountPoint);
    history.append(run(1));
    const filler = path.join(mountPoint, 'filler');
    fillDisk(filler);

    // 8 KB does not fit: part of it goes into the file's last page before the disk refuses the rest.
    let caught: unknown;
    try {
      history.append(run(2, 8000));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(FileError);
    expect((caught as FileError).message).toMatch(/^cannot record the run in .*history\.jsonl$/);
    expect(((caught as FileError).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(fs.readFileSync(history.file, 'utf8')).toBe(JSON.stringify(run(1)) + '\n');

    fs.rmSync(filler);
    history.append(run(3));
    expect(new History(mountPoint).recent().map((r) => r.bytes)).toEqual([3, 1]);
  });
});
