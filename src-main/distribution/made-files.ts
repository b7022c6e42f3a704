// Files the server makes for its agents, on first request, from the versions it verified and keeps:
//
//   made/<id>/<base sha256>-<target sha256>.patch   an incremental from a kept version to the current release's
//   made/<id>/<target sha256>.zst                    the current release's version as a compressed full file
//
// Names are derived from the inputs' hashes, so a name always means the same content (immutable, as
// safe for an HTTP cache as the signed targets) and a request can ask for one before it exists. They
// carry no signature: an agent accepts one only if the file it rebuilds matches the signed catalogue.
//
// Requests are unauthenticated (the files are public, like the signed ones), so what a request can
// make is bounded (admission, before anything is built):
//   - only toward the current release's version of a component, and only from an older version kept
//     with it: at most 15 files per component per release, whatever is asked (and the full file of the
//     last release that passed the rollout, which held agents take);
//   - each made at most once ever: a build leaves a mark beside its file (<name>.sha256 when made),
//     and a file that is gone or damaged later is not made again; a build that failed (<name>.failed:
//     a full disk, a worker out of memory) is tried again an hour later, MAX_BUILD_ATTEMPTS times in all;
//   - at most MAX_QUEUED_BUILDS waiting: beyond, MadeQueueFull (the agent takes another way meanwhile).
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
  /** The current release's version of its component: what made files lead to. */
  latest: boolean;
  /** The version of the last release that passed the rollout: a full file of it is made too (for held agents). */
  passed?: boolean;
}

/** Builds waiting at most: one release needs at most 15 per component, one at a time. */
export const MAX_QUEUED_BUILDS = 32;

/** Builds of one file, in all: a failure may be passing (a full disk), but asking must not keep a build going. */
export const MAX_BUILD_ATTEMPTS = 3;

/** A failed build is tried again no sooner than this after it failed. */
export const BUILD_RETRY_MS = 60 * 60 * 1000;

/** What <name>.failed records: how many builds failed, the last one's time and words. */
interface BuildFailure {
  attempts: number;
  at: number;
  error: string;
}

/** Too many builds wait already: asked again later, the file may be made then. */
export class MadeQueueFull extends Error {
  constructor() {
    super(`${MAX_QUEUED_BUILDS} files are being made already; ask again later`);
  }
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
  /** Builds waiting or running. */
  private queued = 0;
  /** Output hashes of files already made, so each is hashed once. */
  private readonly known = new Map<string, MadeFile>();

  private readonly retryAfterMs: number;
  private readonly levels: { patch: number; full: number };

  constructor(
    readonly dir: string,
    /** The versions the server holds now, by id and content hash. */
    private readonly lookup: (id: string, sha256: string) => KeptVersion | undefined,
    { retryAfterMs = BUILD_RETRY_MS, levels = { patch: PATCH_LEVEL, full: FULL_LEVEL } }: { retryAfterMs?: number; levels?: { patch: number; full: number } } = {},
  ) {
    this.retryAfterMs = retryAfterMs;
    this.levels = levels;
  }

  /**
   * Whether `name` is a made file the server may make (nothing is built): well formed, toward the
   * current release's version, from an older version kept with it.
   */
  canMake(id: string, name: string): boolean {
    const match = NAME.exec(name);
    if (!match) return false;
    const [, baseSha, targetSha, kind] = match;
    if ((kind === 'patch') !== (baseSha !== undefined)) return false;
    const target = this.lookup(id, targetSha!);
    if (baseSha === undefined) return target?.latest === true || target?.passed === true;
    if (!target?.latest) return false;
    const base = this.lookup(id, baseSha);
    return base !== undefined && !base.latest && base.version < target.version;
  }

  /**
   * The file for `made/<id>/<name>`, built now if it never was; undefined when it may not be made
   * (canMake), or was made once and is gone or damaged since, or its build failed (within the last
   * hour, or MAX_BUILD_ATTEMPTS times). Throws MadeQueueFull when too many builds wait.
   */
  async get(id: string, name: string): Promise<MadeFile | undefined> {
    if (!this.canMake(id, name)) return undefined;
    const [, baseSha, targetSha] = NAME.exec(name)!;
    const file = path.join(this.dir, id, name);
    const known = this.known.get(file);
    if (known && fs.existsSync(file)) return known;
    const pending = this.building.get(file);
    if (pending) return pending;
    const recorded = readIfExists(`${file}.sha256`);
    if (recorded !== undefined) {
      // Made before (by this server or an earlier run of it): served only if it still matches the
      // hash recorded when it was made, and never made again.
      if (!fs.existsSync(file)) return undefined;
      const data = fs.readFileSync(file);
      const made = { file, sha256: crypto.createHash('sha256').update(data).digest('hex'), length: data.length };
      if (made.sha256 === recorded) {
        this.known.set(file, made);
        return made;
      }
      fs.rmSync(file, { force: true });
      return undefined;
    }
    const failed = readFailure(`${file}.failed`);
    if (failed && (failed.attempts >= MAX_BUILD_ATTEMPTS || Date.now() - failed.at < this.retryAfterMs)) return undefined;
    if (this.queued >= MAX_QUEUED_BUILDS) throw new MadeQueueFull();
    const target = this.lookup(id, targetSha!)!;
    const base = baseSha ? this.lookup(id, baseSha) : undefined;
    const job: BuildJob = base
      ? { kind: 'patch', base: base.file, target: target.file, out: file, level: this.levels.patch }
      : { kind: 'full', target: target.file, out: file, level: this.levels.full };
    const build = this.enqueue(job).then(
      (result) => {
        writeFileAtomic(`${file}.sha256`, result.sha256);
        if (failed) fs.rmSync(`${file}.failed`, { force: true });
        const made = { file, ...result };
        this.known.set(file, made);
        return made;
      },
      (error: unknown) => {
        // Marked, so that asking again starts no other build of it before its time.
        const failure: BuildFailure = { attempts: (failed?.attempts ?? 0) + 1, at: Date.now(), error: String((error as Error)?.message ?? error) };
        fs.mkdirSync(path.dirname(file), { recursive: true });
        writeFileAtomic(`${file}.failed`, JSON.stringify(failure) + '\n');
        throw error;
      },
    );
    this.building.set(file, build);
    void build.finally(() => this.building.delete(file)).catch(() => undefined);
    return build;
  }

  /** Remove made files whose target is not among `keep` (the versions the current releases serve). */
  prune(keep: ReadonlySet<string>): void {
    if (!fs.existsSync(this.dir)) return;
    for (const id of fs.readdirSync(this.dir)) {
      for (const name of fs.readdirSync(path.join(this.dir, id))) {
        const target = NAME.exec(name.replace(/\.(?:sha256|failed)$/, ''))?.[2];
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
    this.queued++;
    const run = this.queue.then(() => build(job)).finally(() => this.queued--);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * A failed build's mark; undefined when there is none. One it cannot read (damaged, or written by a
 * Bulwark that kept only the error's words) counts as one attempt, made when the file was written.
 */
function readFailure(file: string): BuildFailure | undefined {
  let text: string;
  let mtime: number;
  try {
    text = fs.readFileSync(file, 'utf8');
    mtime = fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as Partial<BuildFailure>;
    if (Number.isSafeInteger(parsed.attempts) && parsed.attempts! > 0 && Number.isFinite(parsed.at)) return { attempts: parsed.attempts!, at: parsed.at!, error: String(parsed.error ?? '') };
  } catch {
    // the older form: the error's words alone
  }
  return { attempts: 1, at: mtime, error: text.trim() };
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
