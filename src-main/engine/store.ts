// The versioned component store in the data directory:
//
//   store/<id>/<version>      full files, uncompressed, verified before they got here
//   store/<id>/active.json    which version is active, with its SHA-256: the commit point
//
// Installing writes the new version beside the old ones (temp file, fsync, rename), then replaces
// active.json the same way. A crash before the second rename leaves the previous version active;
// the next run finds the verified file and only has to activate it.
import fs from 'node:fs';
import path from 'node:path';
import { COMPONENT_ID_PATTERN, isValidVersion } from './components.js';
import { StoreError, VerificationError } from './errors.js';
import { commitTemp, sha256, sweepTempFiles, tempPathFor, writeFileAtomic } from './files.js';
import { KEEP_VERSIONS } from './limits.js';

export type InstallMethod = 'incremental' | 'full';

export interface InstalledComponent {
  id: string;
  version: number;
  sha256: string;
  length: number;
  installedAt: string;
  method: InstallMethod;
  path: string;
  /** The stored file's modification time when it was activated: a cheap sign that it changed since. */
  mtimeMs?: number;
  /** The stored file's inode when it was activated: a file replaced by another of the same size and time is seen. */
  ino?: number;
}

type ActiveRecord = Omit<InstalledComponent, 'id' | 'path'>;

/** How often every active file is hashed in full even when nothing looks changed (besides at start-up). */
export const FULL_CHECK_INTERVAL_MS = 24 * 3_600_000;

/** What is wrong with a component in the store, when something is. */
export interface StoreProblem {
  id: string;
  /** The version the record names, when it could be read. */
  version?: number;
  problem: 'record-damaged' | 'file-missing' | 'file-damaged';
  /** For people: "the active file of virus-pattern 175 does not match its recorded SHA-256". */
  message: string;
}

export class ComponentStore {
  readonly dir: string;

  constructor(dataDir: string, private readonly keep = KEEP_VERSIONS) {
    this.dir = path.join(dataDir, 'store');
    fs.mkdirSync(this.dir, { recursive: true });
  }

  private componentDir(id: string): string {
    if (!COMPONENT_ID_PATTERN.test(id)) throw new StoreError(`invalid component id ${JSON.stringify(id)}`);
    return path.join(this.dir, id);
  }

  pathOf(id: string, version: number): string {
    return path.join(this.componentDir(id), String(version));
  }

  /** Remove temporary files an interrupted install left behind. */
  recover(): number {
    let removed = 0;
    for (const id of this.ids()) removed += sweepTempFiles(this.componentDir(id));
    return removed;
  }

  ids(): string[] {
    return fs
      .readdirSync(this.dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && COMPONENT_ID_PATTERN.test(e.name))
      .map((e) => e.name)
      .sort();
  }

  /** The active version of a component, or undefined if none is installed (or its record or file is unusable: see problem()). */
  active(id: string): InstalledComponent | undefined {
    const read = this.readActive(id);
    return 'component' in read ? read.component : undefined;
  }

