// One update run, top to bottom:
//   1. refresh the signed metadata and read the catalogue;
//   2. for each component, choose: nothing (up to date), incremental (a pattern from the installed
//      version exists), or full (otherwise, or when the incremental fails), and say why;
//   3. download to a temp file (checked against its signed hash), rebuild or decompress, verify the
//      result against the signed hash of the full file;
//   4. write it into the store; hand it to the engine that uses it, where one is configured (check,
//      place, reload, health: consumers.ts); activate it (atomic rename). A version its engine refuses
//      is not activated: the previous one stays, in the engine and in the store.
// Temp files go through one cleanup path: the run's temp directory is emptied when it ends.
//
// An agent updating from its Bulwark server also gets the server's offers (ServerOffers): files the
// server made itself (an incremental from a version upstream published none for, or a full file it
// compressed). They carry no signature of their own, so each is accepted only when the file rebuilt
// from it matches the signed catalogue's length and hash, and is never downloaded beyond a bound.
import fs from 'node:fs';
import path from 'node:path';
import { parseCatalogue, type Catalogue, type CatalogueComponent, type IncrementalEntry } from './catalogue.js';
import { applyPatch, decompressFull, knownFullCodec, knownPatchFormat } from './codec.js';
import type { ConsumerFailure, Handoff } from './consumers.js';
import { BulwarkError, ConsumerError, CooldownError, describeError, DowngradeError, errorCodeOf, NetworkError, ProxyAuthError, SourceError, VerificationError } from './errors.js';
import type { Evidence } from './evidence.js';
import type { HttpFetcher } from './fetcher.js';
import { sweepTempFiles, tempPathFor } from './files.js';
import { runFailure, type ComponentRun, type RunRecord, type Trigger } from './history.js';
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
  /** URL of a server-made full file of the version the server serves, by content (for a rollback to it). */
  fullOf(id: string, sha256: string): string | undefined;
  /** The vendor's signed metadata the server kept with a version it installed (checked here against the trusted root before use). */
  evidence?(id: string, version: number): Promise<{ targets: Buffer; catalogue: Buffer } | undefined>;
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
  /** Check every active file by its SHA-256 before the run (at start-up and daily); by size, time and inode otherwise. */
  verifyStore?: boolean;
  /** Pinned components and the version each stays at (this store's own pins, or an agent's server's). */
  pins?: ReadonlyMap<string, number>;
  /** Leave every installed component where it is (the rollout has not reached this agent's ring yet). */
  hold?: boolean;
  /** While held: the last release that passed the rollout; a component below its version (or not installed) moves up to it. */
  holdAt?: ReadonlyMap<string, number>;
  /** A hold this agent no longer obeys (held longer than its maximum): components behind go to the latest, saying so. */
  holdLapsed?: { since: string; maxHoldSeconds: number };
  /** Where the vendor's word for each installed version is kept (and checked for a rollback). */
  evidence?: Evidence;
  /** The engines that use the components on this machine: each version is handed over before it is activated. */
  handoff?: Handoff;
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
    const failure = runFailure(record);
    if (failure) record.failure = failure;
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
  const problems = new Map(ctx.store.problems(ctx.verifyStore ?? false, now()).map((p) => [p.id, p]));

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
    if (run.result === 'ok') await settleConsumer(ctx, run);
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

/**
 * The engine must have the active version even when this run changed nothing (a consumer configured
 * since, or its file replaced or removed by someone): hand it over again.
 */
async function settleConsumer(ctx: RunContext, run: ComponentRun): Promise<void> {
  const active = ctx.store.active(run.id);
  if (!ctx.handoff || !active || ctx.handoff.settled(run.id, active)) return;
  const refusal = ctx.handoff.refused(run.id, active.version, active.sha256);
  try {
    if (refusal) throw refused(run.id, active.version, refusal);
    await ctx.handoff.hand(run.id, { version: active.version, sha256: active.sha256, file: active.path });
    run.reason += `; handed to its engine again`;
  } catch (error) {
    run.result = 'failed';
    run.error = describeError(error);
    if (error instanceof BulwarkError) run.errorCode = error.code;
    if (error instanceof ConsumerError) run.consumer = consumerFailure(error, active.version);
  }
}

/** An error Node raised for a system call (EISDIR, ENOSPC, EROFS, EACCES...). */
function isSystemError(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string' && /^E[A-Z]+$/.test(String((error as NodeJS.ErrnoException).code));
}

