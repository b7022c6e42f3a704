// One update run, top to bottom:
//   1. refresh the signed metadata and read the catalogue;
//   2. for each component, choose: nothing (up to date), incremental (a pattern from the installed
//      version exists), or full (otherwise, or when the incremental fails), and say why;
//   3. download to a temp file (checked against its signed hash), rebuild or decompress, verify the
//      result against the signed hash of the full file;
//   4. write it into the store and activate it (atomic rename).
// Temp files go through one cleanup path: the run's temp directory is emptied when it ends.
import fs from 'node:fs';
import path from 'node:path';
import type { Catalogue, CatalogueComponent, IncrementalEntry } from './catalogue.js';
import { applyPatch, decompressFull } from './codec.js';
import { BulwarkError, describeError, DowngradeError, NetworkError, CooldownError } from './errors.js';
import type { HttpFetcher } from './fetcher.js';
import { sweepTempFiles, tempPathFor } from './files.js';
import type { ComponentRun, RunRecord, Trigger } from './history.js';
import { INCREMENTAL_WORTH_RATIO, type Limits } from './limits.js';
import type { UpdateSource } from './source.js';
import type { ComponentStore, InstalledComponent, InstallMethod } from './store.js';

export type RunProgress =
  | { stage: 'checking' }
  | { stage: 'downloading'; component: string; index: number; total: number; method: InstallMethod }
  | { stage: 'applying'; component: string; index: number; total: number }
  | { stage: 'component-done'; component: ComponentRun; index: number; total: number };

export interface RunContext {
  source: UpdateSource;
  fetcher: HttpFetcher;
  store: ComponentStore;
  limits: Limits;
  tempDir: string;
  onProgress?: (progress: RunProgress) => void;
  now?: () => Date;
}

/** Errors after which another download from the same source is pointless in this run. */
function sourceUnreachable(error: unknown): boolean {
  return error instanceof NetworkError || error instanceof CooldownError;
}