  private readActive(id: string): { component: InstalledComponent } | { problem: StoreProblem } | { none: true } {
    const file = path.join(this.componentDir(id), 'active.json');
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return { none: true };
    }
    let record: ActiveRecord;
    try {
      record = JSON.parse(text) as ActiveRecord;
    } catch {
      return { problem: { id, problem: 'record-damaged', message: `the record of ${id}'s active version (active.json) is damaged` } };
    }
    if (!isValidVersion(record?.version) || typeof record.sha256 !== 'string' || !Number.isSafeInteger(record.length)) {
      return { problem: { id, problem: 'record-damaged', message: `the record of ${id}'s active version (active.json) is damaged` } };
    }
    const filePath = this.pathOf(id, record.version);
    if (!fs.existsSync(filePath)) {
      return { problem: { id, version: record.version, problem: 'file-missing', message: `the active file of ${id} ${record.version} is missing` } };
    }
    return { component: { id, ...record, path: filePath } };
  }

  /**
   * Check a component's active file against its record: by size, modification time and inode (cheap:
   * one stat), or by SHA-256 when `deep` (at start-up, daily, and whenever the cheap check finds a
   * change). Undefined when the component is fine or not installed.
   */
  problem(id: string, deep: boolean): StoreProblem | undefined {
    const read = this.readActive(id);
    if ('problem' in read) return read.problem;
    if ('none' in read) return undefined;
    const { component } = read;
    const stat = fs.statSync(component.path);
    // (Within a millisecond: setting a time back through utimes() rounds.)
    const changed =
      stat.size !== component.length ||
      (component.mtimeMs !== undefined && Math.abs(stat.mtimeMs - component.mtimeMs) > 1) ||
      (component.ino !== undefined && stat.ino !== component.ino);
    if (!deep && !changed) return undefined;
    if (stat.size === component.length && sha256(fs.readFileSync(component.path)) === component.sha256) return undefined;
    return { id, version: component.version, problem: 'file-damaged', message: `the active file of ${id} ${component.version} does not match its recorded length and SHA-256` };
  }

  /**
   * Problems of every component in the store. A full (`deep`) check is remembered (lastFullCheck) to the
   * hour: a process that starts again soon after does not rewrite the record.
   */
  problems(deep: boolean, now = new Date()): StoreProblem[] {
    const found = this.ids().flatMap((id) => this.problem(id, deep) ?? []);
    const last = deep ? this.lastFullCheck() : undefined;
    if (deep && (!last || Math.abs(now.getTime() - last.getTime()) >= 3_600_000)) {
      try {
        writeFileAtomic(this.fullCheckFile, JSON.stringify({ fullCheckAt: now.toISOString() }) + '\n');
      } catch {
        // Only a reminder of when to hash again: the next run hashes once more.
      }
    }
    return found;
  }

  /** Beside the store (store/ holds one directory per component): when its active files were last hashed. */
  private get fullCheckFile(): string {
    return path.join(path.dirname(this.dir), 'store-check.json');
  }

  /** When every active file was last hashed in full (by any process on this store), if it was. */
  lastFullCheck(): Date | undefined {
    try {
      const at = new Date((JSON.parse(fs.readFileSync(this.fullCheckFile, 'utf8')) as { fullCheckAt: string }).fullCheckAt);
      return Number.isNaN(at.getTime()) ? undefined : at;
    } catch {
      return undefined;
    }
  }

  /** Whether a full check is due: none yet, or the last one is FULL_CHECK_INTERVAL_MS old (or in the future: a clock set back). */
  fullCheckDue(now = new Date()): boolean {
    const last = this.lastFullCheck();
    return !last || now.getTime() - last.getTime() >= FULL_CHECK_INTERVAL_MS || last.getTime() > now.getTime() + 60_000;
  }

  list(): InstalledComponent[] {
    return this.ids().flatMap((id) => this.active(id) ?? []);
  }

  /** Versions on disk for a component, ascending. */
  versions(id: string): number[] {
    const dir = this.componentDir(id);
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .filter((n) => /^[1-9][0-9]*$/.test(n))
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Whether `version` is on disk with the expected hash (an install that stopped before activation). */
  hasVerified(id: string, version: number, expectedSha256: string): boolean {
    const file = this.pathOf(id, version);
    if (!fs.existsSync(file)) return false;
    return sha256(fs.readFileSync(file)) === expectedSha256;
  }

  /**
   * Write a version that must match its signed hash: the durable write (on libuv's thread pool) and
   * the SHA-256 (on this thread) run side by side, and the file is renamed into place only if the
   * hash matched. Not yet active.
   */
  async writeVerified(id: string, version: number, data: Uint8Array, expected: { sha256: string; length: number }, what: string): Promise<void> {
    const dir = this.componentDir(id);
    fs.mkdirSync(dir, { recursive: true });
    const target = this.pathOf(id, version);
    const temp = tempPathFor(target);
    const written = (async () => {
      const file = await fs.promises.open(temp, 'wx', 0o644);
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
    })();
    const matches = data.length === expected.length && sha256(data) === expected.sha256;
    try {
      await written;
    } catch (cause) {
      fs.rmSync(temp, { force: true });
      throw new StoreError(`cannot write ${target}`, { cause });
    }
    if (!matches) {
      fs.rmSync(temp, { force: true });
      throw new VerificationError(`${what} does not match the signed length and hash of ${id} ${version}`);
    }
    commitTemp(temp, target);
  }

  /** Make `version` the active one: the single atomic step of an install. */
  activate(id: string, version: number, record: Omit<ActiveRecord, 'version' | 'mtimeMs' | 'ino'>): InstalledComponent {
    const file = path.join(this.componentDir(id), 'active.json');
    const stat = fs.statSync(this.pathOf(id, version));
    // Whole milliseconds: what every file system and utimes() keep exactly.
    const active: ActiveRecord = { version, ...record, mtimeMs: Math.floor(stat.mtimeMs), ino: stat.ino };
    try {
      writeFileAtomic(file, JSON.stringify(active, null, 1) + '\n');
    } catch (cause) {
      throw new StoreError(`cannot activate ${id} ${version}`, { cause });
    }
    this.prune(id, version);
    return { id, ...active, path: this.pathOf(id, version) };
  }

  /** Keep the newest `keep` versions (always including the active one). */
  private prune(id: string, activeVersion: number): void {
    const versions = this.versions(id).filter((v) => v !== activeVersion);
    const excess = versions.length - (this.keep - 1);
    for (const version of versions.slice(0, Math.max(0, excess))) {
      fs.rmSync(this.pathOf(id, version), { force: true });
    }
  }
}
