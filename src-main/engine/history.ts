// Update history: one JSON line per run in history.jsonl, appended and fsynced. A torn last line
// (crash mid-append) is left on a line of its own by the next append and skipped when reading.
import fs from 'node:fs';
import path from 'node:path';
import { FileError } from './errors.js';
import { writeFileAtomic } from './files.js';
import type { ConsumerStage, FailureKind } from './errors.js';
import type { InstallMethod } from './store.js';

/** What started a run; 'notification' is an agent told of a new release by its server. */
export type Trigger = 'install' | 'startup' | 'schedule' | 'manual' | 'notification';

export interface ComponentRun {
  id: string;
  previousVersion: number | null;
  version: number | null;
  /** The latest version the source offered. */
  offeredVersion?: number;
  method: InstallMethod | 'none';
  /** Why this method: "up to date", "incremental from 173", "no installed version", ... */
  reason: string;
  /** Bytes downloaded for this component (metadata excluded). */
  bytes: number;
  /** Size of the full file it installed (or would have), uncompressed. */
  fullBytes: number;
  durationMs: number;
  result: 'ok' | 'failed';
  error?: string;
  errorCode?: string;
  /** What was wrong with the installed copy before this run (a damaged file, or its record), which it repaired. */
  problem?: string;
  /**
   * Kept below the latest version on purpose: 'hold' (a rollout hold), 'wait' (the agent's server says
   * it does not hold the latest yet), 'pin' (a pin below the latest); or taken to the latest past a
   * hold: 'hold-lapsed' (the hold outlasted the agent's maximum).
   */
  order?: 'hold' | 'wait' | 'pin' | 'hold-lapsed';
  /** The engine that uses it would not take the version (consumers.ts): where, and in its own words. */
  consumer?: { version: number; engine: string; stage: ConsumerStage; kind: FailureKind; message: string; at: string };
}

/**
 * Whose failure a failed run was, for a rollout to judge: 'content' (an engine would not take the
 * version: it halts a rollout at its canary), 'local' (this machine's disk, permissions, network or
 * configuration: only this machine is marked), or 'release' (the release could not be installed as
 * served: verification, metadata; counted against the rollout's thresholds).
 */
export interface RunFailure {
  kind: FailureKind | 'release';
  component?: string;
  version?: number;
  engine?: string;
  stage?: ConsumerStage;
  message: string;
  /** When it first happened (a version refused earlier is reported with the time it was refused). */
  at: string;
}

export interface RunRecord {
  trigger: Trigger;
  /** The update source's URL for this run (the settings', or a one-off --source). */
  source?: string;
  startedAt: string;
  finishedAt: string;
  result: 'ok' | 'failed';
  /** Every byte received, metadata included. */
  bytes: number;
  error?: string;
  errorCode?: string;
  /** Something went wrong around the run that did not fail it (its history could not be written). */
  warning?: string;
  /** A failed run: whose failure it was (see RunFailure). */
  failure?: RunFailure;
  components: ComponentRun[];
}

/** Error codes of failures that are this machine's own: its disk, permissions, network or configuration. */
const LOCAL_CODES = new Set(['ERR_STORE', 'ERR_FILE', 'ERR_NETWORK', 'ERR_HTTP', 'ERR_PROXY_AUTH', 'ERR_COOLDOWN', 'ERR_BUSY', 'ERR_USAGE', 'ERR_SETTINGS', 'ERR_CONSUMER_CONFIG']);

/** Whose failure a failed run was (undefined for a run that did not fail). */
export function runFailure(run: Pick<RunRecord, 'result' | 'error' | 'errorCode' | 'components' | 'finishedAt'>): RunFailure | undefined {
  if (run.result !== 'failed') return undefined;
  const component = run.components.find((c) => c.result === 'failed');
  if (component?.consumer) {
    const { version, engine, stage, kind, message, at } = component.consumer;
    return { kind, component: component.id, version, engine, stage, message, at };
  }
  const code = component ? component.errorCode : run.errorCode;
  const message = (component ? component.error : run.error) ?? run.error ?? 'failed';
  return {
    kind: code !== undefined && LOCAL_CODES.has(code) ? 'local' : 'release',
    ...(component ? { component: component.id, ...(component.offeredVersion !== undefined ? { version: component.offeredVersion } : {}) } : {}),
    message,
    at: run.finishedAt,
  };
}

