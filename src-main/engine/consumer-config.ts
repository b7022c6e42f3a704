// The consumers file: for each component, the engine that uses it on this machine — where its active
// version goes and what to run around it. Local to each machine (an agent's or a server's data
// directory, or `--consumers FILE`), never anything a server sends. JSON, one entry per component id:
//
//   { "clamav-test-sigs": {
//       "engine": "clamd",                                   name used in messages (optional)
//       "path": "/var/lib/clamav/bulwark.hsb",               where the active version is placed
//       "mode": "0644", "owner": "clamav:clamav",            the placed file's mode and owner (optional)
//       "check":  ["clamscan", "--no-summary", "-d", "{file}", "/var/lib/bulwark/empty"],
//       "reload": ["clamdscan", "--reload"],
//       "health": { "command": ["clamdscan", "--no-summary", "/var/lib/bulwark/probe"], "exitCodes": [1], "timeoutSeconds": 20 }
//   } }
//
// A command is an argument list run without a shell, or an object with its deadline and the exit codes
// that mean success (0 by default). `{file}` (the candidate for check, the placed file after) and
// `{version}` are the only substitutions. A file that does not validate is refused whole, with the file
// and the entry named.
import fs from 'node:fs';
import path from 'node:path';
import type { ErrorObject, JSONSchemaType } from 'ajv';
import { Ajv } from 'ajv';
import { COMPONENT_ID_PATTERN } from './components.js';
import { ConsumerConfigError } from './errors.js';

/** Deadlines when the file gives none, per step (a check loads the whole database; health is retried until it passes). */
export const DEFAULT_DEADLINES = { check: 120, reload: 60, health: 30 } as const;

/** Largest consumers file read. */
const MAX_FILE_BYTES = 256 * 1024;

export type CommandStep = keyof typeof DEFAULT_DEADLINES;

export interface ConsumerCommand {
  argv: string[];
  timeoutMs: number;
  /** Exit codes that mean success. */
  exitCodes: number[];
}

export interface Consumer {
  /** The component id. */
  id: string;
  /** The engine's name in messages ("the content failed to load in clamd"). */
  engine: string;
  /** Absolute path the active version is placed at. */
  path: string;
  mode: number;
  owner?: { uid: number; gid: number };
  check?: ConsumerCommand;
  reload?: ConsumerCommand;
  health?: ConsumerCommand;
}

export interface ConsumerConfig {
  /** The file it was read from (absolute). */
  file: string;
  consumers: Map<string, Consumer>;
}

type CommandJson = string[] | { command: string[]; timeoutSeconds?: number; exitCodes?: number[] };

interface EntryJson {
  path: string;
  engine?: string;
  mode?: string;
  owner?: string;
  timeoutSeconds?: number;
  check?: CommandJson;
  reload?: CommandJson;
  health?: CommandJson;
}

const argv = { type: 'array', items: { type: 'string', minLength: 1, maxLength: 4096 }, minItems: 1, maxItems: 256 } as const;
const seconds = { type: 'number', exclusiveMinimum: 0, maximum: 3600 } as const;
const commandSchema = {
  oneOf: [
    argv,
    {
      type: 'object',
      required: ['command'],
      additionalProperties: false,
      properties: { command: argv, timeoutSeconds: seconds, exitCodes: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 255 }, minItems: 1, maxItems: 256 } },
    },
  ],
};

const entrySchema: JSONSchemaType<EntryJson> = {
  type: 'object',
  required: ['path'],
  additionalProperties: false,
  properties: {
    path: { type: 'string', minLength: 1, maxLength: 4096 },
    engine: { type: 'string', nullable: true, minLength: 1, maxLength: 64 },
    mode: { type: 'string', nullable: true, pattern: '^0?[0-7]{3}$' },
    owner: { type: 'string', nullable: true, minLength: 1, maxLength: 256 },
    timeoutSeconds: { ...seconds, nullable: true },
    // Optional; an argument list or an object (JSONSchemaType cannot spell the union).
    check: commandSchema as never,
    reload: commandSchema as never,
    health: commandSchema as never,
  },
};

let validateEntry: ReturnType<Ajv['compile']> | undefined;

/** What the schema's first complaint means, in words. */
function explain(error: ErrorObject | undefined): string {
  if (!error) return 'is not valid';
  const field = error.instancePath.split('/').filter(Boolean).join('.') || 'the entry';
  const command = /^(check|reload|health)/.exec(field)?.[1];
  if (command && (error.keyword === 'oneOf' || error.keyword === 'type')) {
    return `${command} must be a list of strings (the program and its arguments, run without a shell), or {"command": [...], "timeoutSeconds": N, "exitCodes": [...]}`;
  }
  if (error.keyword === 'additionalProperties') {
    const extra = (error.params as { additionalProperty: string }).additionalProperty;
    return `${field === 'the entry' ? '' : `${field}: `}unknown field "${extra}" (an entry has path, engine, mode, owner, timeoutSeconds, check, reload, health)`;
  }
  if (error.keyword === 'pattern' && field === 'mode') return 'mode must be octal permissions as a string, e.g. "0644"';
  if (error.keyword === 'required') return `${(error.params as { missingProperty: string }).missingProperty} is required`;
  return `${field} ${error.message ?? 'is not valid'}`;
}

