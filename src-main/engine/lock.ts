// One process at a time per data directory: `bulwark serve` and a one-off `bulwark update` must
// not install into the same store at once. The lock file names its owner by PID and, on Linux, by
// when that process started: PIDs are reused, so a live process with the owner's PID but another
// start time is not the owner. A lock whose owner is gone is taken over.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BusyError } from './errors.js';

/** A process, told apart from a later one that reuses its PID. */
export interface ProcessIdentity {
  pid: number;
  /** When it started ("<boot id>:<clock ticks since boot>"); absent where /proc cannot say. */
  startTime?: string;
}

function readProc(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The boot id makes a start time unique across reboots too (ticks restart from zero). */
const bootId = readProc('/proc/sys/kernel/random/boot_id') ?? '';

/** Field 22 of /proc/<pid>/stat (starttime), counted after the command name, which may hold spaces. */
function startTimeOf(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = fields?.[22 - 3];
  return ticks ? `${bootId}:${ticks}` : undefined;
}

export function processIdentity(pid: number): ProcessIdentity {
  const startTime = startTimeOf(pid);
  return startTime ? { pid, startTime } : { pid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process named is still the one running under that PID. */
export function isRunning(owner: ProcessIdentity): boolean {
  if (!Number.isInteger(owner.pid) || owner.pid <= 0 || !alive(owner.pid)) return false;
  if (owner.startTime === undefined) return true; // a PID alone is all there is to go on
  const now = startTimeOf(owner.pid);
  // Unreadable (/proc mounted with hidepid, say): assume it is the owner rather than take its lock.
  return now === undefined || now === owner.startTime;
}

/** Parse a lock: JSON identity, or a bare PID as versions before start times wrote it. */
function parseOwner(text: string): ProcessIdentity | undefined {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === 'number') return { pid: parsed };
    const { pid, startTime } = (parsed ?? {}) as { pid?: unknown; startTime?: unknown };
    if (typeof pid !== 'number') return undefined;
    return typeof startTime === 'string' ? { pid, startTime } : { pid };
  } catch {
    return undefined;
  }
}

/** Who the lock in `dataDir` names, if it names anyone. */
export function readLockOwner(dataDir: string): ProcessIdentity | undefined {
  const text = readProc(path.join(dataDir, 'bulwark.lock'));
  return text === undefined ? undefined : parseOwner(text);
}

export function acquireLock(dataDir: string): () => void {
  const file = path.join(dataDir, 'bulwark.lock');
  // Written whole beside the lock, then linked into place: the link fails if a lock exists, and no
  // reader ever sees a lock half written.
  const temp = path.join(dataDir, `.bulwark.lock.${crypto.randomBytes(6).toString('hex')}.tmp`);
  fs.writeFileSync(temp, JSON.stringify(processIdentity(process.pid)) + '\n');
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.linkSync(temp, file);
        return () => fs.rmSync(file, { force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = readLockOwner(dataDir);
        if (owner && owner.pid !== process.pid && isRunning(owner)) {
          throw new BusyError(`another Bulwark process (PID ${owner.pid}) is using ${dataDir}`);
        }
        fs.rmSync(file, { force: true }); // stale: its owner died, or its PID went to another process
      }
    }
  } finally {
    fs.rmSync(temp, { force: true });
  }
  throw new BusyError(`cannot lock ${dataDir}`);
}
