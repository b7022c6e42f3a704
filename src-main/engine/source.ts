// A TUF-verified update source: refreshes metadata with tuf-js (client workflow, TUF spec §5),
// reads the signed catalogue and downloads targets, each checked against its signed length and hash.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LengthOrHashMismatchError } from '@tufjs/models/dist/error.js';
import { Updater, type Fetcher, type TargetFile } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError, ExpiredMetadataError } from 'tuf-js/dist/error.js';
import { CATALOGUE_TARGET, parseCatalogue, type Catalogue } from './catalogue.js';
import { BulwarkError, ClockError, FileError, HttpStatusError, MetadataError, SourceError, UsageError, VerificationError } from './errors.js';
import type { HttpFetcher } from './fetcher.js';
import { writeFileAtomic } from './files.js';
import { DEFAULT_LIMITS, type Limits } from './limits.js';

export interface SourceOptions {
  /** Base URL of a published source: metadata/ and targets/ live beneath it. */
  url: string;
  /** The trusted root.json imported from the source's publisher. */
  trustedRoot: string;
  /** Where verified metadata is cached between runs. */
  cacheDir: string;
  fetcher: HttpFetcher;
  limits?: Limits;
}

export function checkSourceUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`"${url}" is not a URL (expected e.g. https://updates.example.com/bulwark)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`the update source must be an http or https URL, not ${parsed.protocol}`);
  }
  if (parsed.username || parsed.password) throw new UsageError('put credentials in the proxy settings, not in the source URL');
  return parsed;
}

/** Turn whatever tuf-js or the fetcher threw into one of our errors, keeping the original as cause. */
function translate(error: unknown, what: string): BulwarkError {
  if (error instanceof BulwarkError) return error;
  const err = error as Error;
  if (err instanceof DownloadHTTPError) {
    return err.cause instanceof HttpStatusError ? err.cause : new HttpStatusError(err.statusCode, what, { cause: err });
  }
  for (let inner: unknown = err; inner instanceof Error; inner = inner.cause) {
    if (inner instanceof BulwarkError) return inner;
  }
  // A file system error (the disk full while a verified target is copied into place) is this machine's.
  const fsError = err as NodeJS.ErrnoException;
  if (typeof fsError?.code === 'string' && typeof fsError.syscall === 'string') {
    return new FileError(fsError.path ?? '', `cannot write ${what} to disk`, { cause: err });
  }
  if (err instanceof DownloadLengthMismatchError || err instanceof LengthOrHashMismatchError) {
    return new VerificationError(`${what} does not match its signed length and hash`, { cause: err });
  }
  return new MetadataError(`the source's metadata could not be verified: ${err?.message ?? String(error)}`, { cause: err });
}

/** Why these bytes are not a TUF root.json, or undefined when they are one (the signatures are tuf-js's to check). */
export function rootProblem(bytes: Buffer): string | undefined {
  let parsed: { signed?: { _type?: unknown } } | null;
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    return 'not JSON';
  }
  const type = parsed?.signed?._type;
  if (type === 'root') return undefined;
  return type === undefined ? 'it has no signed._type' : `its signed._type is ${JSON.stringify(type)}, not "root"`;
}

/**
 * The role whose metadata tuf-js found expired (spec §5.3.10, §5.4.4, §5.5.6, §5.6.5), whether it
 * threw its ExpiredMetadataError or wrapped it in the text of a RuntimeError ("Unable to load snapshot
 * metadata error Error: Final timestamp.json is expired").
 */
function expiredRole(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : '';
  const role = /(\w+)\.json is expired\b/.exec(message)?.[1];
  return error instanceof ExpiredMetadataError ? (role ?? 'metadata') : error instanceof BulwarkError ? undefined : role;
}

/** Beyond this, a clock ahead of the source's is worth naming (Date headers have one-second steps, answers take time). */
const CLOCK_TOLERANCE_MS = 60_000;

