// Files found damaged are set aside, never deleted: renamed to <name>.damaged-<time> (with the
// companions SQLite keeps beside a database, so the copy still opens with its last transactions),
// next to a note of what happened and how to restore (a hidden file: .<name>.damaged-<time>.note). Each shows as a reminder — in the console, the
// tray and `bulwark status`, by whichever process looks — until the operator removes the damaged copy.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './files.js';
import type { Reminder } from './reminders.js';

/** What the reminder says about a damaged file: what happened, and how to restore. */
export type SetAsideNote = Pick<Reminder, 'severity' | 'title' | 'body' | 'action'>;

const noteOf = (moved: string) => path.join(path.dirname(moved), `.${path.basename(moved)}.note`);
/** SQLite's files beside a database: its write-ahead log, shared memory, rollback journal. */
const COMPANIONS = ['-wal', '-shm', '-journal'];

/** "<file>.damaged-2026-12-07T03-10-11-123Z": a name that sorts by time and holds no colon. */
export function damagedName(file: string, at = new Date()): string {
  return `${file}.damaged-${at.toISOString().replace(/[:.]/g, '-')}`;
}

/** Rename `file` (and its SQLite companions) aside; returns where it went. The note follows with noteSetAside. */
export function setAside(file: string, at = new Date()): string {
  const moved = damagedName(file, at);
  fs.renameSync(file, moved);
  for (const suffix of COMPANIONS) if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, moved + suffix);
  return moved;
}

/** Record, beside a damaged copy, what happened (shown as a reminder while the copy is there). */
export function noteSetAside(moved: string, note: SetAsideNote): void {
  writeFileAtomic(noteOf(moved), JSON.stringify(note, null, 1) + '\n');
}

/** A reminder for each damaged copy in `dir` that is still there (its note says what to show). */
export function setAsideReminders(dir: string): Reminder[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const present = new Set(names);
  const reminders: Reminder[] = [];
  for (const copy of names.filter((n) => /\.damaged-[^/]+$/.test(n) && present.has(`.${n}.note`)).sort()) {
    try {
      const note = JSON.parse(fs.readFileSync(noteOf(path.join(dir, copy)), 'utf8')) as SetAsideNote;
      if (typeof note.title !== 'string' || typeof note.body !== 'string' || typeof note.action !== 'string') continue;
      reminders.push({ id: `damaged-${copy}`, severity: note.severity === 'error' ? 'error' : 'warning', title: note.title, body: note.body, action: note.action });
    } catch {
      // A note that cannot be read is not worth a reminder of its own.
    }
  }
  return reminders;
}
