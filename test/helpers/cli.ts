// Helpers for driving the compiled `bulwark` command as a real child process (and, where a test
// only needs the exit code and output, the CLI's main() in-process), plus small clock and polling
// helpers shared by the engine tests.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = path.join(ROOT, 'bin', 'bulwark.js');
const COMPILED_MAIN = path.join(ROOT, 'out', 'main', 'cli', 'main.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(full));
    else if (/\.c?ts$/.test(entry.name)) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

/** Compile src-main into out/main unless the compiled CLI is already newer than every source file. */
export function ensureBuilt(): void {
  const built = fs.existsSync(COMPILED_MAIN) ? fs.statSync(COMPILED_MAIN).mtimeMs : 0;
  if (built > 0 && built >= newestMtime(path.join(ROOT, 'src-main'))) return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.main.json'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Every child started here, so a test file can kill what is left over (by PID) in afterEach. */
const children = new Set<ChildProcess>();

export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Run `bulwark ...args` to completion, asynchronously (tests serve their update source from this
 * process, so blocking the event loop with spawnSync would deadlock). Killed after `timeoutMs`.
 */
export function runCli(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  const child = start(args);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`bulwark ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A long-running `bulwark` child (serve): its output so far, waiting for a line, signalling it. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  constructor(args: string[]) {
    this.child = start(args);
    const poke = () => {
      for (const waiter of this.waiters) waiter();
    };
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      poke();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      poke();
    });
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
    void this.exited.then(poke);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolve with the match once stdout shows `pattern`; reject if the process exits first or time runs out. */
  waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(this.stdout);
        if (match) return finish(() => resolve(match));
        if (!this.running) return finish(() => reject(new Error(`bulwark exited before printing ${pattern}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`))), timeoutMs);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Send `signal` and wait (bounded) for the process to exit. */
  async stop(signal: NodeJS.Signals, timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const started = Date.now();
    process.kill(this.pid, signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bulwark did not exit within ${timeoutMs} ms of ${signal}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)), timeoutMs);
    });
    try {
      const result = await Promise.race([this.exited, timeout]);
      return { ...result, ms: Date.now() - started };
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Run the CLI's main() in this process and capture what it writes. For tests that only need the exit
 * code and the messages of a command that does no network I/O.
 */
export async function runMainInProcess(args: string[]): Promise<CliResult> {
  const { main } = await import('../../src-main/cli/main.js');
  let stdout = '';
  let stderr = '';
  const realOut = process.stdout.write;
  const realErr = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, signal: null, stdout, stderr };
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
}

/** A loopback port nothing listens on (bound, then closed): connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Poll `check` (with real timers; it may be async) until it returns a truthy value; throw after `timeoutMs`. */
export async function until<T>(check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The first local time strictly after `from` whose minutes divide by `every` (seconds zero). */
export function nextAlignedMinute(from: Date, every: number): Date {
  const t = new Date(from);
  t.setSeconds(0, 0);
  do t.setMinutes(t.getMinutes() + 1);
  while (t.getMinutes() % every !== 0);
  return t;
}

/** The next local `hh:mm` strictly after `from`. */
export function nextLocalTime(from: Date, hours: number, minutes: number): Date {
  const t = new Date(from);
  t.setHours(hours, minutes, 0, 0);
  if (t.getTime() <= from.getTime()) t.setDate(t.getDate() + 1);
  return t;
}
