// Update history: one JSON line per run in history.jsonl, appended and fsynced. A torn last line
// (crash mid-append) is skipped when reading.
import fs from 'node:fs';
import path from 'node:path';
import type { InstallMethod } from './store.js';

export type Trigger = 'install' | 'startup' | 'schedule' | 'manual';

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
}

export interface RunRecord {
  trigger: Trigger;
  startedAt: string;
  finishedAt: string;
  result: 'ok' | 'failed';
  /** Every byte received, metadata included. */
  bytes: number;
  error?: string;
  errorCode?: string;
  components: ComponentRun[];
}

export class History {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'history.jsonl');
  }

  append(run: RunRecord): void {
    const fd = fs.openSync(this.file, 'a', 0o644);
    try {
      fs.writeSync(fd, JSON.stringify(run) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The most recent runs, newest first. */
  recent(limit = 50): RunRecord[] {
    if (!fs.existsSync(this.file)) return [];
    const lines = fs.readFileSync(this.file, 'utf8').split('\n');
    const runs: RunRecord[] = [];
    for (let i = lines.length - 1; i >= 0 && runs.length < limit; i--) {
      const line = lines[i]!.trim();
      if (!line) continue;
      try {
        runs.push(JSON.parse(line) as RunRecord);
      } catch {
        // torn line from an interrupted append
      }
    }
    return runs;
  }

  last(): RunRecord | undefined {
    return this.recent(1)[0];
  }
}
