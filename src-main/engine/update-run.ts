// One update run, top to bottom:
//   1. refresh the signed metadata and read the catalogue;
//   2. for each component, choose: nothing (up to date), incremental (a pattern from the installed
//      version exists), or full (otherwise, or when the incremental fails), and say why;
//   3. download to a temp file (checked against its signed hash), rebuild or decompress, verify the
//      result against the signed hash of the full file;
//   4. write it into the store and activate it (atomic rename).
// Temp files go through one cleanup path: the run's temp directory is emptied when it ends.
//
// An agent updating from its Bulwark server also gets the server's offers (ServerOffers): files the
// server made itself (an incremental from a version upstream published none for, or a full file it
// compressed). They carry no signature of their own, so each is accepted only when the file rebuilt
// from it matches the signed catalogue's length and hash, and is never downloaded beyond a bound.
import fs from 'node:fs';
import path from 'node:path';
import { parseCatalogue, type Catalogue, type CatalogueComponent, type IncrementalEntry } from './catalogue.js';
import { applyPatch, decompressFull } from './codec.js';
import { BulwarkError, CooldownError, describeError, DowngradeError, errorCodeOf, NetworkError, ProxyAuthError, SourceError, VerificationError } from './errors.js';
import type { Evidence } from './evidence.js';
import type { HttpFetcher } from './fetcher.js';
import { sweepTempFiles, tempPathFor } from './files.js';
import type { ComponentRun, RunRecord, Trigger } from './history.js';
import { INCREMENTAL_WORTH_RATIO, type Limits } from './limits.js';
import type { UpdateSource } from './source.js';
import type { ComponentStore, InstalledComponent, InstallMethod, StoreProblem } from './store.js';

export type RunProgress =
  | { stage: 'checking' }
  | { stage: 'downloading'; component: string; index: number; total: number; method: InstallMethod }
  | { stage: 'applying'; component: string; index: number; total: number }
  | { stage: 'component-done'; component: ComponentRun; index: number; total: number };

/** What a Bulwark server offers an agent beside the signed targets (read from its advisory index). */
export interface ServerOffers {
  /** Whether the server has installed the catalogue's latest version itself (if not, the agent waits for it). */
  holdsLatest(entry: CatalogueComponent): boolean;
  /** Whether the server holds this signed target (it relays only what it verified). */
  hasSigned(target: string): boolean;
  /** URL of a server-made incremental from the installed version to the catalogue's latest. */
  incremental(entry: CatalogueComponent, installed: InstalledComponent): string | undefined;
  /** URL of a server-made full file (a zstd frame) of the catalogue's latest. */
  full(entry: CatalogueComponent): string | undefined;
  /** URL of a server-made full file of an older version the server keeps, by content (for a rollback). */
  fullOf(id: string, sha256: string): string | undefined;
}

export interface RunContext {
  source: UpdateSource;
  fetcher: HttpFetcher;
  store: ComponentStore;
  limits: Limits;
  tempDir: string;
  onProgress?: (progress: RunProgress) => void;
  /** Agents: the server's offers, read once the signed metadata is fresh. */
  offers?: () => Promise<ServerOffers | undefined>;
  /** Servers: a signed target was downloaded and verified (kept for relaying to agents). */
  onVerifiedTarget?: (target: string, file: string) => void;
  /** Check every active file by its SHA-256 before the run (a process's first run); by size and time otherwise. */
  verifyStore?: boolean;
  /** Pinned components and the version each stays at (this store's own pins, or an agent's server's). */
  pins?: ReadonlyMap<string, number>;
  /** Leave every installed component where it is (the rollout has not reached this agent's ring yet). */
  hold?: boolean;
  /** Where the vendor's word for each installed version is kept (and checked for a rollback). */
  evidence?: Evidence;
  now?: () => Date;
}

/** Errors after which another download from the same source is pointless in this run. */
function sourceUnreachable(error: unknown): boolean {
  return error instanceof NetworkError || error instanceof CooldownError || error instanceof ProxyAuthError;
}