/** The error of a version its engine refused here before (with the time it was refused). */
function refused(id: string, version: number, refusal: ConsumerFailure): ConsumerError {
  return new ConsumerError(refusal.stage, refusal.kind, refusal.engine, `${id} ${version} was refused by ${refusal.engine} at ${refusal.at}: ${refusal.message}`, { engineMessage: refusal.message, at: refusal.at });
}

function consumerFailure(error: ConsumerError, version: number): NonNullable<ComponentRun['consumer']> {
  return { version, engine: error.engine, stage: error.stage, kind: error.kind, message: error.engineMessage ?? error.message, at: error.at };
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
  | { method: 'incremental'; from: number; signed: true; target: string; format?: string }
  | { method: 'incremental'; from: number; signed: false; url: string }
  | { method: 'full'; signed: true; target: string; codec: string }
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
  const outcome = ({ cause, candidate, ...fields }: Pick<ComponentRun, 'method' | 'reason' | 'version' | 'result' | 'order'> & { cause?: unknown; candidate?: number }) => {
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
      // Ours, or a file system's refusal (a directory in the way, a full or read-only disk, permissions): this machine's.
      const code = errorCodeOf(cause) ?? (isSystemError(cause) ? 'ERR_FILE' : undefined);
      if (code) run.errorCode = code;
      if (cause instanceof ConsumerError) run.consumer = consumerFailure(cause, candidate ?? entry.latest);
    }
    return { run, cause };
  };

  if (entry.full.length > ctx.limits.maxFileBytes) {
    return outcome({ method: 'none', reason: 'over the size limit', version: installed?.version ?? null, result: 'failed', cause: new SourceError(`${entry.id} ${entry.latest} is ${entry.full.length} bytes, over the ${ctx.limits.maxFileBytes}-byte limit`) });
  }
  const pin = ctx.pins?.get(entry.id);
  if (pin !== undefined && pin !== entry.latest) {
    try {
      const followed = await followPin(ctx, entry, installed, pin, offers, now, index, total);
      return outcome({ ...followed, ...(pin < entry.latest ? { order: 'pin' as const } : {}) });
    } catch (error) {
      return outcome({ method: 'none', reason: `pinned at ${pin}`, version: installed?.version ?? null, result: 'failed', cause: error, candidate: pin });
    }
  }
  // Held (and kept behind the vendor's latest: order 'hold', on the agent's --max-hold clock).
  if (ctx.hold && (!installed || installed.version < entry.latest)) {
    const passed = ctx.holdAt?.get(entry.id);
    if (passed === undefined || passed < entry.latest) {
      if (installed && (passed === undefined || installed.version >= passed)) {
        return outcome({ method: 'none', reason: `held at ${installed.version}: the server's rollout has not reached this agent's ring yet`, version: installed.version, result: 'ok', order: 'hold' });
      }
      if (passed === undefined) {
        return outcome({ method: 'none', reason: "held: the server's rollout has not reached this agent's ring yet, and no release of it has passed the rollout", version: null, result: 'ok', order: 'hold' });
      }
      // Less than the last release that passed (a new agent, or one that was away): up to that release, not the one being rolled out.
      try {
        return outcome({ ...(await installVouched(ctx, entry, installed, passed, offers, now, index, total)), order: 'hold' });
      } catch (error) {
        return outcome({ method: 'none', reason: `held: taking ${passed}, the last release that passed the server's rollout, failed`, version: installed?.version ?? null, result: 'failed', cause: error, candidate: passed });
      }
    }
  }
  // Past its maximum, a hold is not obeyed: the vendor's latest is taken, and the reason says so.
  const lapsed = ctx.holdLapsed && (!installed || installed.version < entry.latest) ? ctx.holdLapsed : undefined;
  const lapseNote = lapsed ? `hold lapsed: the server has kept this agent behind the vendor's latest since ${lapsed.since}, longer than its maximum of ${formatDuration(lapsed.maxHoldSeconds)} (--max-hold), so it takes the vendor's latest` : undefined;
  if (floor !== undefined && entry.latest < floor) {
    return outcome({ method: 'none', reason: 'the source offers an older version', version: installed?.version ?? null, result: 'failed', cause: new DowngradeError(floor, entry.latest) });
  }
  if (installed?.version === entry.latest) {
    return outcome({ method: 'none', reason: 'up to date', version: installed.version, result: 'ok' });
  }
  // Its engine refused this very version here before: no retry every poll, only when a newer one comes.
  const refusal = ctx.handoff?.refused(entry.id, entry.latest, entry.full.sha256);
  if (refusal) {
    return outcome({ method: 'none', reason: `refused by ${refusal.engine} (${refusal.stage}); waiting for a newer version`, version: installed?.version ?? null, result: 'failed', cause: refused(entry.id, entry.latest, refusal) });
  }
  try {
    // An earlier run was stopped after writing this verified version but before activating it.
    if (ctx.store.hasVerified(entry.id, entry.latest, entry.full.sha256)) {
      await ctx.handoff?.hand(entry.id, { version: entry.latest, sha256: entry.full.sha256, file: ctx.store.pathOf(entry.id, entry.latest) });
      if (!ctx.evidence?.has(entry.id, entry.latest)) ctx.evidence?.keep(entry.id, entry.latest, ctx.source.signedEvidence());
      ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method: 'full' });
      const why = problem ? `${problem.message}; the stored file matches the signed hash: re-activated it` : 'completed an interrupted install (file already verified in the store)';
      return outcome({ method: 'none', reason: why, version: entry.latest, result: 'ok' });
    }
  } catch (error) {
    return outcome({ method: 'none', reason: 'update failed', version: installed?.version ?? null, result: 'failed', cause: error });
  }

  if (offers && !offers.holdsLatest(entry) && !lapsed) {
    // The server has not finished installing this version itself; nothing to take from it yet. Its
    // index is unsigned, so this too is a hold, bounded like one: past the agent's maximum, the run
    // tries the files anyway (and fails, visibly, if the server has none of them).
    return outcome({ method: 'none', reason: `waiting for the server, which does not hold ${entry.id} ${entry.latest} yet`, version: installed?.version ?? null, result: 'ok', order: 'wait' });
  }

  // Choose: the incremental from the installed version (signed, then the server's), then the full file.
  const { ways, whyNoIncremental } = await waysToLatest(ctx, entry, installed, offers);
  const failures: string[] = problem ? [`${problem.message}: reinstalled in full`] : whyNoIncremental ? [whyNoIncremental] : [];
  let lastError: unknown;
  for (const way of ways) {
    try {
      const data = way.method === 'incremental' ? await rebuild(ctx, entry, installed!, way, index, total) : await downloadFull(ctx, entry, way, index, total);
      await ctx.store.writeVerified(entry.id, entry.latest, data, entry.full, `the file rebuilt from ${describeWay(way, entry.latest)}`);
      // Verified, and now to the engine that uses it: a version it refuses is not activated.
      await ctx.handoff?.hand(entry.id, { version: entry.latest, sha256: entry.full.sha256, file: ctx.store.pathOf(entry.id, entry.latest) });
      ctx.evidence?.keep(entry.id, entry.latest, ctx.source.signedEvidence(), way.method);
      ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method: way.method });
      const how = way.method === 'incremental' ? `incremental from ${installed!.version}${way.signed ? '' : ' (made by the server, verified against the signed hash)'}` : undefined;
      const reason = [lapseNote, how, ...failures].filter(Boolean).join('; ') || 'full file';
      return outcome({ method: way.method, reason, version: entry.latest, result: 'ok', ...(lapsed ? { order: 'hold-lapsed' as const } : {}) });
    } catch (error) {
      if (sourceUnreachable(error)) return outcome({ method: 'none', reason: 'update failed', version: installed?.version ?? null, result: 'failed', cause: error, ...(lapsed ? { order: 'hold-lapsed' as const } : {}) });
      // The engine's answer is about the content, whichever way it came: no other way is tried.
      if (error instanceof ConsumerError) return outcome({ method: 'none', reason: `not taken by ${error.engine} (${error.stage})`, version: installed?.version ?? null, result: 'failed', cause: error });
      failures.push(`${describeWay(way, entry.latest)} unusable (${describeError(error)})`);
      lastError = error;
    }
  }
  if (!ways.some((w) => w.method === 'full')) lastError = new SourceError(`the server does not have ${entry.id} ${entry.latest} yet`);
  // A lapsed hold that could not take the latest stays a lapsed hold (its clock is not started over).
  return outcome({ method: 'none', reason: [lapseNote, ...failures].filter(Boolean).join('; ') || 'update failed', version: installed?.version ?? null, result: 'failed', cause: lastError, ...(lapsed ? { order: 'hold-lapsed' as const } : {}) });
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
    else if (listed && (!offers || offers.hasSigned(listed.target))) ways.push({ method: 'incremental', from: installed.version, signed: true, target: listed.target, ...(listed.format ? { format: listed.format } : {}) });
    const made = offers?.incremental(entry, installed);
    if (made) ways.push({ method: 'incremental', from: installed.version, signed: false, url: made });
    if (!ways.length && !whyNoIncremental) {
      const oldest = entry.incrementals.length ? Math.min(...entry.incrementals.map((i) => i.from)) : undefined;
      whyNoIncremental = oldest !== undefined && installed.version < oldest ? `too far behind: installed ${installed.version}, incrementals start at ${oldest}` : `no incremental from ${installed.version}`;
    }
  }
  // The compact coding first when this version decodes it; `target` after it (zstd when a compact one is listed).
  const compact = entry.full.compact;
  if (compact && knownFullCodec(compact.codec) && (!offers || offers.hasSigned(compact.target))) ways.push({ method: 'full', signed: true, target: compact.target, codec: compact.codec });
  if (!offers || offers.hasSigned(entry.full.target)) ways.push({ method: 'full', signed: true, target: entry.full.target, codec: entry.full.codec ?? 'zstd' });
  const madeFull = offers?.full(entry);
  if (madeFull) ways.push({ method: 'full', signed: false, url: madeFull });
  return { ways, ...(whyNoIncremental ? { whyNoIncremental } : {}) };
}

