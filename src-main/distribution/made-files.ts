// Files the server makes for its agents, on first request, from the versions it verified and keeps:
//
//   made/<id>/<base sha256>-<target sha256>.patch   an incremental from any kept version to the latest
//   made/<id>/<target sha256>.zst                    the latest as a compressed full file
//
// Names are derived from the inputs' hashes, so a name always means the same content (immutable, as
// safe for an HTTP cache as the signed targets) and a request can ask for one before it exists. They
// carry no signature: an agent accepts one only if the file it rebuilds matches the signed catalogue.
// Builds run one at a time in a worker thread; concurrent requests for one file share its build.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FULL_LEVEL, PATCH_LEVEL } from '../engine/codec.js';
import { writeFileAtomic } from '../engine/files.js';
import type { BuildJob, BuildResult } from './codec-worker.js';

/** A version the server keeps, by content. */
export interface KeptVersion {
  id: string;
  version: number;
  sha256: string;
  file: string;
}

export interface MadeFile {
  file: string;
  sha256: string;
  length: number;
}

/**
 * The worker script. Beside this module once compiled; when this module runs from its TypeScript
 * source (the tests), the compiled copy under out/main, which the tests build first.
 */
const WORKER_URL = import.meta.url.endsWith('.ts') ? new URL('../../out/main/distribution/codec-worker.js', import.meta.url) : new URL('./codec-worker.js', import.meta.url);

const NAME = /^(?:([0-9a-f]{64})-)?([0-9a-f]{64})\.(patch|zst)$/;

export class MadeFiles {
  private readonly building = new Map<string, Promise<MadeFile>>();
  private queue: Promise<unknown> = Promise.resolve();
  /** Output hashes of files already made, so each is hashed once. */
  private readonly known = new Map<string, MadeFile>();

  constructor(
    readonly dir: string,
    /** The versions the server holds now, by id and content hash. */
    private readonly lookup: (id: string, sha256: string) => KeptVersion | undefined,
    private readonly levels = { patch: PATCH_LEVEL, full: FULL_LEVEL },
  ) {}

  /** Whether `name` is a well-formed made-file name whose inputs the server holds (nothing is built). */
  canMake(id: string, name: string): boolean {
    const match = NAME.exec(name);
    if (!match) return false;
    const [, baseSha, targetSha, kind] = match;
    if ((kind === 'patch') !== (baseSha !== undefined)) return false;
    return this.lookup(id, targetSha!) !== undefined && (baseSha === undefined || this.lookup(id, baseSha) !== undefined);
  }

  /** The file for `made/<id>/<name>`, built now if it has not been; undefined if its inputs are not held. */
  async get(id: string, name: string): Promise<MadeFile | undefined> {
    if (!this.canMake(id, name)) return undefined;
    const [, baseSha, targetSha] = NAME.exec(name)!;
    const file = path.join(this.dir, id, name);
    const known = this.known.get(file);
    if (known && fs.existsSync(file)) return known;
    if (fs.existsSync(file)) {
      // Made by an earlier run of the server: served only if it still matches the hash recorded when it was made.
      const data = fs.readFileSync(file);
      const made = { file, sha256: crypto.createHash('sha256').update(data).digest('hex'), length: data.length };
      if (readIfExists(`${file}.sha256`) === made.sha256) {
        this.known.set(file, made);
        return made;
      }
      fs.rmSync(file, { force: true });
      fs.rmSync(`${file}.sha256`, { force: true });
    }
    let pending = this.building.get(file);
    if (!pending) {
      const target = this.lookup(id, targetSha!)!;
      const base = baseSha ? this.lookup(id, baseSha) : undefined;
      if (base && base.version >= target.version) return undefined;
      const job: BuildJob = base
        ? { kind: 'patch', base: base.file, target: target.file, out: file, level: this.levels.patch }
        : { kind: 'full', target: target.file, out: file, level: this.levels.full };
      pending = this.enqueue(job).then((result) => {
        writeFileAtomic(`${file}.sha256`, result.sha256);
        const made = { file, ...result };
        this.known.set(file, made);
        return made;
      });
      this.building.set(file, pending);
      void pending.finally(() => this.building.delete(file)).catch(() => undefined);
    }
    return pending;
  }

  /** Remove made files whose target is not among `keep` (the versions the current releases serve). */
  prune(keep: ReadonlySet<string>): void {
    if (!fs.existsSync(this.dir)) return;
    for (const id of fs.readdirSync(this.dir)) {
      for (const name of fs.readdirSync(path.join(this.dir, id))) {
        const target = NAME.exec(name.replace(/\.sha256$/, ''))?.[2];
        if (target && keep.has(target)) continue;
        const file = path.join(this.dir, id, name);
        if (this.building.has(file)) continue;
        fs.rmSync(file, { force: true });
        this.known.delete(file);
      }
    }
  }

  /** One build at a time: each holds a base and a target in memory, and zstd's tables on top. */
  private enqueue(job: BuildJob): Promise<BuildResult> {
    const run = this.queue.then(() => build(job));
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function build(job: BuildJob): Promise<BuildResult> {
  fs.mkdirSync(path.dirname(job.out), { recursive: true });
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData: job });
    let result: BuildResult | undefined;
    worker.once('message', (message: BuildResult) => (result = message));
    worker.once('error', reject);
    worker.once('exit', (code) => (result ? resolve(result) : reject(new Error(`building ${path.basename(job.out)} failed (worker exit code ${code})`))));
  });
}
