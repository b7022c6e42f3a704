// Running a consumer's command: an argument list, without a shell, in a process group of its own, with
// a deadline. At the deadline the whole group is killed (a wrapper script's children too), so a
// command that hangs cannot hold up an update. Output (stdout and stderr together) is captured up to
// a bound and trimmed to its last lines for messages.
import { spawn } from 'node:child_process';

export interface CommandResult {
  /** Exit code, or null when ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Killed at its deadline. */
  timedOut: boolean;
  /** The program could not be started (not found, not executable): the spawn error's code. */
  spawnError?: string;
  /** stdout and stderr as they came, at most MAX_OUTPUT bytes (the start is dropped first). */
  output: string;
  ms: number;
}

/** Output kept per command: enough for an engine's error, not a runaway log. */
const MAX_OUTPUT = 64 * 1024;
/** After the group is killed, how long to wait for the pipes to close (a child that left the group may hold them). */
const AFTER_KILL_MS = 1_000;

/** Replace {file} and {version} in each argument (the only substitutions). */
export function substitute(argv: readonly string[], values: { file: string; version: number }): string[] {
  return argv.map((arg) => arg.replace(/\{(file|version)\}/g, (_, name: 'file' | 'version') => String(values[name])));
}

export function runCommand(argv: readonly string[], options: { timeoutMs: number; cwd?: string }): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let output = Buffer.alloc(0);
    const take = (chunk: Buffer) => {
      output = Buffer.concat([output, chunk]);
      if (output.length > MAX_OUTPUT) output = output.subarray(output.length - MAX_OUTPUT);
    };
    let timedOut = false;
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: the deadline kills the command and everything it started.
      detached: true,
      shell: false,
      ...(options.cwd ? { cwd: options.cwd } : {}),
      env: { ...process.env, LC_ALL: 'C' },
    });
    const finish = (fields: Partial<CommandResult>) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(drain);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({ code: exit?.code ?? null, signal: exit?.signal ?? null, timedOut, output: output.toString('utf8'), ms: Date.now() - started, ...fields });
    };
    let drain: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
      // Normally 'close' follows at once; a process that escaped the group may keep the pipes open.
      drain = setTimeout(() => finish({}), AFTER_KILL_MS);
    }, options.timeoutMs);
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.once('error', (error: NodeJS.ErrnoException) => finish({ spawnError: error.code ?? error.message }));
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // A child it left behind may hold the pipes open (a daemon that kept them): stop waiting for them soon.
      if (!timedOut) drain = setTimeout(() => finish({}), AFTER_KILL_MS);
    });
    child.once('close', () => finish({}));
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The last lines of a command's output, one line for a message: control characters out, at most `max` characters. */
export function trimOutput(output: string, max = 600): string {
  const lines = output
    .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
    .split(/\r?\n|\r/)
    .map((line) => line.replace(/[\x00-\x1f\x7f]/g, ' ').trim())
    .filter(Boolean);
  let text = '';
  for (let i = lines.length - 1; i >= 0; i--) {
    const next = text ? `${lines[i]} | ${text}` : lines[i]!;
    if (next.length > max) {
      if (!text) text = `…${lines[i]!.slice(-(max - 1))}`;
      else text = `… | ${text}`;
      break;
    }
    text = next;
  }
  return text;
}
