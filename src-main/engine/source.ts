// A TUF-verified update source: refreshes metadata with tuf-js (client workflow, TUF spec §5),
// reads the signed catalogue and downloads targets, each checked against its signed length and hash.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LengthOrHashMismatchError } from '@tufjs/models/dist/error.js';
import { Updater, type Fetcher, type TargetFile } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError, ExpiredMetadataError } from 'tuf-js/dist/error.js';
import { CATALOGUE_TARGET, parseCatalogue, type Catalogue } from './catalogue.js';
import { BulwarkError, FileError, HttpStatusError, MetadataError, SourceError, UsageError, VerificationError } from './errors.js';
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
    return new FileError(fsError.path ?? '', `cannot write ${what} to disk: ${fsError.message}`, { cause: err });
  }
  if (err instanceof DownloadLengthMismatchError || err instanceof LengthOrHashMismatchError) {
    return new VerificationError(`${what} does not match its signed length and hash`, { cause: err });
  }
  if (err instanceof ExpiredMetadataError) {
    return new MetadataError(`the source's signed metadata has expired (${err.message}); its publisher must re-sign it`, { cause: err });
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

  constructor(options: SourceOptions) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
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
    return {
      downloadFile: (url, maxLength, handler) => fetcher.downloadFile(url, maxLength, handler),
      downloadBytes: async (url, maxLength) => {
        const bytes = await fetcher.downloadBytes(url, maxLength);
        const version = /\/(\d+)\.root\.json$/.exec(new URL(url).pathname)?.[1];
        if (version) this.newRoots.set(Number(version), bytes);
        return bytes;
      },
    };
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
    try {
      await this.updater.refresh();
    } catch (error) {
      throw translate(error, 'metadata');
    }
    const info = await this.targetInfo(CATALOGUE_TARGET);
    if (info.length > this.limits.maxCatalogueBytes) throw new SourceError(`the catalogue is larger than ${this.limits.maxCatalogueBytes} bytes`);
    const cached = path.join(this.metadataDir, 'targets', CATALOGUE_TARGET);
    try {
      // Spec §5.7: a cached target whose hash still matches needs no download.
      if (!(await this.updater.findCachedTarget(info, cached))) await this.updater.downloadTarget(info, cached);
    } catch (error) {
      throw translate(error, 'the catalogue');
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
      throw translate(error, targetPath);
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
      throw translate(error, targetPath);
    }
    return info;
  }
}
