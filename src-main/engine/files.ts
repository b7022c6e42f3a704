// Durable file operations: write to a temporary file beside the target, fsync, rename, fsync the
// directory. A crash at any point leaves either the old file or the new one, never a torn one.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A unique temporary name beside `file`; such names end in `.tmp` so recovery can sweep them. */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
}

/** Write `data` to a new temporary file and fsync it; returns its path. */
export function writeTempSynced(file: string, data: Uint8Array | string, mode = 0o644): string {
  const temp = tempPathFor(file);
  const fd = fs.openSync(temp, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  return temp;
}

/** Move a synced temporary file into place and make the rename durable. */
export function commitTemp(temp: string, file: string): void {
  fs.renameSync(temp, file);
  fsyncDir(path.dirname(file));
}

export function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644): void {
  commitTemp(writeTempSynced(file, data, mode), file);
}

export function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Remove the temporary files an interrupted run left in `dir`. */
export function sweepTempFiles(dir: string): number {
  let removed = 0;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (name.startsWith('.') && name.endsWith('.tmp')) {
      fs.rmSync(path.join(dir, name), { force: true });
      removed++;
    }
  }
  return removed;
}