export async function runUpdate(ctx: RunContext, trigger: Trigger): Promise<RunRecord> {
  const now = ctx.now ?? (() => new Date());
  const startedAt = now();
  const bytesAtStart = ctx.fetcher.bytesReceived;
  fs.mkdirSync(ctx.tempDir, { recursive: true });
  sweepTempFiles(ctx.tempDir);
  ctx.store.recover();
  const finish = (fields: Pick<RunRecord, 'result' | 'components' | 'errorCode'> & { error?: unknown }): RunRecord => {
    sweepTempFiles(ctx.tempDir);
    const record: RunRecord = {
      trigger,
      startedAt: startedAt.toISOString(),
      finishedAt: now().toISOString(),
      result: fields.result,
      bytes: ctx.fetcher.bytesReceived - bytesAtStart,
      components: fields.components,
    };
    if (fields.error !== undefined) {
      record.error = describeError(fields.error);
      const code = fields.errorCode ?? errorCodeOf(fields.error);
      if (code) record.errorCode = code;
    }
    return record;
  };

  ctx.onProgress?.({ stage: 'checking' });
  let catalogue: Catalogue;
  try {
    catalogue = await ctx.source.refresh();
  } catch (error) {
    return finish({ result: 'failed', components: [], error });
  }

  let offers: ServerOffers | undefined;
  try {
    offers = await ctx.offers?.();
  } catch (error) {
    // Only advice: without it, the agent takes the signed files and reports any it cannot get.
    if (sourceUnreachable(error)) return finish({ result: 'failed', components: [], error });
  }

  // A damaged or missing active file, or a damaged record of it, is repaired by this run (in full) and said.
  const problems = new Map(ctx.store.problems(ctx.verifyStore ?? false).map((p) => [p.id, p]));

  // The version each component is to reach; a partial download of any other version (superseded by a
  // newer one, pinned away from) or of one installed by another way is of no more use: dropped now,
  // and again once this run has installed what it could.
  const target = new Map(catalogue.components.map((entry) => [entry.id, ctx.pins?.get(entry.id) ?? entry.latest]));
  const wanted = (id: string, version: number) => target.get(id) === version && ctx.store.active(id)?.version !== version;
  ctx.fetcher.dropPartials(wanted);

  const runs: ComponentRun[] = [];
  const total = catalogue.components.length;
  let unreachable: unknown;
  for (const [index, entry] of catalogue.components.entries()) {
    // Its downloads' partial files are named for the version they are of.
    ctx.fetcher.partOf = { id: entry.id, version: target.get(entry.id)! };
    const { run, cause } = unreachable
      ? { run: skipped(ctx.store.active(entry.id), entry, unreachable), cause: undefined }
      : await updateComponent(ctx, entry, index, total, now, offers, problems.get(entry.id));
    ctx.fetcher.partOf = undefined;
    if (sourceUnreachable(cause)) unreachable = cause;
    runs.push(run);
    ctx.onProgress?.({ stage: 'component-done', component: run, index, total });
  }
  ctx.fetcher.dropPartials(wanted);
  const failed = runs.filter((r) => r.result === 'failed');
  return finish({
    result: failed.length ? 'failed' : 'ok',
    components: runs,
    // The first failure's code too, so the reminders can say what kind of failure it was (a full disk, the source gone).
    ...(failed.length ? { error: `${failed.map((r) => r.id).join(', ')} failed: ${failed[0]!.error}`, ...(failed[0]!.errorCode ? { errorCode: failed[0]!.errorCode } : {}) } : {}),
  });
}

function skipped(installed: InstalledComponent | undefined, entry: CatalogueComponent, cause: unknown): ComponentRun {
  return {
    id: entry.id,
    previousVersion: installed?.version ?? null,
    version: installed?.version ?? null,
    offeredVersion: entry.latest,
    method: 'none',
    reason: 'skipped: the source became unreachable earlier in this run',
    bytes: 0,
    fullBytes: entry.full.length,
    durationMs: 0,
    result: 'failed',
    error: describeError(cause),
    ...(cause instanceof BulwarkError ? { errorCode: cause.code } : {}),
  };
}

/** One way to the latest version of a component, in the order they are tried. */
type Way =
  | { method: 'incremental'; from: number; signed: true; target: string }
  | { method: 'incremental'; from: number; signed: false; url: string }
  | { method: 'full'; signed: true; target: string }
  | { method: 'full'; signed: false; url: string };