/** The full file this version would take: the compact coding when it decodes it. */
function smallestFull(entry: CatalogueComponent): string {
  return entry.full.compact && knownFullCodec(entry.full.compact.codec) ? entry.full.compact.target : entry.full.target;
}

/**
 * Why an incremental should not be used, judged from the signed metadata before downloading it:
 * not listed, or not clearly smaller than the compressed full file.
 */
async function whyIncrementalUnusable(ctx: RunContext, incremental: IncrementalEntry, entry: CatalogueComponent): Promise<string | undefined> {
  if (!knownPatchFormat(incremental.format)) return `coded as "${incremental.format}", which this version of Bulwark cannot apply`;
  try {
    const [patch, full] = await Promise.all([ctx.source.targetInfo(incremental.target), ctx.source.targetInfo(smallestFull(entry))]);
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

/** Seconds for people: "24 h", "90 min", "45 s". */
export function formatDuration(seconds: number): string {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
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
  return applyPatch(fs.readFileSync(installed.path), patch, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, entry.full.length), expectedLength: entry.full.length }, way.signed ? way.format : 'zstd');
}

async function downloadFull(ctx: RunContext, entry: CatalogueComponent, way: Extract<Way, { method: 'full' }>, index: number, total: number): Promise<Buffer> {
  ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'full' });
  // The signed full file in the codec the catalogue names; a server-made one is always a zstd frame.
  const codec = way.signed ? way.codec : 'zstd';
  if (!knownFullCodec(codec)) throw new SourceError(`the full file is coded as "${codec}", which this version of Bulwark cannot decode: update Bulwark`);
  const compressed = way.signed ? await downloadSigned(ctx, way.target) : await ctx.fetcher.downloadBytes(way.url, compressBound(entry.full.length));
  ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
  return decompressFull(compressed, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, entry.full.length), expectedLength: entry.full.length }, codec);
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
  if (!ctx.evidence || !evidence) throw new VerificationError(`${entry.id} ${pin} was never installed here (no signed metadata of it is kept), so the pin cannot be verified: refused; staying at ${installed?.version ?? 'nothing'}`);
  const vouched = vouchedBy(evidence, entry.id, pin);
  const reason = installed && installed.version > pin ? `rolled back from ${installed.version} to the pinned ${pin}` : `moved to the pinned ${pin}`;
  await activateVouched(ctx, entry, pin, vouched, evidence, offers, now, index, total);
  return { method: 'none', reason, version: pin, result: 'ok' };
}

