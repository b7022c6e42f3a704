// Settings, persisted with one JSON schema: conf here in plain Node, electron-store (conf's Electron
// wrapper, same schema) in the desktop app. conf validates before it writes, so a refused value
// leaves the file as it was. In a settings file with invalid fields only those fields fall back to
// their defaults; one that is not JSON at all falls back entirely. Opened to write, the file is then
// repaired (the original kept beside it); opened read-only, it is never touched.
import fs from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import Conf from 'conf';
import { FileError, SettingsError } from './errors.js';
import { writeFileAtomic } from './files.js';
import { damagedName, noteSetAside } from './set-aside.js';
import { cronFor, DEFAULT_SCHEDULE, describeSchedule, HOUR_INTERVALS, MINUTE_INTERVALS, type Schedule } from './schedule.js';
import { checkSourceUrl } from './source.js';
import { AGENT_TIMING, DEFAULT_AGENT_PORT } from '../protocol/agent-protocol.js';

export interface SourceSetting {
  /** Base URL of the update source; empty means none configured yet. */
  url: string;
  /** Path of the trusted root.json imported for that source. */
  trustedRoot: string;
}

export interface ProxySetting {
  enabled: boolean;
  host: string;
  port: number;
  username: string;
  password: string;
}

/** How the server serves its agents (src-main/distribution). */
export interface DistributionSetting {
  /** Serve agents at all. */
  enabled: boolean;
  /** "ADDRESS:PORT" to listen on; none means every address family the host has, on DEFAULT_AGENT_PORT. */
  listen: string[];
  /** Seconds between an agent's polls and reports (it counts as unreachable after twice this). */
  pollSeconds: number;
  /** Longest random wait of an agent between a release notification and its download. */
  spreadSeconds: number;
  /** Also announce releases through this MQTT broker ("mqtt://host:port/topic"); absent or "" for none. */
  notify?: string;
  /** Ring by ring: canary, then early, then broad (src-main/distribution/rollout.ts); the defaults when absent. */
  rollout?: { enabled: boolean; soakSeconds: number; canaryFailures: number; failurePercent: number };
  /** File threads taking the agents' connections off the main thread (0: the main thread answers them); when absent, one per core (up to 4) once 1,000 agents are enrolled. */
  threads?: number;
}

export interface SettingsData {
  schedule: Schedule;
  source: SourceSetting;
  proxy: ProxySetting;
  /** Agents' host names or addresses, to warn about ones this server cannot reach. */
  agents: string[];
  /**
   * What to tell, and where besides the desktop: `webhook` (an http(s) URL that gets a JSON POST) and
   * `syslog` ("udp://HOST:PORT" or "tcp://HOST:PORT", RFC 5424), for a server without a desktop.
   */
  notifications: { updateFailed: boolean; componentsInstalled: boolean; webhook?: string; syslog?: string };
  startAtLogin: boolean;
  distribution: DistributionSetting;
}

export const DEFAULT_SETTINGS: SettingsData = {
  schedule: DEFAULT_SCHEDULE,
  source: { url: '', trustedRoot: '' },
  proxy: { enabled: false, host: '', port: 8080, username: '', password: '' },
  agents: [],
  notifications: { updateFailed: true, componentsInstalled: true },
  startAtLogin: false,
  distribution: { enabled: true, listen: [], pollSeconds: 300, spreadSeconds: 30, notify: '' },
};