/** "2 days", "5 hours", "12 minutes". */
function span(ms: number): string {
  const [n, unit] = ms >= 86_400_000 ? [ms / 86_400_000, 'day'] : ms >= 3_600_000 ? [ms / 3_600_000, 'hour'] : [ms / 60_000, 'minute'];
  const rounded = Math.round(n as number);
  return `${rounded} ${unit}${rounded === 1 ? '' : 's'}`;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function isRoot(bytes: Buffer): boolean {
  return rootProblem(bytes) === undefined;
}

export class UpdateSource {
  private readonly updater: Updater;
  private readonly limits: Limits;
  readonly metadataDir: string;
  /** The root.json this source was imported with. */
  readonly trustedRootBytes: Buffer;
  /** Set once refresh() has verified fresh metadata and the catalogue. */
  refreshed = false;
  /** Root versions downloaded (and, once refreshed, verified) by the last refresh, by version: a server relays them. */
  readonly newRoots = new Map<number, Buffer>();
  /** Each role's metadata as last downloaded, verified or not: when it is found expired, by when it was valid. */
  private readonly downloaded = new Map<string, Buffer>();
  /** The fetcher's last failure: tuf-js keeps only its text when it wraps it ("Unable to load snapshot metadata error …"). */
  private fetchFailure: unknown;
  private readonly fetcher: HttpFetcher;

  constructor(options: SourceOptions) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.fetcher = options.fetcher;
    const base = checkSourceUrl(options.url).href.replace(/\/?$/, '/');
    let rootBytes: Buffer;
    try {
      rootBytes = fs.readFileSync(options.trustedRoot);
    } catch (cause) {
      throw new UsageError(`cannot read the trusted root ${options.trustedRoot}`, { cause });
    }
    // One cache per (source, trusted root): importing another root starts from that root.
    const key = crypto.createHash('sha256').update(base).update(rootBytes).digest('hex').slice(0, 16);
    this.metadataDir = path.join(options.cacheDir, key);
    fs.mkdirSync(path.join(this.metadataDir, 'targets'), { recursive: true });
    this.trustedRootBytes = rootBytes;
    if (!isRoot(rootBytes)) {
      throw new UsageError(`${options.trustedRoot} is not a TUF root.json (import the root.json the source's publisher gives out)`);
    }
    // tuf-js persists metadata with a plain writeFileSync, so a crash can leave a torn root.json.
    // Re-seeding from the imported root is safe: the client walks the root chain again (spec §5.3).
    const cachedRoot = path.join(this.metadataDir, 'root.json');
    if (!fs.existsSync(cachedRoot) || !isRoot(fs.readFileSync(cachedRoot))) writeFileAtomic(cachedRoot, rootBytes);
    this.updater = new Updater({
      metadataDir: this.metadataDir,
      metadataBaseUrl: new URL('metadata/', base).href,
      targetBaseUrl: new URL('targets/', base).href,
      targetDir: path.join(this.metadataDir, 'targets'),
      fetcher: this.recordingRoots(options.fetcher),
      config: {
        rootMaxLength: this.limits.maxRootBytes,
        timestampMaxLength: this.limits.maxTimestampBytes,
        snapshotMaxLength: this.limits.maxSnapshotBytes,
        targetsMaxLength: this.limits.maxTargetsBytes,
      },
    });
  }

  /**
   * The fetcher as tuf-js sees it, keeping the bytes of each new root version it downloads: tuf-js
   * persists only the newest, and agents that trust an older root walk the whole chain (spec §5.3.3).
   * A root is kept whatever happens; only a refresh that succeeds vouches for it.
   */
  private recordingRoots(fetcher: HttpFetcher): Fetcher {
    const failed = (error: unknown) => {
      this.fetchFailure = error;
      throw error;
    };
    return {
      downloadFile: (url, maxLength, handler) => fetcher.downloadFile(url, maxLength, handler).catch(failed),
      downloadBytes: async (url, maxLength) => {
        const bytes = await fetcher.downloadBytes(url, maxLength).catch(failed);
        const version = /\/(\d+)\.root\.json$/.exec(new URL(url).pathname)?.[1];
        if (version) this.newRoots.set(Number(version), bytes);
        const role = /\/(?:\d+\.)?(\w+)\.json$/.exec(new URL(url).pathname)?.[1];
        if (role) this.downloaded.set(role, bytes);
        return bytes;
      },
    };
  }

  /** Our error for what tuf-js threw: its wrapped fetch failures unwrapped, and expiry told from a clock set wrong. */
  private explain(error: unknown, what: string): BulwarkError {
    const role = expiredRole(error);
    if (role) return this.expired(role);
    // tuf-js turned the fetcher's error into text: the fetcher's own error says it better (and carries its code).
    const failure = this.fetchFailure;
    if (failure instanceof Error && error instanceof Error && !(error instanceof BulwarkError) && error.message.includes(failure.message)) return translate(failure, what);
    return translate(error, what);
  }

  /**
   * Metadata that looks expired: either the source's publisher stopped re-signing it (a freeze, spec
   * §5.4.4), or this machine's clock is ahead. The source's own clock (its HTTP Date header) tells
   * which: metadata still valid by the source's clock means ours is wrong.
   */
  private expired(role: string): BulwarkError {
    let expires: number | undefined;
    try {
      const bytes = this.downloaded.get(role) ?? fs.readFileSync(path.join(this.metadataDir, `${role}.json`));
      expires = Date.parse((JSON.parse(bytes.toString('utf8')) as { signed?: { expires?: string } }).signed?.expires ?? '');
    } catch {
      // unknown: judged by the clocks alone
    }
    if (!Number.isFinite(expires)) expires = undefined;
    const clock = this.fetcher.serverClock;
    const now = Date.now();
    const ahead = clock ? clock.local - clock.server : undefined;
    const clocks = clock ? `this machine's clock reads ${iso(now)}, the source's ${iso(now - ahead!)}` : `this machine's clock reads ${iso(now)}`;
    const when = expires !== undefined ? `${role}.json expired at ${iso(expires)}` : `${role}.json is expired`;
    if (clock && ahead! > CLOCK_TOLERANCE_MS && (expires === undefined || expires > now - ahead!)) {
      return new ClockError(
        `this machine's clock is ${span(ahead!)} ahead of the update source (${clock.origin}): ${clocks}, and by the source's clock its signed ${role}.json is ${expires !== undefined ? `valid until ${iso(expires)}` : 'still valid'}. Set this machine's clock right (let NTP keep it), then update again`,
      );
    }
    // (tuf-js's own words, "Final timestamp.json is expired", add nothing to these.)
    return new MetadataError(`the source's signed metadata has expired (${when}; ${clocks}); its publisher must re-sign it`);
  }

  /** The signed targets metadata and the catalogue, as verified by the last refresh: what vouches for an install. */
  signedEvidence(): { targets: Buffer; catalogue: Buffer; metadataDir: string } {
    return { targets: fs.readFileSync(path.join(this.metadataDir, 'targets.json')), catalogue: fs.readFileSync(this.catalogueFile), metadataDir: this.metadataDir };
  }

  /** The verified catalogue's file (after refresh()). */
  get catalogueFile(): string {
    return path.join(this.metadataDir, 'targets', CATALOGUE_TARGET);
  }

  /** TUF spec §5.3–5.6: update root, timestamp, snapshot and targets, then read the catalogue. */
  async refresh(): Promise<Catalogue> {
    this.refreshed = false;
    this.newRoots.clear();
    this.downloaded.clear();
    this.fetchFailure = undefined;
    try {
      await this.updater.refresh();
    } catch (error) {
      throw this.explain(error, 'metadata');
    }
    const info = await this.targetInfo(CATALOGUE_TARGET);
    if (info.length > this.limits.maxCatalogueBytes) throw new SourceError(`the catalogue is larger than ${this.limits.maxCatalogueBytes} bytes`);
    const cached = path.join(this.metadataDir, 'targets', CATALOGUE_TARGET);
    try {
      // Spec §5.7: a cached target whose hash still matches needs no download.
      if (!(await this.updater.findCachedTarget(info, cached))) await this.updater.downloadTarget(info, cached);
    } catch (error) {
      throw this.explain(error, 'the catalogue');
    }
    const catalogue = parseCatalogue(fs.readFileSync(cached));
    this.refreshed = true;
    return catalogue;
  }

  async targetInfo(targetPath: string): Promise<TargetFile> {
    let info: TargetFile | undefined;
    try {
      info = await this.updater.getTargetInfo(targetPath);
    } catch (error) {
      throw this.explain(error, targetPath);
    }
    if (!info) throw new SourceError(`the source's signed metadata does not list ${targetPath}`);
    return info;
  }

  /** Download a target to `file`; it is written only after its signed length and hash matched. */
  async download(targetPath: string, file: string, maxBytes: number): Promise<TargetFile> {
    const info = await this.targetInfo(targetPath);
    if (info.length > maxBytes) throw new SourceError(`${targetPath} is ${info.length} bytes, over the ${maxBytes}-byte limit`);
    try {
      await this.updater.downloadTarget(info, file);
    } catch (error) {
      fs.rmSync(file, { force: true });
      throw this.explain(error, targetPath);
    }
    return info;
  }
}
