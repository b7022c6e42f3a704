// Handing a component to the engine that uses it (ClamAV's clamd, YARA...): an update is done when
// the engine has loaded it. For each version that is to become active, in this order:
//
//   check    the candidate, staged under the target's own name (engines read a file's type from its
//            extension), is tried by the engine's own tool: it must load before it goes anywhere
//   place    written beside the target, fsynced, given its mode and owner, renamed over it (the
//            version it replaces is kept beside it, hard-linked, until the hand-off succeeds)
//   reload   the engine is told to take it
//   health   a probe, retried until it passes or its deadline: clamd keeps its previous database
//            when a reload fails and only logs it, so this is what says the engine is on the new content
//
// A failed check leaves everything as it was. A failed reload or health puts the previous file back
// and reloads again. Either way the version does not become active (update-run.ts activates it only
// after this), and the failure is a content failure: the engine would not take this version. A version
// refused for its content is not tried again by automatic runs until a newer one arrives (an
// operator's update, or a restart, tries it once more). A failure of this machine's own (a program
// missing, a read-only or full disk, permissions) is a local failure and is tried again each run.
//
// DATA/consumers-state.json records, per component, the version placed (and the file's size and
// time, to notice it changed) and the last failure, for `bulwark status` and the agent's reports.
import fs from 'node:fs';
import path from 'node:path';
import { runCommand, substitute, trimOutput, type CommandResult } from './consumer-command.js';
import { loadConsumerConfig, type CommandStep, type Consumer, type ConsumerCommand, type ConsumerConfig } from './consumer-config.js';
import { ConsumerError, describeError, type ConsumerStage, type FailureKind } from './errors.js';
import { fsyncDir, tempPathFor, writeFileAtomic } from './files.js';
import type { Trigger } from './history.js';

/** The consumers file a data directory uses when no --consumers is given. */
export const CONSUMERS_FILE = 'consumers.json';
const STATE_FILE = 'consumers-state.json';
/** Pause between two health probes. */
const HEALTH_RETRY_MS = 500;
/** A staged candidate older than this was left by a process stopped mid-check (checks take minutes at most). */
const STALE_STAGING_MS = 6 * 3600_000;

/** How a hand-off failed, as recorded and reported. */
export interface ConsumerFailure {
  version: number;
  sha256: string;
  stage: ConsumerStage;
  kind: FailureKind;
  engine: string;
  /** The engine's own words (its command's output, trimmed), or what went wrong. */
  message: string;
  at: string;
}

interface ConsumerRecord {
  engine: string;
  path: string;
  placed?: { version: number; sha256: string; size: number; mtimeMs: number; at: string };
  failed?: ConsumerFailure;
}

interface StateFile {
  /** The consumers file last used. */
  config?: string;
  consumers: Record<string, ConsumerRecord>;
}

/** A consumer as `bulwark status`, the agent's reports and the console show it. */
export interface ConsumerView {
  id: string;
  engine: string;
  path: string;
  /** The version the engine was last handed (null: none yet). */
  version: number | null;
  /** The engine has the component's active version. */
  active: boolean;
  failure?: ConsumerFailure;
}

/** What update-run.ts needs of the hand-off. */
export interface Handoff {
  /** A content failure of this version here that this run is not to try again. */
  refused(id: string, version: number, sha256: string): ConsumerFailure | undefined;
  /** The engine has this version (or nothing uses the component). */
  settled(id: string, active: { version: number; sha256: string }): boolean;
  /** check → place → reload → health; throws ConsumerError (the previous version stays). */
  hand(id: string, candidate: { version: number; sha256: string; file: string }): Promise<void>;
}

function readState(dataDir: string): StateFile {
  try {
    const data = JSON.parse(fs.readFileSync(path.join(dataDir, STATE_FILE), 'utf8')) as StateFile;
    return data && typeof data.consumers === 'object' && data.consumers ? data : { consumers: {} };
  } catch {
    return { consumers: {} };
  }
}

