// The agent registry's file as a server keeps it: checked each time the server opens it, copied once
// a day, and set aside when it is damaged — never deleted — so that the server goes on updating itself
// and serving its agents:
//
//   agents.sqlite ── SQLite's own check (quick_check) ──ok──► open it; a daily copy (agents.sqlite.backup)
//        │ empty, not a database, a damaged page                 by SQLite's backup API, checked before
//        ▼                                                       it replaces the one before
//   set it aside as agents.sqlite.damaged-<time> (with its -wal), and then
//        ├─ the daily copy passes its check ──► restore it (enrollments made since are lost)
//        └─ none ──► start an empty registry (agents enroll again)
//      either way keeping the enrollment token and credential key if the damaged file still gives them,
//      and a reminder that says what happened and how to restore, until the damaged copy is removed.
//   A file that cannot be opened at all (a read-only disk, permissions) leaves agents unserved, with the
//   reason; the server keeps updating itself.
import fs from 'node:fs';
import path from 'node:path';
import { describeError } from '../engine/errors.js';
import { commitTemp, fsyncDir, tempPathFor } from '../engine/files.js';
import { noteSetAside, setAside, type SetAsideNote } from '../engine/set-aside.js';
import { AgentRegistry } from './registry.js';

export const REGISTRY_FILE = 'agents.sqlite';
/** The daily copy the server falls back to. Not *.sqlite, so nothing takes it for the registry itself. */
export const REGISTRY_COPY = 'agents.sqlite.backup';
/** How often the copy is made (and, at start-up, how old it may be before a new one is made at once). */
export const COPY_EVERY_MS = 86_400_000;

export interface ServerRegistry {
  registry: AgentRegistry;
  /** Why agents cannot be served: the registry file cannot be opened at all (`registry` is then an empty one in memory). */
  unusable?: string;
}

/** Open the server's registry, setting a damaged one aside and restoring the daily copy if there is a good one. */
export async function openServerRegistry(dataDir: string, log: (line: string) => void): Promise<ServerRegistry> {
  const file = path.join(dataDir, REGISTRY_FILE);
  try {
    const damage = await damageOf(file);
    if (damage) await recover(dataDir, damage, log);
    return { registry: await AgentRegistry.open(dataDir) };
  } catch (error) {
    const unusable = `the agent registry ${file} cannot be used: ${describeError(error)}`;
    log(`${unusable}; agents are not served until that is put right (the server goes on updating itself)`);
    return { registry: await AgentRegistry.open(dataDir, { memory: true }), unusable };
  }
}

/** What is wrong with a registry file, if anything (undefined too when there is none yet). */
async function damageOf(file: string): Promise<string | undefined> {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return undefined;
  // SQLite takes an empty file for a new database: a registry that lost its contents would start over unnoticed.
  if (stat.size === 0) return 'the file was empty (0 bytes): its contents were lost';
  return AgentRegistry.check(file);
}

async function recover(dataDir: string, damage: string, log: (line: string) => void): Promise<void> {
  const file = path.join(dataDir, REGISTRY_FILE);
  const copy = path.join(dataDir, REGISTRY_COPY);
  // Salvaged before the file moves: with the enrollment token kept, agents started with it enroll again by themselves.
  const meta = await AgentRegistry.readMeta(file);
  const moved = setAside(file);
  log(`the agent registry ${file} is damaged (${damage}); it was set aside as ${moved}`);

  let restored: Date | undefined;
  const copyStat = fs.statSync(copy, { throwIfNoEntry: false });
  if (copyStat) {
    const copyDamage = await damageOf(copy).catch((error: unknown) => describeError(error));
    if (copyDamage) {
      log(`its daily copy ${copy} is damaged too (${copyDamage}); set aside as ${setAside(copy)}`);
    } else {
      const temp = tempPathFor(file);
      fs.copyFileSync(copy, temp);
      commitTemp(temp, file);
      restored = copyStat.mtime;
      log(`restored the agent registry from its daily copy of ${restored.toISOString()}`);
    }
  }
  if (Object.keys(meta).length) {
    // The damaged file's token and key are newer than the copy's (a rotation since, say).
    const registry = await AgentRegistry.open(dataDir);
    try {
      await registry.writeMeta(meta);
    } finally {
      await registry.close();
    }
  }
  const agentsAgain =
    meta.enrollment_token !== undefined
      ? 'Agents started with the enrollment token enroll again by themselves: the token is unchanged.'
      : restored
        ? 'The enrollment token is the one the copy holds (`bulwark agents token` shows it).'
        : 'The enrollment token could not be read from it, so there is a new one (`bulwark agents token`): agents must be started with it to enroll again.';
  const note: SetAsideNote = restored
    ? {
        severity: 'warning',
        title: 'The agent registry was damaged and restored from its daily copy',
        body: `${file} was damaged (${damage}). It was set aside as ${moved} and the copy of ${restored.toISOString()} restored: agents enrolled since then must enroll again, and reports since then are gone. ${agentsAgain}`,
        action: `Nothing else is needed. To recover more from the damaged file, stop the server and try \`sqlite3 ${moved} .recover | sqlite3 ${path.join(dataDir, 'recovered.sqlite')}\`. Delete ${moved} to clear this reminder.`,
      }
    : {
        severity: 'error',
        title: 'The agent registry was damaged: an empty one was started',
        body: `${file} was damaged (${damage}) and there was no good daily copy to restore. It was set aside as ${moved}, not deleted; the server started an empty registry, so it lists no agents until they enroll again. ${agentsAgain}`,
        action: `To restore what it held: stop the server, run \`sqlite3 ${moved} .recover | sqlite3 ${path.join(dataDir, 'recovered.sqlite')}\`, check the result, and move it to ${file} before starting the server again. Delete ${moved} to clear this reminder.`,
      };
  noteSetAside(moved, note);
}

/**
 * The daily copy: made at start-up when the last one is a day old (or missing), then every day. A copy
 * is written beside the last one and replaces it only once SQLite's check passes on it, so a registry
 * damaged in the meantime never overwrites the last good copy.
 */
export function keepDailyCopies(registry: AgentRegistry, dataDir: string, log: (line: string) => void): { stop(): Promise<void> } {
  const copy = path.join(dataDir, REGISTRY_COPY);
  let running: Promise<void> | undefined;
  let stopped = false;
  const makeCopy = () => {
    if (running || stopped) return;
    running = (async () => {
      // Not a .tmp name: the engine sweeps those from the data directory as it starts, which may be now.
      const temp = `${copy}.new`;
      try {
        fs.rmSync(temp, { force: true });
        await registry.copyTo(temp);
        const damage = await AgentRegistry.check(temp);
        if (damage) throw new Error(`the copy failed SQLite's check (${damage}); the agent registry itself may be damaged`);
        fs.chmodSync(temp, 0o600); // it holds the credential key, as the registry does
        fs.renameSync(temp, copy);
        fsyncDir(dataDir);
      } catch (error) {
        log(`cannot make the daily copy of the agent registry (${copy} is left as it was): ${describeError(error)}`);
      } finally {
        fs.rmSync(temp, { force: true });
        running = undefined;
      }
    })();
  };
  const age = Date.now() - (fs.statSync(copy, { throwIfNoEntry: false })?.mtimeMs ?? 0);
  const first = setTimeout(makeCopy, age >= COPY_EVERY_MS ? 0 : COPY_EVERY_MS - age);
  const daily = setInterval(makeCopy, COPY_EVERY_MS);
  first.unref();
  daily.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(daily);
      await running;
    },
  };
}