/** The one schema for every settings store (conf and electron-store). */
export const SETTINGS_SCHEMA = {
  schedule: {
    oneOf: [
      {
        type: 'object',
        additionalProperties: false,
        required: ['kind', 'every', 'unit'],
        properties: { kind: { const: 'interval' }, every: { type: 'integer' }, unit: { enum: ['minutes', 'hours'] } },
        if: { properties: { unit: { const: 'minutes' } } },
        then: { properties: { every: { enum: [...MINUTE_INTERVALS] } } },
        else: { properties: { every: { enum: [...HOUR_INTERVALS] } } },
      },
      {
        type: 'object',
        additionalProperties: false,
        required: ['kind', 'at'],
        properties: { kind: { const: 'daily' }, at: { type: 'string', pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' } },
      },
    ],
  },
  source: {
    type: 'object',
    additionalProperties: false,
    required: ['url', 'trustedRoot'],
    properties: {
      url: { type: 'string', maxLength: 2048, pattern: '^(|https?://.+)$' },
      trustedRoot: { type: 'string', maxLength: 4096 },
    },
  },
  proxy: {
    type: 'object',
    additionalProperties: false,
    required: ['enabled', 'host', 'port', 'username', 'password'],
    properties: {
      enabled: { type: 'boolean' },
      host: { type: 'string', maxLength: 253 },
      port: { type: 'integer', minimum: 1, maximum: 65535 },
      username: { type: 'string', maxLength: 256 },
      password: { type: 'string', maxLength: 4096 },
    },
  },
  agents: { type: 'array', maxItems: 10000, items: { type: 'string', minLength: 1, maxLength: 253 } },
  notifications: {
    type: 'object',
    additionalProperties: false,
    required: ['updateFailed', 'componentsInstalled'],
    properties: {
      updateFailed: { type: 'boolean' },
      componentsInstalled: { type: 'boolean' },
      webhook: { type: 'string', maxLength: 2048, pattern: '^(|https?://.+)$' },
      syslog: { type: 'string', maxLength: 300, pattern: '^(|(udp|tcp)://.+:[0-9]{1,5})$' },
    },
  },
  startAtLogin: { type: 'boolean' },
  distribution: {
    type: 'object',
    additionalProperties: false,
    required: ['enabled', 'listen', 'pollSeconds', 'spreadSeconds'],
    properties: {
      enabled: { type: 'boolean' },
      listen: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$' } },
      pollSeconds: { type: 'integer', minimum: AGENT_TIMING.pollSeconds.min, maximum: AGENT_TIMING.pollSeconds.max },
      spreadSeconds: { type: 'integer', minimum: AGENT_TIMING.spreadSeconds.min, maximum: AGENT_TIMING.spreadSeconds.max },
      notify: { type: 'string', maxLength: 2048, pattern: '^(|mqtts?://.+)$' },
      threads: { type: 'integer', minimum: 0, maximum: 16 },
      rollout: {
        type: 'object',
        additionalProperties: false,
        required: ['enabled', 'soakSeconds', 'canaryFailures', 'failurePercent'],
        properties: {
          enabled: { type: 'boolean' },
          soakSeconds: { type: 'integer', minimum: 0, maximum: 7 * 86400 },
          canaryFailures: { type: 'integer', minimum: 0, maximum: 100000 },
          failurePercent: { type: 'number', minimum: 0, maximum: 100 },
        },
      },
    },
  },
} as const;

/**
 * Encrypts secrets at rest (the proxy password). The desktop app passes one over Electron's
 * safeStorage; where none is available the password is stored as is, in a file only its owner reads.
 */
export interface SecretCodec {
  encrypt(plain: string): string;
  decrypt(stored: string): string;
}

const SECRET_PREFIX = 'enc:v1:';

/** What stores the settings: conf in plain Node, electron-store in the app (both are conf). */
export interface SettingsBackend {
  readonly store: SettingsData;
  set<K extends keyof SettingsData>(key: K, value: SettingsData[K]): void;
}

/** Host names, IPv4 and IPv6 literals (with or without brackets). */
const HOST_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]*:[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*)$/;

function checkProxy(proxy: ProxySetting): void {
  const fail = (field: keyof ProxySetting, message: string) => {
    throw new SettingsError(`invalid proxy: ${message}; the previous value is kept`, { field: `proxy.${field}` });
  };
  if (!Number.isInteger(proxy.port) || proxy.port < 1 || proxy.port > 65535) fail('port', `port must be a number from 1 to 65535`);
  if (proxy.host && !HOST_PATTERN.test(proxy.host)) fail('host', `"${proxy.host}" is not a host name or IP address`);
  if (proxy.enabled && !proxy.host) fail('host', 'a host is needed to use a proxy');
  if (/[:\r\n]/.test(proxy.username)) fail('username', 'the user name cannot contain ":" or line breaks');
  if (proxy.password && !proxy.username) fail('username', 'a password needs a user name');
}

/** The proxy password is in the settings file: readable by its owner only. */
const SETTINGS_FILE_MODE = 0o600;

/** The options every settings store gets: one file, one schema, validated before each write. */
export function settingsStoreOptions(dir: string) {
  return {
    cwd: dir,
    schema: SETTINGS_SCHEMA as never,
    defaults: DEFAULT_SETTINGS,
    clearInvalidConfig: false,
    watch: false,
    configFileMode: SETTINGS_FILE_MODE,
  } as const;
}

const SETTING_KEYS = Object.keys(SETTINGS_SCHEMA) as (keyof SettingsData)[];

/**
 * Each setting checked on its own, with the schema conf checks the whole file with (same draft too).
 * Compiled on first use: compiling at import would cost every CLI command a tenth of a second.
 */
const validSetting = (() => {
  let ajv: Ajv2020 | undefined;
  const validators = new Map<keyof SettingsData, ValidateFunction>();
  return (key: keyof SettingsData, value: unknown) => {
    let validate = validators.get(key);
    if (!validate) validators.set(key, (validate = (ajv ??= new Ajv2020()).compile(SETTINGS_SCHEMA[key])));
    return validate(value);
  };
})();

/** What a setting falls back to, in words. */
const DEFAULT_DESCRIPTIONS: Record<keyof SettingsData, string> = {
  schedule: describeSchedule(DEFAULT_SCHEDULE),
  source: '(no update source)',
  proxy: '(no proxy)',
  agents: '(no agents)',
  notifications: '(all notifications on)',
  startAtLogin: '(off)',
  distribution: `(agents served on port ${DEFAULT_AGENT_PORT} of every address family)`,
};

/** An invalid value, short and without the proxy password, to show in a message. */
function excerpt(key: keyof SettingsData, value: unknown): string {
  const shown = key === 'proxy' && value && typeof value === 'object' && 'password' in value ? { ...value, password: '(hidden)' } : value;
  const text = JSON.stringify(shown);
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

/** settings.json as found on disk, checked setting by setting. */
interface SettingsFile {
  /** The file's contents with each invalid setting replaced by its default (unknown keys kept). */
  contents: Record<string, unknown>;
  /** One phrase per invalid setting, or the reason the whole file is unusable. */
  problems: string[];
  /** The file is not a JSON object at all: nothing in it was kept. */
  unusable: boolean;
}

function readSettingsFile(file: string): SettingsFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { contents: {}, problems: [], unusable: false };
    // Permissions, a directory in its place, the disk: the user's to fix, not ours to paper over.
    throw new FileError(file, `cannot read ${file}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { contents: {}, problems: [(error as Error).message.split('\n')[0]!], unusable: true };
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { contents: {}, problems: ['it does not hold a JSON object'], unusable: true };
  const contents = { ...(parsed as Record<string, unknown>) };
  const problems: string[] = [];
  for (const key of SETTING_KEYS) {
    if (!Object.hasOwn(contents, key) || validSetting(key, contents[key])) continue;
    problems.push(`"${key}" was invalid (${excerpt(key, contents[key])}); using the default ${DEFAULT_DESCRIPTIONS[key]}`);
    contents[key] = structuredClone(DEFAULT_SETTINGS[key]);
  }
  return { contents, problems, unusable: false };
}

/** Settings opened read-only: a snapshot of the file that refuses changes. */
function readOnlyBackend(store: SettingsData): SettingsBackend {
  return {
    store,
    set() {
      throw new Error('these settings were opened read-only');
    },
  };
}

/** Makes the store behind Settings: conf here, electron-store in the desktop app (src-main/electron/adapter.ts). */
export type SettingsStoreFactory = (options: ReturnType<typeof settingsStoreOptions>) => SettingsBackend;

const confStore: SettingsStoreFactory = (options) => new Conf<SettingsData>({ ...options, configName: 'settings', projectName: 'bulwark' });

export class Settings {
  /** Set when the file had invalid settings or was unusable: say so to the user. */
  readonly recovered: string | undefined;
  private readonly listeners = new Set<(key: keyof SettingsData) => void>();

  private constructor(
    private readonly backend: SettingsBackend,
    readonly file: string,
    readonly readOnly: boolean,
    recovered?: string,
    private readonly secrets?: SecretCodec,
  ) {
    this.recovered = recovered;
  }

  /**
   * Open (or create) settings.json in `dir` to read and change it. Invalid settings in the file are
   * reset to their defaults and the file is repaired, its original kept as settings.json.damaged-<time>.
   */
  static open(dir: string, secrets?: SecretCodec, createStore: SettingsStoreFactory = confStore): Settings {
    const file = path.join(dir, 'settings.json');
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new FileError(dir, `cannot create ${dir}`, { cause: error });
    }
    const found = readSettingsFile(file);
    let recovered: string | undefined;
    if (found.problems.length) {
      const backup = damagedName(file);
      try {
        // Copy, then replace atomically: at every moment a whole settings.json is in place.
        fs.copyFileSync(file, backup, fs.constants.COPYFILE_EXCL);
        writeFileAtomic(file, JSON.stringify({ ...DEFAULT_SETTINGS, ...found.contents }, undefined, '\t'), SETTINGS_FILE_MODE);
      } catch (error) {
        throw new FileError(file, `cannot repair ${file}`, { cause: error });
      }
      recovered = found.unusable
        ? `${file} could not be used (${found.problems[0]}); it was saved as ${backup} and the defaults were restored`
        : `${file}: ${found.problems.join('; ')}; the original was saved as ${backup}`;
      try {
        // A reminder until the operator has looked (an agent's proxy, say, is among what fell back).
        noteSetAside(backup, {
          severity: 'warning',
          title: found.unusable ? 'The settings file was damaged: the defaults are in use' : 'Some settings were invalid: their defaults are in use',
          body: `${recovered}.`,
          action: `Check the settings (Settings in the console, or \`bulwark settings get\`) and set again what was lost; the damaged copy still holds it. Then delete ${backup} to clear this reminder.`,
        });
      } catch {
        // The warning is said anyway (recovered); only the reminder is lost.
      }
    }
    try {
      return new Settings(createStore(settingsStoreOptions(dir)), file, false, recovered, secrets);
    } catch (error) {
      // The contents were checked just above: what is left is the disk or permissions.
      throw new FileError(file, `cannot open ${file}`, { cause: error });
    }
  }

  /**
   * Read settings.json in `dir` without ever writing it (nor creating it or `dir`): for commands that
   * only look. Invalid settings read as their defaults, and `recovered` says which.
   */
  static openReadOnly(dir: string, secrets?: SecretCodec): Settings {
    const file = path.join(dir, 'settings.json');
    const found = readSettingsFile(file);
    const store = { ...structuredClone(DEFAULT_SETTINGS), ...found.contents } as SettingsData;
    let recovered: string | undefined;
    if (found.problems.length) {
      recovered = found.unusable ? `${file} could not be used (${found.problems[0]}); using the defaults` : `${file}: ${found.problems.join('; ')}`;
    }
    return new Settings(readOnlyBackend(store), file, true, recovered, secrets);
  }

  get data(): SettingsData {
    const data = structuredClone(this.backend.store);
    const stored = data.proxy.password;
    if (stored.startsWith(SECRET_PREFIX)) {
      try {
        data.proxy.password = this.secrets ? this.secrets.decrypt(stored.slice(SECRET_PREFIX.length)) : '';
      } catch {
        // Encrypted by another user or machine: unusable here, so treat it as not set.
        data.proxy.password = '';
      }
    }
    return data;
  }

  /**
   * Validate and save one setting; on refusal the old value stays and a SettingsError says why. A
   * FileError says the file could not be written (the value was fine).
   */
  set<K extends keyof SettingsData>(key: K, value: SettingsData[K]): void {
    if (this.readOnly) throw new Error(`cannot change ${key}: ${this.file} was opened read-only`);
    if (key === 'schedule') cronFor(value as Schedule);
    if (key === 'proxy') checkProxy(value as ProxySetting);
    if (key === 'agents') {
      for (const agent of value as string[]) {
        if (!HOST_PATTERN.test(agent)) throw new SettingsError(`invalid agents: "${agent}" is not a host name or IP address; the previous value is kept`);
      }
    }
    if (key === 'notifications') {
      const { webhook, syslog } = value as SettingsData['notifications'];
      if (webhook) {
        let url: URL | undefined;
        try {
          url = new URL(webhook);
        } catch {
          // said below
        }
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new SettingsError(`the webhook "${webhook}" is not an http or https URL; the previous value is kept`, { field: 'notifications.webhook' });
      }
      if (syslog && !/^(udp|tcp):\/\/(\[[0-9a-fA-F:.]+\]|[^:[\]\s/]+):([0-9]{1,5})$/.test(syslog)) {
        throw new SettingsError(`syslog "${syslog}" must be udp://HOST:PORT or tcp://HOST:PORT, e.g. udp://127.0.0.1:514; the previous value is kept`, { field: 'notifications.syslog' });
      }
    }
    if (key === 'source') {
      const source = value as SourceSetting;
      if (source.url) {
        try {
          // Normalized (scheme and host lower-cased) so the schema and later comparisons see one form.
          value = { ...source, url: checkSourceUrl(source.url).href } as SettingsData[K];
        } catch (error) {
          throw new SettingsError(`invalid source: ${(error as Error).message}; the previous value is kept`, { field: 'source.url' });
        }
      }
      if (source.url && !source.trustedRoot) throw new SettingsError('a custom update source needs its trusted root.json', { field: 'source.trustedRoot' });
      if (source.trustedRoot && !fs.existsSync(source.trustedRoot)) throw new SettingsError(`trusted root ${source.trustedRoot} does not exist`, { field: 'source.trustedRoot' });
    }
    let stored: SettingsData[K] = value;
    if (key === 'proxy' && this.secrets && (value as ProxySetting).password) {
      const proxy = value as ProxySetting;
      stored = { ...proxy, password: SECRET_PREFIX + this.secrets.encrypt(proxy.password) } as SettingsData[K];
    }
    try {
      this.backend.set(key, stored);
    } catch (error) {
      const message = (error as Error).message;
      if (message.startsWith('Config schema violation: ')) {
        throw new SettingsError(`invalid ${key}: ${message.replace(/^Config schema violation: /, '')}; the previous value is kept`, { cause: error });
      }
      // Not the value: the file could not be written (read-only, full, a directory in its place).
      throw new FileError(this.file, `cannot save ${key} to ${this.file}`, { cause: error });
    }
    for (const listener of this.listeners) listener(key);
  }

  onChange(listener: (key: keyof SettingsData) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