/** Where a data directory's consumers file is: the one given, else DATA/consumers.json if there is one. */
export function consumersFileOf(dataDir: string, given?: string): string | undefined {
  if (given) return path.resolve(given);
  const own = path.join(dataDir, CONSUMERS_FILE);
  return fs.existsSync(own) ? own : undefined;
}

export class Consumers implements Handoff {
  private readonly state: StateFile;

  constructor(
    readonly config: ConsumerConfig,
    private readonly dataDir: string,
    private readonly options: { log?: (line: string) => void; trigger?: Trigger } = {},
  ) {
    this.state = readState(dataDir);
    this.state.config = config.file;
  }

  /** The consumers of a data directory (the file given, or its own consumers.json); undefined when it has none. Throws ConsumerConfigError. */
  static open(dataDir: string, file: string | undefined, options: { log?: (line: string) => void; trigger?: Trigger } = {}): Consumers | undefined {
    const found = consumersFileOf(dataDir, file);
    return found ? new Consumers(loadConsumerConfig(found), dataDir, options) : undefined;
  }

  refused(id: string, version: number, sha256: string): ConsumerFailure | undefined {
    if (!this.config.consumers.has(id)) return undefined;
    // An operator's update, and a start, try it once more.
    if (this.options.trigger === 'manual' || this.options.trigger === 'startup') return undefined;
    const failed = this.state.consumers[id]?.failed;
    return failed && failed.kind === 'content' && failed.version === version && failed.sha256 === sha256 ? failed : undefined;
  }

  settled(id: string, active: { version: number; sha256: string }): boolean {
    const consumer = this.config.consumers.get(id);
    if (!consumer) return true;
    const placed = this.state.consumers[id]?.placed;
    if (!placed || placed.version !== active.version || placed.sha256 !== active.sha256 || this.state.consumers[id]!.path !== consumer.path) return false;
    try {
      const stat = fs.statSync(consumer.path);
      return stat.size === placed.size && Math.abs(stat.mtimeMs - placed.mtimeMs) <= 1;
    } catch {
      return false;
    }
  }

  async hand(id: string, candidate: { version: number; sha256: string; file: string }): Promise<void> {
    const consumer = this.config.consumers.get(id);
    if (!consumer) return;
    const record = (this.state.consumers[id] ??= { engine: consumer.engine, path: consumer.path });
    record.engine = consumer.engine;
    try {
      await this.handTo(consumer, candidate);
    } catch (error) {
      const failure: ConsumerError =
        error instanceof ConsumerError ? error : new ConsumerError('place', 'local', consumer.engine, `cannot hand ${id} ${candidate.version} to ${consumer.engine}: ${describeError(error)}`, { cause: error });
      record.failed = { version: candidate.version, sha256: candidate.sha256, stage: failure.stage, kind: failure.kind, engine: consumer.engine, message: failure.engineMessage ?? failure.message, at: failure.at };
      this.save();
      throw failure;
    }
    const stat = fs.statSync(consumer.path);
    record.path = consumer.path;
    record.placed = { version: candidate.version, sha256: candidate.sha256, size: stat.size, mtimeMs: stat.mtimeMs, at: new Date().toISOString() };
    delete record.failed;
    this.save();
    this.options.log?.(`${id} ${candidate.version} handed to ${consumer.engine} (${consumer.path})`);
  }

