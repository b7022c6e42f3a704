// The audit log: every operator action (roll back, pin, unpin, promote, halt, resume, a ring move, a
// token rotation, an agent removed or asked to update), who did it — from a console session or the
// command line — and when. One JSON line per action in DATA/audit.jsonl, appended; the console shows
// the newest, `bulwark audit` prints them. Past MAX_BYTES the oldest half is dropped.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './files.js';

/** Who acted: the console (its session: browser or desktop, and the address it came from) or the CLI (user@host). */
export interface Actor {
  via: 'console' | 'desktop' | 'cli';
  who: string;
}

export type AuditAction =
  | 'rollback'
  | 'pin'
  | 'unpin'
  | 'promote'
  | 'halt'
  | 'resume'
  | 'ring'
  | 'rotate-token'
  | 'remove-agent'
  | 'update-agent'
  | 'update-agents'
  | 'rotate-console-token';

export interface AuditEntry extends Actor {
  at: string;
  action: AuditAction;
  /** What it acted on: a component id, an agent's name, the rollout's release. */
  target: string;
  /** What changed, in a few words ("175 → 173", "a1b2c3d4 to early"). */
  detail?: string;
  reason?: string;
}

const MAX_BYTES = 2 * 1024 * 1024;

export class AuditLog {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'audit.jsonl');
  }

  /** Append an entry. The action is done by then: a log that cannot be written must not undo it, so this never throws. */
  record(actor: Actor, entry: Omit<AuditEntry, 'at' | 'via' | 'who'>, log?: (line: string) => void): AuditEntry {
    const full: AuditEntry = { at: new Date().toISOString(), via: actor.via, who: actor.who, ...entry };
    try {
      const fd = fs.openSync(this.file, 'a', 0o600);
      try {
        fs.writeSync(fd, JSON.stringify(full) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      if (fs.statSync(this.file).size > MAX_BYTES) this.trim();
    } catch (error) {
      log?.(`cannot write the audit log ${this.file}: ${(error as Error).message}`);
    }
    return full;
  }

  /** The newest entries first, at most `limit`. */
  recent(limit = 50): AuditEntry[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch {
      return [];
    }
    const entries: AuditEntry[] = [];
    const lines = text.split('\n');
    for (let i = lines.length - 1; i >= 0 && entries.length < limit; i--) {
      const line = lines[i]!.trim();
      if (!line) continue;
      try {
        entries.push(JSON.parse(line) as AuditEntry);
      } catch {
        // a torn last line (a crash mid-append): skipped
      }
    }
    return entries;
  }

  private trim(): void {
    const text = fs.readFileSync(this.file, 'utf8');
    const keep = text.slice(text.length - MAX_BYTES / 2);
    writeFileAtomic(this.file, keep.slice(keep.indexOf('\n') + 1), 0o600);
  }
}
