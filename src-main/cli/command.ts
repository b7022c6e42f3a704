// What every subcommand of `bulwark` is, and the small helpers they share.
import fs from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { FileError, UsageError } from '../engine/errors.js';
import { acquireLock } from '../engine/lock.js';

export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  positionals?: boolean;
  run(values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number>;
}

export const out = (line: string) => process.stdout.write(line + '\n');
export const err = (line: string) => process.stderr.write(line + '\n');

export function required(values: Record<string, unknown>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

/** A whole number flag within bounds, or undefined when absent. */
export function integerFlag(values: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  // Number('') is 0: an empty value is no number.
  const n = String(value).trim() === '' ? NaN : Number(value);
  if (!(Number.isInteger(n) && n >= min && n <= max)) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

export const dataOption = { data: { type: 'string' } } as const;

/**
 * The --data directory of a command that works on an existing one: a mistyped path is refused with
 * how to make one, never created silently.
 */
export function existingDataDir(values: Record<string, unknown>): string {
  const dataDir = required(values, 'data');
  if (!fs.existsSync(dataDir)) {
    throw new UsageError(`data directory ${dataDir} does not exist; create it with \`bulwark init --data ${dataDir}\` (or the first \`bulwark serve --data ${dataDir}\`)`);
  }
  if (!fs.statSync(dataDir).isDirectory()) throw new UsageError(`--data ${dataDir} is a file, not a directory`);
  return dataDir;
}

/** The closest of `names` to a mistyped `word` (at most two edits away, or a prefix of one), for "did you mean". */
export function closest(word: string, names: readonly string[]): string | undefined {
  const distance = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diagonal = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const above = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
        diagonal = above;
      }
    }
    return row[b.length]!;
  };
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = name.startsWith(word) && word.length >= 3 ? 1 : distance(word.toLowerCase(), name);
    if (d <= Math.max(1, Math.min(2, Math.floor(name.length / 3))) && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/**
 * node:util's parseArgs error, in our words: "--data needs a value", "unknown option --bogus (did you
 * mean --data?)", "unexpected argument x".
 */
export function parseProblem(error: unknown, options: Record<string, { type: string; short?: string }>): string {
  const { code, message } = error as NodeJS.ErrnoException;
  const names = Object.keys(options).map((name) => `--${name}`);
  const option = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const name = option ?? 'an option';
      const spec = options[name.replace(/^-+/, '')];
      if (spec?.type === 'boolean') return `${name} takes no value`;
      if (/argument missing/.test(message)) return `${name} needs a value`;
      // "argument is ambiguous": the value looks like an option (a token starting with '-').
      return `${name} needs a value; one that starts with "-" is written ${name}=VALUE`;
    }
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const name = option ?? 'an option';
      const guess = closest(name.replace(/=.*$/, ''), names);
      return `unknown option ${name}${guess ? ` (did you mean ${guess}?)` : ''}`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}`.trim();
    default:
      return message.split('\n')[0]!;
  }
}

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(stamp: (line: string) => void, what = 'stopping after the update in progress, if any'): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      stamp(`${signal} received; ${what}`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/**
 * Take the data directory's lock for a process that hosts it (serve, agent), creating the directory
 * if needed: before anything else is written there, so a refused second instance changes nothing.
 */
export function lockDataDir(dataDir: string): () => void {
  try {
    fs.mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    throw new FileError(dataDir, `cannot create the data directory ${dataDir}`, { cause: error });
  }
  return acquireLock(dataDir);
}
