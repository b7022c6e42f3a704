// Who owns a data directory: the lock (bulwark.lock) and the published state (state.json) name a
// process by PID and start time, so a PID that now belongs to another process is not taken for theirs.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { readPersistedState } from '../src-main/engine/engine.js';
import { BusyError } from '../src-main/engine/errors.js';
import { acquireLock, processIdentity, readLockOwner } from '../src-main/engine/lock.js';
import { ensureBuilt, ROOT, runCli, until } from './helpers/cli.js';
import { tempDir } from './helpers/fixtures.js';

const COMPILED_LOCK = pathToFileURL(path.join(ROOT, 'out', 'main', 'engine', 'lock.js')).href;
const hasProc = fs.existsSync('/proc/self/stat');

let dir: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  ensureBuilt();
}, 180_000);

beforeEach(() => {
  dir = tempDir('bulwark-lock-');
});

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

const lockFile = () => path.join(dir, 'bulwark.lock');

/** A live process that has nothing to do with Bulwark. */
function unrelatedProcess(): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  return child;
}

/** Another process running Bulwark's own lock code on `dir`, holding the lock until killed. */
async function bulwarkHolding(dataDir: string): Promise<ChildProcess> {
  const script = `import { acquireLock } from ${JSON.stringify(COMPILED_LOCK)}; acquireLock(${JSON.stringify(dataDir)}); console.log('locked'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  await until(() => stdout.includes('locked') || child.exitCode !== null, 15_000, 'the child to take the lock');
  expect(stdout).toContain('locked');
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

it('takes over a lock naming a live process that started after the lock was written (a reused PID)', (ctx) => {
  if (!hasProc) return ctx.skip('process start times come from /proc (Linux); elsewhere only the PID is compared');
  const unrelated = unrelatedProcess();
  fs.writeFileSync(lockFile(), JSON.stringify({ pid: unrelated.pid, startTime: `${processIdentity(unrelated.pid!).startTime}0` }));

  const release = acquireLock(dir);
  expect(readLockOwner(dir)).toEqual(processIdentity(process.pid));
  expect(readLockOwner(dir)!.pid).toBe(process.pid);
  release();
  expect(fs.existsSync(lockFile())).toBe(false);
  expect(unrelated.exitCode).toBeNull(); // left alone
});

it('refuses a lock naming that same live process with its own start time', (ctx) => {
  if (!hasProc) return ctx.skip('process start times come from /proc (Linux)');
  const unrelated = unrelatedProcess();
  const identity = processIdentity(unrelated.pid!);
  expect(identity.startTime).toMatch(/\S/);
  fs.writeFileSync(lockFile(), JSON.stringify(identity));
  expect(() => acquireLock(dir)).toThrow(BusyError);
  expect(readLockOwner(dir)).toEqual(identity);
});

it('refuses the lock of a live Bulwark process with a BusyError, and takes it over once that process is killed', async () => {
  const holder = await bulwarkHolding(dir);
  const owner = readLockOwner(dir);
  expect(owner?.pid).toBe(holder.pid);
  if (hasProc) expect(owner?.startTime).toBe(processIdentity(holder.pid!).startTime);

  expect(() => acquireLock(dir)).toThrow(BusyError);
  expect(() => acquireLock(dir)).toThrow(new RegExp(`^another Bulwark process \\(PID ${holder.pid}\\) is using `));
  expect(readLockOwner(dir)).toEqual(owner);

  holder.kill('SIGKILL');
  await exited(holder);
  expect(readLockOwner(dir)).toEqual(owner); // left behind by the killed process
  const release = acquireLock(dir);
  expect(readLockOwner(dir)?.pid).toBe(process.pid);
  release();
});

it('reads a lock holding only a PID, as older versions wrote it', async () => {
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  const holder = await bulwarkHolding(elsewhere);
  fs.writeFileSync(lockFile(), String(holder.pid));
  expect(() => acquireLock(dir)).toThrow(new RegExp(`PID ${holder.pid}\\)`));

  holder.kill('SIGKILL');
  await exited(holder);
  const release = acquireLock(dir); // its PID is gone now
  release();

  fs.writeFileSync(lockFile(), ''); // a crash between creating and writing it
  acquireLock(dir)();
});

it('status does not show a server for a state.json whose PID now belongs to another process', async (ctx) => {
  if (!hasProc) return ctx.skip('process start times come from /proc (Linux)');
  const unrelated = unrelatedProcess();
  const state = { state: { type: 'idle' }, nextRun: '2030-01-01T00:00:00.000Z', updatedAt: new Date().toISOString() };
  const stateFile = path.join(dir, 'state.json');

  fs.writeFileSync(stateFile, JSON.stringify({ ...processIdentity(unrelated.pid!), ...state }));
  expect(readPersistedState(dir)).toMatchObject({ pid: unrelated.pid, state: { type: 'idle' } });

  fs.writeFileSync(stateFile, JSON.stringify({ pid: unrelated.pid, startTime: `${processIdentity(unrelated.pid!).startTime}0`, ...state }));
  expect(readPersistedState(dir)).toBeUndefined();
  const status = await runCli(['status', '--data', dir, '--json']);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ state: { type: 'stopped' }, nextUpdate: null });
});