function describeWay(way: Way, latest: number): string {
  if (way.method === 'full') return way.signed ? 'the full file' : "the server's full file";
  return way.signed ? `incremental v_${way.from}.${latest}` : `the server's incremental from ${way.from}`;
}

async function updateComponent(
  ctx: RunContext,
  entry: CatalogueComponent,
  index: number,
  total: number,
  now: () => Date,
  offers: ServerOffers | undefined,
  problem: StoreProblem | undefined,
): Promise<{ run: ComponentRun; cause?: unknown }> {
  const started = Date.now();
  const bytesBefore = ctx.fetcher.bytesReceived;
  // A damaged active file is no base for an incremental, and not "up to date" either.
  const installed = problem ? undefined : ctx.store.active(entry.id);
  // Never below what this store holds, even when the record of it is damaged.
  const floor = installed?.version ?? problem?.version ?? ctx.store.versions(entry.id).at(-1);
  const outcome = ({ cause, ...fields }: Pick<ComponentRun, 'method' | 'reason' | 'version' | 'result'> & { cause?: unknown }) => {
    const run: ComponentRun = {
      id: entry.id,
      previousVersion: installed?.version ?? problem?.version ?? null,
      offeredVersion: entry.latest,
      ...(problem ? { problem: problem.message } : {}),
      bytes: ctx.fetcher.bytesReceived - bytesBefore,
      fullBytes: entry.full.length,
      durationMs: Date.now() - started,
      ...fields,
    };
    if (cause !== undefined) {
      run.error = describeError(cause);
      const code = errorCodeOf(cause);
      if (code) run.errorCode = code;
    }
    return { run, cause };
  };

  if (entry.full.length > ctx.limits.maxFileBytes) {
    return outcome({ method: 'none', reason: 'over the size limit', version: installed?.version ?? null, result: 'failed', cause: new SourceError(`${entry.id} ${entry.latest} is ${entry.full.length} bytes, over the ${ctx.limits.maxFileBytes}-byte limit`) });
  }
  const pin = ctx.pins?.get(entry.id);
  if (pin !== undefined && pin !== entry.latest) {
    try {
      return outcome(await followPin(ctx, entry, installed, pin, offers, now, index, total));
    } catch (error) {
      return outcome({ method: 'none', reason: `pinned at ${pin}`, version: installed?.version ?? null, result: 'failed', cause: error });
    }
  }
  if (ctx.hold && installed && installed.version < entry.latest) {
    return outcome({ method: 'none', reason: `held at ${installed.version}: the server's rollout has not reached this agent's ring yet`, version: installed.version, result: 'ok' });
  }
  if (floor !== undefined && entry.latest < floor) {
    return outcome({ method: 'none', reason: 'the source offers an older version', version: installed?.version ?? null, result: 'failed', cause: new DowngradeError(floor, entry.latest) });
  }
  if (installed?.version === entry.latest) {
    return outcome({ method: 'none', reason: 'up to date', version: installed.version, result: 'ok' });
  }
  try {
    // An earlier run was stopped after writing this verified version but before activating it.
    if (ctx.store.hasVerified(entry.id, entry.latest, entry.full.sha256)) {
      if (!ctx.evidence?.has(entry.id, entry.latest)) ctx.evidence?.keep(entry.id, entry.latest, ctx.source.signedEvidence());
      ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method: 'full' });
      const why = problem ? `${problem.message}; the stored file matches the signed hash: re-activated it` : 'completed an interrupted install (file already verified in the store)';
      return outcome({ method: 'none', reason: why, version: entry.latest, result: 'ok' });
    }
  } catch (error) {
    return outcome({ method: 'none', reason: 'update failed', version: installed?.version ?? null, result: 'failed', cause: error });
  }

  if (offers && !offers.holdsLatest(entry)) {
    // The server has not finished installing this version itself; nothing to take from it yet.
    return outcome({ method: 'none', reason: `waiting for the server, which does not hold ${entry.id} ${entry.latest} yet`, version: installed?.version ?? null, result: 'ok' });
  }

  // Choose: the incremental from the installed version (signed, then the server's), then the full file.
  const { ways, whyNoIncremental } = await waysToLatest(ctx, entry, installed, offers);
  const failures: string[] = problem ? [`${problem.message}: reinstalled in full`] : whyNoIncremental ? [whyNoIncremental] : [];
  let lastError: unknown;
  for (const way of ways) {
    try {
      const data = way.method === 'incremental' ? await rebuild(ctx, entry, installed!, way, index, total) : await downloadFull(ctx, entry, way, index, total);
      await ctx.store.writeVerified(entry.id, entry.latest, data, entry.full, `the file rebuilt from ${describeWay(way, entry.latest)}`);
      ctx.evidence?.keep(entry.id, entry.latest, ctx.source.signedEvidence(), way.method);
      ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method: way.method });
      const how = way.method === 'incremental' ? `incremental from ${installed!.version}${way.signed ? '' : ' (made by the server, verified against the signed hash)'}` : undefined;
      const reason = [how, ...failures].filter(Boolean).join('; ') || 'full file';
      return outcome({ method: way.method, reason, version: entry.latest, result: 'ok' });
    } catch (error) {
      if (sourceUnreachable(error)) return outcome({ method: 'none', reason: 'update failed', version: installed?.version ?? null, result: 'failed', cause: error });
      failures.push(`${describeWay(way, entry.latest)} unusable (${describeError(error)})`);
      lastError = error;
    }
  }
  if (!ways.some((w) => w.method === 'full')) lastError = new SourceError(`the server does not have ${entry.id} ${entry.latest} yet`);
  return outcome({ method: 'none', reason: failures.join('; ') || 'update failed', version: installed?.version ?? null, result: 'failed', cause: lastError });
}

