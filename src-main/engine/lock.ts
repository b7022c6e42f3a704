// One process at a time per data directory: `bulwark serve` and a one-off `bulwark update` must
// not install into the same store at once. The lock file holds the owner's PID; a lock whose
// owner is gone is taken over.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError } from './errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function acquireLock(dataDir: string): () => void {
  const file = path.join(dataDir, 'bulwark.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(fs.readFileSync(file, 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new BusyError(`another Bulwark process (PID ${owner}) is using ${dataDir}`);
      }
      fs.rmSync(file, { force: true }); // stale: its owner died
    }
  }
  throw new BusyError(`cannot lock ${dataDir}`);
}