export async function runUpdate(ctx: RunContext, trigger: Trigger): Promise<RunRecord> {
  const now = ctx.now ?? (() => new Date());
  const startedAt = now();
  const bytesAtStart = ctx.fetcher.bytesReceived;
  fs.mkdirSync(ctx.tempDir, { recursive: true });
  sweepTempFiles(ctx.tempDir);
  ctx.store.recover();
  const finish = (fields: Pick<RunRecord, 'result' | 'components'> & { error?: unknown }): RunRecord => {
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
      if (fields.error instanceof BulwarkError) record.errorCode = fields.error.code;
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

  const runs: ComponentRun[] = [];
  const total = catalogue.components.length;
  let unreachable: unknown;
  for (const [index, entry] of catalogue.components.entries()) {
    const { run, cause } = unreachable
      ? { run: skipped(ctx.store.active(entry.id), entry, unreachable), cause: undefined }
      : await updateComponent(ctx, entry, index, total, now);
    if (sourceUnreachable(cause)) unreachable = cause;
    runs.push(run);
    ctx.onProgress?.({ stage: 'component-done', component: run, index, total });
  }
  const failed = runs.filter((r) => r.result === 'failed');
  return finish({
    result: failed.length ? 'failed' : 'ok',
    components: runs,
    ...(failed.length ? { error: `${failed.map((r) => r.id).join(', ')} failed: ${failed[0]!.error}` } : {}),
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

async function updateComponent(
  ctx: RunContext,
  entry: CatalogueComponent,
  index: number,
  total: number,
  now: () => Date,
): Promise<{ run: ComponentRun; cause?: unknown }> {
  const started = Date.now();
  const bytesBefore = ctx.fetcher.bytesReceived;
  const installed = ctx.store.active(entry.id);
  const outcome = ({ cause, ...fields }: Pick<ComponentRun, 'method' | 'reason' | 'version' | 'result'> & { cause?: unknown }) => {
    const run: ComponentRun = {
      id: entry.id,
      previousVersion: installed?.version ?? null,
      offeredVersion: entry.latest,
      bytes: ctx.fetcher.bytesReceived - bytesBefore,
      fullBytes: entry.full.length,
      durationMs: Date.now() - started,
      ...fields,
    };
    if (cause !== undefined) {
      run.error = describeError(cause);
      if (cause instanceof BulwarkError) run.errorCode = cause.code;
    }
    return { run, cause };
  };

  if (installed && entry.latest < installed.version) {
    return outcome({ method: 'none', reason: 'the source offers an older version', version: installed.version, result: 'failed', cause: new DowngradeError(installed.version, entry.latest) });
  }
  if (installed?.version === entry.latest) {
    return outcome({ method: 'none', reason: 'up to date', version: installed.version, result: 'ok' });
  }
  const install = async (data: Buffer, method: InstallMethod, what: string) => {
    await ctx.store.writeVerified(entry.id, entry.latest, data, entry.full, what);
    ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method });
  };
  try {
    // An earlier run was stopped after writing this verified version but before activating it.
    if (ctx.store.hasVerified(entry.id, entry.latest, entry.full.sha256)) {
      ctx.store.activate(entry.id, entry.latest, { sha256: entry.full.sha256, length: entry.full.length, installedAt: now().toISOString(), method: 'full' });
      return outcome({ method: 'none', reason: 'completed an interrupted install (file already verified in the store)', version: entry.latest, result: 'ok' });
    }

    let reason: string;
    const incremental = installed && entry.duplication ? entry.incrementals.find((i) => i.from === installed.version) : undefined;
    const unusable = incremental ? await whyIncrementalUnusable(ctx, incremental, entry) : undefined;
    if (incremental && unusable) {
      reason = `incremental v_${incremental.from}.${entry.latest} unusable (${unusable})`;
    } else if (incremental && installed) {
      try {
        await install(await rebuildFromIncremental(ctx, entry, installed, incremental, index, total), 'incremental', 'the file rebuilt from the incremental');
        return outcome({ method: 'incremental', reason: `incremental from ${installed.version}`, version: entry.latest, result: 'ok' });
      } catch (error) {
        if (sourceUnreachable(error)) throw error;
        reason = `incremental v_${incremental.from}.${entry.latest} unusable (${describeError(error)})`;
      }
    } else if (!installed) {
      reason = 'no installed version';
    } else if (!entry.duplication) {
      reason = 'full-only component';
    } else if (entry.incrementals.length && installed.version < Math.min(...entry.incrementals.map((i) => i.from))) {
      reason = `too far behind: installed ${installed.version}, incrementals start at ${Math.min(...entry.incrementals.map((i) => i.from))}`;
    } else {
      reason = `no incremental from ${installed.version}`;
    }
    ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'full' });
    await install(await downloadFull(ctx, entry, () => ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total })), 'full', 'the downloaded full file');
    return outcome({ method: 'full', reason, version: entry.latest, result: 'ok' });
  } catch (error) {
    return outcome({ method: 'none', reason: 'update failed', version: installed?.version ?? null, result: 'failed', cause: error });
  }
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

async function downloadToMemory(ctx: RunContext, target: string): Promise<Buffer> {
  const temp = tempPathFor(path.join(ctx.tempDir, path.basename(target)));
  try {
    await ctx.source.download(target, temp, ctx.limits.maxFileBytes);
    return fs.readFileSync(temp);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

async function rebuildFromIncremental(
  ctx: RunContext,
  entry: CatalogueComponent,
  installed: InstalledComponent,
  incremental: IncrementalEntry,
  index: number,
  total: number,
): Promise<Buffer> {
  ctx.onProgress?.({ stage: 'downloading', component: entry.id, index, total, method: 'incremental' });
  const patch = await downloadToMemory(ctx, incremental.target);
  ctx.onProgress?.({ stage: 'applying', component: entry.id, index, total });
  // The base is not re-hashed here: a damaged base yields a result that fails the signed hash,
  // checked as the result is written (ComponentStore.writeVerified), and the full file is taken.
  return applyPatch(fs.readFileSync(installed.path), patch, ctx.limits);
}

async function downloadFull(ctx: RunContext, entry: CatalogueComponent, applying: () => void): Promise<Buffer> {
  const compressed = await downloadToMemory(ctx, entry.full.target);
  applying();
  return decompressFull(compressed, ctx.limits);
}