/** The ways to the latest version, best first, and why there is no incremental when there is none. */
async function waysToLatest(
  ctx: RunContext,
  entry: CatalogueComponent,
  installed: InstalledComponent | undefined,
  offers: ServerOffers | undefined,
): Promise<{ ways: Way[]; whyNoIncremental?: string }> {
  const ways: Way[] = [];
  let whyNoIncremental: string | undefined;
  if (!installed) whyNoIncremental = 'no installed version';
  else if (!entry.duplication) whyNoIncremental = 'full-only component';
  else {
    const listed = entry.incrementals.find((i) => i.from === installed.version);
    const unusable = listed && (!offers || offers.hasSigned(listed.target)) ? await whyIncrementalUnusable(ctx, listed, entry) : undefined;
    if (listed && unusable) whyNoIncremental = `incremental v_${listed.from}.${entry.latest} unusable (${unusable})`;
    else if (listed && (!offers || offers.hasSigned(listed.target))) ways.push({ method: 'incremental', from: installed.version, signed: true, target: listed.target });
    const made = offers?.incremental(entry, installed);
    if (made) ways.push({ method: 'incremental', from: installed.version, signed: false, url: made });
    if (!ways.length && !whyNoIncremental) {
      const oldest = entry.incrementals.length ? Math.min(...entry.incrementals.map((i) => i.from)) : undefined;
      whyNoIncremental = oldest !== undefined && installed.version < oldest ? `too far behind: installed ${installed.version}, incrementals start at ${oldest}` : `no incremental from ${installed.version}`;
    }
  }
  if (!offers || offers.hasSigned(entry.full.target)) ways.push({ method: 'full', signed: true, target: entry.full.target });
  const madeFull = offers?.full(entry);
  if (madeFull) ways.push({ method: 'full', signed: false, url: madeFull });
  return { ways, ...(whyNoIncremental ? { whyNoIncremental } : {}) };
}

/**
 * Why an incremental should not be used, judged from the signed metadata before downloading it:
 * not listed, or not clearly smaller than the compressed full file.
 */
async function whyIncrementalUnusable(ctx: RunContext, incremental: IncrementalEntry, entry: CatalogueComponent): Promise<string | undefined> {
  try {
    const [patch, full] = await Promise.all([ctx.source.targetInfo(incremental.target), ctx.source.targetInfo(entry.full.target)]);
    if (patch.length > full.length * INCREMENTAL_WORTH_RATIO) return `${patch.length} bytes, not clearly smaller than the ${full.length}-byte full file`;
    return undefined;
  } catch (error) {
    if (sourceUnreachable(error)) throw error;
    return describeError(error);
  }
}