/** Read and validate a consumers file; ConsumerConfigError names the file and the entry at fault. */
export function loadConsumerConfig(file: string): ConsumerConfig {
  const absolute = path.resolve(file);
  let text: string;
  try {
    const stat = fs.statSync(absolute);
    if (!stat.isFile()) throw new ConsumerConfigError(absolute, undefined, 'is not a file');
    if (stat.size > MAX_FILE_BYTES) throw new ConsumerConfigError(absolute, undefined, `is ${stat.size} bytes, over the ${MAX_FILE_BYTES}-byte limit`);
    text = fs.readFileSync(absolute, 'utf8');
  } catch (error) {
    if (error instanceof ConsumerConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConsumerConfigError(absolute, undefined, code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (error as Error).message})`, { cause: error });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConsumerConfigError(absolute, undefined, `is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new ConsumerConfigError(absolute, undefined, 'must be a JSON object with one entry per component id');
  validateEntry ??= new Ajv({ allErrors: false }).compile(entrySchema);
  const consumers = new Map<string, Consumer>();
  const paths = new Map<string, string>();
  for (const [id, entry] of Object.entries(data as Record<string, unknown>)) {
    if (!COMPONENT_ID_PATTERN.test(id)) throw new ConsumerConfigError(absolute, id, 'is not a component id (lower-case letters, digits and dashes)');
    if (!validateEntry(entry)) throw new ConsumerConfigError(absolute, id, explain(validateEntry.errors?.[0]));
    const consumer = toConsumer(absolute, id, entry as EntryJson);
    const other = paths.get(consumer.path);
    if (other) throw new ConsumerConfigError(absolute, id, `its path ${consumer.path} is also "${other}"'s`);
    paths.set(consumer.path, id);
    consumers.set(id, consumer);
  }
  return { file: absolute, consumers };
}

function toConsumer(file: string, id: string, entry: EntryJson): Consumer {
  const fail = (message: string): never => {
    throw new ConsumerConfigError(file, id, message);
  };
  if (!path.isAbsolute(entry.path)) fail(`path must be absolute (${JSON.stringify(entry.path)} is not)`);
  const target = path.normalize(entry.path);
  if (target.endsWith(path.sep) || path.basename(target) === '') fail('path must name a file, not a directory');
  if (fs.existsSync(target) && !fs.statSync(target).isFile()) fail(`path ${target} exists and is not a regular file`);
  const command = (step: CommandStep): ConsumerCommand | undefined => {
    const json = entry[step];
    if (json === undefined) return undefined;
    const spec = Array.isArray(json) ? { command: json } : json;
    for (const arg of spec.command) {
      for (const placeholder of arg.match(/\{[^{}]*\}/g) ?? []) {
        if (placeholder !== '{file}' && placeholder !== '{version}') fail(`${step}: unknown placeholder ${placeholder} (only {file} and {version} are substituted)`);
      }
    }
    const program = spec.command[0]!;
    if (program.includes('{')) fail(`${step}: the program itself cannot be a placeholder`);
    const found = findProgram(program);
    if (!found.ok) fail(`${step}: ${found.why}`);
    return { argv: spec.command, timeoutMs: Math.round((spec.timeoutSeconds ?? entry.timeoutSeconds ?? DEFAULT_DEADLINES[step]) * 1000), exitCodes: spec.exitCodes ?? [0] };
  };
  const check = command('check');
  const reload = command('reload');
  const health = command('health');
  const owner = entry.owner === undefined ? undefined : resolveOwner(entry.owner);
  if (owner && typeof owner === 'string') fail(`owner: ${owner}`);
  const named = reload ?? health ?? check;
  return {
    id,
    engine: entry.engine ?? (named ? path.basename(named.argv[0]!) : id),
    path: target,
    mode: entry.mode === undefined ? 0o644 : parseInt(entry.mode, 8),
    ...(owner && typeof owner !== 'string' ? { owner } : {}),
    ...(check ? { check } : {}),
    ...(reload ? { reload } : {}),
    ...(health ? { health } : {}),
  };
}

/** Where a program named in a command is (PATH is searched for a bare name), or why it cannot run. */
export function findProgram(program: string): { ok: true; file: string } | { ok: false; why: string } {
  const executable = (file: string) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (program.includes('/')) {
    if (!path.isAbsolute(program)) return { ok: false, why: `the program "${program}" must be a bare name (found on PATH) or an absolute path` };
    if (!fs.existsSync(program)) return { ok: false, why: `the program ${program} does not exist` };
    return executable(program) ? { ok: true, file: program } : { ok: false, why: `the program ${program} is not an executable file` };
  }
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const file = path.join(dir, program);
    if (executable(file)) return { ok: true, file };
  }
  return { ok: false, why: `the program "${program}" is not found on PATH (${dirs.join(path.delimiter) || 'empty'}); install it or give its absolute path` };
}

/** "user", "user:group", "uid:gid" to ids (a user name brings its primary group; a bare uid keeps the file's group), from /etc/passwd and /etc/group; a string says why not. */
function resolveOwner(text: string): { uid: number; gid: number } | string {
  const [user = '', group] = text.split(':');
  const table = (file: string) => {
    try {
      return fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .map((line) => line.split(':'))
        .filter((fields) => fields.length >= 4);
    } catch {
      return [];
    }
  };
  let uid: number | undefined;
  let gid: number | undefined;
  if (/^\d+$/.test(user)) uid = Number(user);
  else {
    const row = table('/etc/passwd').find((fields) => fields[0] === user);
    if (!row) return `no user named "${user}" on this machine`;
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (group !== undefined) {
    if (/^\d+$/.test(group)) gid = Number(group);
    else {
      const row = table('/etc/group').find((fields) => fields[0] === group);
      if (!row) return `no group named "${group}" on this machine`;
      gid = Number(row[2]);
    }
  }
  // -1: the group is left as it is.
  return { uid, gid: gid ?? -1 };
}