/** The catalogue entry kept signed metadata gives `id`, which must name `version`. */
function vouchedBy(evidence: { catalogue: Buffer }, id: string, version: number): CatalogueComponent {
  let catalogue: Catalogue;
  try {
    catalogue = parseCatalogue(evidence.catalogue);
  } catch (cause) {
    throw new VerificationError(`the signed metadata kept for ${id} ${version} is unusable`, { cause });
  }
  const vouched = catalogue.components.find((c) => c.id === id);
  if (!vouched || vouched.latest !== version) throw new VerificationError(`the signed metadata kept for ${id} ${version} does not name that version`);
  return vouched;
}

/**
 * A held agent below the last release that passed the server's rollout (a new agent has nothing): take
 * that release's version, never a lower one than it holds. The vendor's word for it is the metadata
 * kept with it, here if this agent installed it before, else the server's, checked against this
 * agent's own trusted root like its own would be (spec §5.6.3, evidence.ts).
 */
async function installVouched(
  ctx: RunContext,
  entry: CatalogueComponent,
  installed: InstalledComponent | undefined,
  version: number,
  offers: ServerOffers | undefined,
  now: () => Date,
  index: number,
  total: number,
): Promise<Pick<ComponentRun, 'method' | 'reason' | 'version' | 'result'>> {
  if (!ctx.evidence) throw new VerificationError(`no signed metadata can be kept here for ${entry.id} ${version}`);
  const kept = ctx.evidence.read(entry.id, version);
  const fromServer = kept ? undefined : await offers?.evidence?.(entry.id, version);
  if (!kept && !fromServer) throw new SourceError(`the server keeps no signed metadata for ${entry.id} ${version}`);
  const evidence = kept ?? { ...fromServer!, root: fs.readFileSync(path.join(ctx.source.metadataDir, 'root.json')) };
  // Checked before anything is downloaded: the server's word alone moves nothing.
  const vouched = vouchedBy(evidence, entry.id, version);
  ctx.evidence.verify(entry.id, version, vouched.full.sha256, evidence);
  const method = await activateVouched(ctx, entry, version, vouched, evidence, offers, now, index, total, fromServer);
  const from = installed ? `from ${installed.version} ` : '';
  return {
    method: method === 'kept' ? 'none' : method,
    reason: `held: moved ${from}to ${version}, the last release that passed the server's rollout (${entry.latest} is being rolled out)`,
    version,
    result: 'ok',
  };
}

