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