/** Past this size the oldest runs are dropped, down to half of it (so trimming is rare). */
const MAX_BYTES = 8 * 1024 * 1024;
/** Generous bytes per run when reading only the end of the file. */
const BYTES_PER_RUN = 8 * 1024;

/** The file does not end in a newline: its last append was torn. */
function endsMidLine(fd: number, size: number): boolean {
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  fs.readSync(fd, last, 0, 1, size - 1);
  return last[0] !== 0x0a;
}

/**
 * One line of the file, or undefined for a torn fragment. Versions before the torn-line fix glued
 * the next run onto a fragment: the run is then the last `{"trigger":` of the line.
 */
function parseRun(line: string): RunRecord | undefined {
  for (const start of [0, line.lastIndexOf('{"trigger":')]) {
    if (start < 0) continue;
    try {
      const run = JSON.parse(line.slice(start)) as unknown;
      if (run && typeof run === 'object' && !Array.isArray(run)) return run as RunRecord;
    } catch {
      // torn, or glued onto a torn fragment: try the last record start
    }
  }
  return undefined;
}

export class History {
  readonly file: string;
  /** The newest run, kept in memory: status and the tray ask for it on every state change. */
  private newest: RunRecord | undefined;
  private newestLoaded = false;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'history.jsonl');
  }

  /** Record a run; a FileError says why it could not be written (the run is still the newest in memory). */
  append(run: RunRecord): void {
    this.newest = run;
    this.newestLoaded = true;
    let size: number;
    try {
      size = this.write(run);
    } catch (error) {
      throw new FileError(this.file, `cannot record the run in ${this.file}`, { cause: error });
    }
    if (size <= MAX_BYTES) return;
    try {
      this.trim();
    } catch (error) {
      throw new FileError(this.file, `recorded the run but cannot trim ${this.file}`, { cause: error });
    }
  }

  /** Append one line; returns the file's new size. */
  private write(run: RunRecord): number {
    const fd = fs.openSync(this.file, 'a+', 0o644);
    try {
      const sizeBefore = fs.fstatSync(fd).size;
      // After a torn last line, start a new one: gluing the run onto the fragment would lose it.
      const line = Buffer.from((endsMidLine(fd, sizeBefore) ? '\n' : '') + JSON.stringify(run) + '\n');
      try {
        // A full disk takes part of a write and refuses the rest: loop until it is all in or refused.
        for (let written = 0; written < line.length; ) written += fs.writeSync(fd, line, written);
        fs.fsyncSync(fd);
      } catch (error) {
        try {
          fs.ftruncateSync(fd, sizeBefore); // take back the partial line
        } catch {
          // the next append starts a new line after it anyway
        }
        throw error;
      }
      return fs.fstatSync(fd).size;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Keep the newest half of MAX_BYTES worth of runs (atomically): years of hourly runs stay small. */
  private trim(): void {
    const size = fs.statSync(this.file).size;
    const keep = MAX_BYTES / 2;
    const fd = fs.openSync(this.file, 'r');
    const tail = Buffer.alloc(keep);
    try {
      fs.readSync(fd, tail, 0, keep, size - keep);
    } finally {
      fs.closeSync(fd);
    }
    // Start at the first whole line.
    writeFileAtomic(this.file, tail.subarray(tail.indexOf(0x0a) + 1));
  }

  /** The most recent runs, newest first, read from the end of the file only. */
  recent(limit = 50): RunRecord[] {
    let text: string;
    let fromStart: boolean;
    try {
      const fd = fs.openSync(this.file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const length = Math.min(size, limit * BYTES_PER_RUN);
        const buffer = Buffer.alloc(length);
        fs.readSync(fd, buffer, 0, length, size - length);
        text = buffer.toString('utf8');
        fromStart = length === size;
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return [];
    }
    const lines = text.split('\n');
    if (!fromStart) lines.shift(); // the first line read may be cut
    const runs: RunRecord[] = [];
    for (let i = lines.length - 1; i >= 0 && runs.length < limit; i--) {
      const line = lines[i]!.trim();
      if (!line) continue;
      const run = parseRun(line);
      if (run) runs.push(run);
    }
    return runs;
  }

  last(): RunRecord | undefined {
    if (!this.newestLoaded) {
      this.newest = this.recent(1)[0];
      this.newestLoaded = true;
    }
    return this.newest;
  }
}