  private async handTo(consumer: Consumer, candidate: { version: number; sha256: string; file: string }): Promise<void> {
    const { id, engine } = consumer;
    const { version } = candidate;
    if (consumer.check) {
      // Staged under the target's own name: clamscan, for one, reads a database's type from its extension.
      const staging = fs.mkdtempSync(path.join(this.stagingRoot(), `${id}-`));
      try {
        const staged = path.join(staging, path.basename(consumer.path));
        fs.copyFileSync(candidate.file, staged);
        await step(consumer, 'check', consumer.check, staged, version, `${engine} refused ${id} ${version} at its check`);
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    }
    const placement = place(consumer, candidate.file, version);
    try {
      if (consumer.reload) await step(consumer, 'reload', consumer.reload, consumer.path, version, `${engine} did not reload ${id} ${version}`);
      if (consumer.health) await probe(consumer, consumer.health, version);
    } catch (error) {
      // Put the previous version back, and make the engine take it again.
      let after = placement.restore();
      if (consumer.reload) {
        const again = await runCommand(substitute(consumer.reload.argv, { file: consumer.path, version }), { timeoutMs: consumer.reload.timeoutMs });
        if (!succeeded(again, consumer.reload)) after += `; reloading it failed too (${describeResult(again, consumer.reload)})`;
      }
      if (error instanceof ConsumerError) throw new ConsumerError(error.stage, error.kind, engine, `${error.message}; ${after}`, { cause: error.cause, ...(error.engineMessage ? { engineMessage: error.engineMessage } : {}), at: error.at });
      throw error;
    }
    placement.commit();
  }

  private stagingRoot(): string {
    const dir = path.join(this.dataDir, 'tmp', 'consumers');
    fs.mkdirSync(dir, { recursive: true });
    // What a process stopped mid-check left behind (old enough not to be a check running beside this one).
    for (const name of fs.readdirSync(dir)) {
      const staged = path.join(dir, name);
      try {
        if (Date.now() - fs.statSync(staged).mtimeMs > STALE_STAGING_MS) fs.rmSync(staged, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
    }
    return dir;
  }

  private save(): void {
    try {
      writeFileAtomic(path.join(this.dataDir, STATE_FILE), JSON.stringify(this.state, null, 1) + '\n');
    } catch (error) {
      this.options.log?.(`cannot record the consumers' state: ${describeError(error)}`);
    }
  }

  /**
   * Try each consumer's check on the version the store holds active, without placing anything (`bulwark
   * consumers check`): what passes, what fails and why.
   */
  async checkActive(active: (id: string) => { version: number; file: string } | undefined): Promise<{ id: string; engine: string; version: number | null; ok: boolean; message: string }[]> {
    const results = [];
    for (const consumer of this.config.consumers.values()) {
      const held = active(consumer.id);
      if (!held) {
        results.push({ id: consumer.id, engine: consumer.engine, version: null, ok: true, message: 'not installed here yet: nothing to check' });
        continue;
      }
      if (!consumer.check) {
        results.push({ id: consumer.id, engine: consumer.engine, version: held.version, ok: true, message: 'no check configured' });
        continue;
      }
      const staging = fs.mkdtempSync(path.join(this.stagingRoot(), `${consumer.id}-`));
      try {
        const staged = path.join(staging, path.basename(consumer.path));
        fs.copyFileSync(held.file, staged);
        await step(consumer, 'check', consumer.check, staged, held.version, `${consumer.id} ${held.version} fails its check`);
        results.push({ id: consumer.id, engine: consumer.engine, version: held.version, ok: true, message: `${consumer.engine} loads it` });
      } catch (error) {
        results.push({ id: consumer.id, engine: consumer.engine, version: held.version, ok: false, message: describeError(error) });
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    }
    return results;
  }
}

/** What a data directory's consumers hold, from the state the last hand-offs recorded and the store's active versions. */
export function consumerViews(dataDir: string, active: (id: string) => { version: number; sha256: string } | undefined): ConsumerView[] {
  const state = readState(dataDir);
  return Object.entries(state.consumers)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, record]) => {
      const held = active(id);
      const placed = record.placed;
      return {
        id,
        engine: record.engine,
        path: record.path,
        version: placed?.version ?? null,
        active: Boolean(held && placed && placed.version === held.version && placed.sha256 === held.sha256),
        ...(record.failed ? { failure: record.failed } : {}),
      };
    });
}

function succeeded(result: CommandResult, command: ConsumerCommand): boolean {
  return !result.spawnError && !result.timedOut && result.code !== null && command.exitCodes.includes(result.code);
}

function describeResult(result: CommandResult, command: ConsumerCommand): string {
  if (result.spawnError) return `${command.argv[0]} could not be started (${result.spawnError})`;
  if (result.timedOut) return `${command.argv[0]} did not finish within ${command.timeoutMs / 1000} s and was killed`;
  return result.code === null ? `${command.argv[0]} ended by ${result.signal}` : `${command.argv[0]} exit ${result.code}`;
}

/** Run one step's command; throws ConsumerError with the engine's words when it fails. */
async function step(consumer: Consumer, stage: CommandStep, command: ConsumerCommand, file: string, version: number, what: string): Promise<void> {
  const result = await runCommand(substitute(command.argv, { file, version }), { timeoutMs: command.timeoutMs });
  if (succeeded(result, command)) return;
  throw stepError(consumer, stage, command, result, what);
}

function stepError(consumer: Consumer, stage: CommandStep, command: ConsumerCommand, result: CommandResult, what: string): ConsumerError {
  const output = trimOutput(result.output);
  // A program that cannot be started is this machine's problem, not the content's.
  const kind: FailureKind = result.spawnError ? 'local' : 'content';
  const engineMessage = output || describeResult(result, command);
  return new ConsumerError(stage, kind, consumer.engine, `${what} (${describeResult(result, command)})${output ? `: ${output}` : ''}`, { engineMessage });
}

/** The health probe, tried until it passes or its deadline runs out. */
async function probe(consumer: Consumer, command: ConsumerCommand, version: number): Promise<void> {
  const deadline = Date.now() + command.timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const result = await runCommand(substitute(command.argv, { file: consumer.path, version }), { timeoutMs: Math.max(left, 100) });
    if (succeeded(result, command)) return;
    if (result.spawnError || Date.now() + HEALTH_RETRY_MS >= deadline) {
      throw stepError(consumer, 'health', { ...command, timeoutMs: command.timeoutMs }, result, `${consumer.engine} failed its health probe with ${consumer.id} ${version} for ${Math.round(command.timeoutMs / 1000)} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_RETRY_MS));
  }
}

/**
 * Write `source` beside the target (a hidden temporary name no engine loads), fsync it, give it its
 * mode and owner, keep the file it replaces (hard-linked beside), and rename it into place.
 */
function place(consumer: Consumer, source: string, version: number): { restore(): string; commit(): void } {
  const target = consumer.path;
  const dir = path.dirname(target);
  const backup = path.join(dir, `.${path.basename(target)}.bulwark-previous`);
  const fail = (what: string, error: unknown): never => {
    throw new ConsumerError('place', 'local', consumer.engine, `cannot place ${consumer.id} ${version} at ${target}: ${what} (${(error as NodeJS.ErrnoException).code ?? describeError(error)})`, { cause: error });
  };
  if (!fs.existsSync(dir)) fail(`the directory ${dir} does not exist`, Object.assign(new Error('no such directory'), { code: 'ENOENT' }));
  // Leftovers of an interrupted hand-off of this same target (never anyone else's files in this directory).
  for (const name of fs.readdirSync(dir)) if (name.startsWith(`.${path.basename(target)}.`) && name.endsWith('.tmp')) fs.rmSync(path.join(dir, name), { force: true });
  const temp = tempPathFor(target);
  try {
    fs.copyFileSync(source, temp, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(temp, consumer.mode);
    if (consumer.owner) fs.chownSync(temp, consumer.owner.uid, consumer.owner.gid);
    const fd = fs.openSync(temp, 'r+');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    fs.rmSync(temp, { force: true });
    fail('writing it beside failed', error);
  }
  let kept = false;
  try {
    fs.rmSync(backup, { force: true });
    if (fs.existsSync(target)) {
      try {
        fs.linkSync(target, backup);
      } catch {
        fs.copyFileSync(target, backup);
      }
      kept = true;
    }
    fs.renameSync(temp, target);
    fsyncDir(dir);
  } catch (error) {
    fs.rmSync(temp, { force: true });
    if (kept) fs.rmSync(backup, { force: true });
    fail('the rename failed', error);
  }
  return {
    restore() {
      try {
        if (kept) fs.renameSync(backup, target);
        else fs.rmSync(target, { force: true });
        fsyncDir(dir);
        return kept ? 'the previous version is back in place' : 'the file was removed again (there was none before)';
      } catch (error) {
        return `the previous version could not be put back (${describeError(error)})`;
      }
    },
    commit() {
      if (kept) fs.rmSync(backup, { force: true });
    },
  };
}