/** A signed target, checked against its signed length and hash, in memory. */
async function downloadSigned(ctx: RunContext, target: string): Promise<Buffer> {
  const temp = tempPathFor(path.join(ctx.tempDir, path.basename(target)));
  try {
    await ctx.source.download(target, temp, ctx.limits.maxFileBytes);
    ctx.onVerifiedTarget?.(target, temp);
    return fs.readFileSync(temp);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

/** zstd's worst case for a frame of `n` bytes (ZSTD_COMPRESSBOUND), plus room for the frame header. */
function compressBound(n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? (128 * 1024 - n) >>> 11 : 0) + 64;
}

async function rebuild(ctx: RunContext, entry: CatalogueComponent, installed: InstalledComponent, way: Extract<Way, { method: 'incremental' }>, index: number, total: number): Promise<Buffer> {
  ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'incremental' });
  // A server-made incremental is never allowed to cost more than the full file it stands for.
  const patch = way.signed ? await downloadSigned(ctx, way.target) : await ctx.fetcher.downloadBytes(way.url, entry.full.length);
  ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
  // The base is not re-hashed here: a damaged base yields a result that fails the signed hash,
  // checked as the result is written (ComponentStore.writeVerified), and the full file is taken.
  return applyPatch(fs.readFileSync(installed.path), patch, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, entry.full.length) });
}

async function downloadFull(ctx: RunContext, entry: CatalogueComponent, way: Extract<Way, { method: 'full' }>, index: number, total: number): Promise<Buffer> {
  ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'full' });
  const compressed = way.signed ? await downloadSigned(ctx, way.target) : await ctx.fetcher.downloadBytes(way.url, compressBound(entry.full.length));
  ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
  return decompressFull(compressed, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, entry.full.length) });
}

/**
 * A pinned component whose pin is not the catalogue's latest: stay there, or go back there — the one
 * time a lower version is installed, and only one the vendor vouched for when it was installed here
 * (evidence.ts). Its file comes from the store, or, if no longer kept there, from the agent's server.
 */
async function followPin(
  ctx: RunContext,
  entry: CatalogueComponent,
  installed: InstalledComponent | undefined,
  pin: number,
  offers: ServerOffers | undefined,
  now: () => Date,
  index: number,
  total: number,
): Promise<Pick<ComponentRun, 'method' | 'reason' | 'version' | 'result'>> {
  if (installed?.version === pin) return { method: 'none', reason: `pinned at ${pin}`, version: pin, result: 'ok' };
  const evidence = ctx.evidence?.read(entry.id, pin);
  if (!ctx.evidence || !evidence) throw new VerificationError(`no signed metadata is kept here for ${entry.id} ${pin}, so it cannot be verified: refused`);
  const vouched = parseCatalogue(evidence.catalogue).components.find((c) => c.id === entry.id);
  if (!vouched || vouched.latest !== pin) throw new VerificationError(`the signed metadata kept for ${entry.id} ${pin} does not name that version`);
  const reason = installed && installed.version > pin ? `rolled back from ${installed.version} to the pinned ${pin}` : `moved to the pinned ${pin}`;
  if (!ctx.store.hasVerified(entry.id, pin, vouched.full.sha256)) {
    // Not kept here any more: the server makes the full file of any version it keeps.
    const url = offers?.fullOf(entry.id, vouched.full.sha256);
    if (!url) throw new SourceError(`${entry.id} ${pin} is no longer kept here${offers ? ' nor on the server' : ''}`);
    ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'full' });
    const frame = await ctx.fetcher.downloadBytes(url, compressBound(vouched.full.length));
    ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
    const data = decompressFull(frame, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, vouched.full.length) });
    await ctx.store.writeVerified(entry.id, pin, data, vouched.full, `the server's file of ${entry.id} ${pin}`);
  }
  ctx.evidence.verify(entry.id, pin, vouched.full.sha256, evidence);
  ctx.store.activate(entry.id, pin, { sha256: vouched.full.sha256, length: vouched.full.length, installedAt: now().toISOString(), method: ctx.evidence.method(entry.id, pin) ?? 'full' });
  return { method: 'none', reason, version: pin, result: 'ok' };
}