/**
 * Make a version the vendor vouched for (`vouched`, from verified `evidence`) active: its file from
 * the store, or the server's full file of it; handed to its engine; activated. Returns how the file
 * came ('kept': from the store). New evidence (the server's) is kept with the version.
 */
async function activateVouched(
  ctx: RunContext,
  entry: CatalogueComponent,
  version: number,
  vouched: CatalogueComponent,
  evidence: { targets: Buffer; catalogue: Buffer; root: Buffer },
  offers: ServerOffers | undefined,
  now: () => Date,
  index: number,
  total: number,
  keepEvidence?: { targets: Buffer; catalogue: Buffer },
): Promise<'kept' | 'full'> {
  let method: 'kept' | 'full' = 'kept';
  if (!ctx.store.hasVerified(entry.id, version, vouched.full.sha256)) {
    // Not kept here (any more): the server makes the full file of any version it keeps.
    const url = offers?.fullOf(entry.id, vouched.full.sha256);
    if (!url) throw new SourceError(`${entry.id} ${version} is no longer kept here${offers ? ' nor on the server' : ''}`);
    ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'full' });
    const frame = await ctx.fetcher.downloadBytes(url, compressBound(vouched.full.length));
    ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
    const data = decompressFull(frame, { maxFileBytes: Math.min(ctx.limits.maxFileBytes, vouched.full.length), expectedLength: vouched.full.length });
    await ctx.store.writeVerified(entry.id, version, data, vouched.full, `the server's file of ${entry.id} ${version}`);
    method = 'full';
  }
  ctx.evidence!.verify(entry.id, version, vouched.full.sha256, evidence);
  const refusal = ctx.handoff?.refused(entry.id, version, vouched.full.sha256);
  if (refusal) throw refused(entry.id, version, refusal);
  await ctx.handoff?.hand(entry.id, { version, sha256: vouched.full.sha256, file: ctx.store.pathOf(entry.id, version) });
  if (keepEvidence) ctx.evidence!.keep(entry.id, version, { ...keepEvidence, metadataDir: ctx.source.metadataDir }, 'full');
  ctx.store.activate(entry.id, version, { sha256: vouched.full.sha256, length: vouched.full.length, installedAt: now().toISOString(), method: ctx.evidence!.method(entry.id, version) ?? 'full' });
  return method;
}
