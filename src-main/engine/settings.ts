// Settings, persisted with one JSON schema: conf here in plain Node, electron-store (conf's Electron
// wrapper, same schema) in the desktop app. conf validates before it writes, so a refused value
// leaves the file as it was. A damaged settings file is backed up and replaced by the defaults.
import fs from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
import { SettingsError } from './errors.js';
import { cronFor, DEFAULT_SCHEDULE, HOUR_INTERVALS, MINUTE_INTERVALS, type Schedule } from './schedule.js';
import { checkSourceUrl } from './source.js';

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
}

/** The agents' port when none is set. */
export const DEFAULT_AGENT_PORT = 8470;

export interface SettingsData {
  schedule: Schedule;
  source: SourceSetting;
  proxy: ProxySetting;
  /** Agents' host names or addresses, to warn about ones this server cannot reach. */
  agents: string[];
  notifications: { updateFailed: boolean; componentsInstalled: boolean };
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
  distribution: { enabled: true, listen: [], pollSeconds: 300, spreadSeconds: 30 },
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
    properties: { updateFailed: { type: 'boolean' }, componentsInstalled: { type: 'boolean' } },
  },
  startAtLogin: { type: 'boolean' },
  distribution: {
    type: 'object',
    additionalProperties: false,
    required: ['enabled', 'listen', 'pollSeconds', 'spreadSeconds'],
    properties: {
      enabled: { type: 'boolean' },
      listen: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$' } },
      pollSeconds: { type: 'integer', minimum: 10, maximum: 86400 },
      spreadSeconds: { type: 'integer', minimum: 0, maximum: 3600 },
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

/** The options every settings store gets: one file, one schema, validated before each write. */
export function settingsStoreOptions(dir: string) {
  return {
    cwd: dir,
    schema: SETTINGS_SCHEMA as never,
    defaults: DEFAULT_SETTINGS,
    clearInvalidConfig: false,
    watch: false,
    // The proxy password is in here: readable by its owner only.
    configFileMode: 0o600,
  } as const;
}

/** Makes the store behind Settings: conf here, electron-store in the desktop app (src-main/electron/adapter.ts). */
export type SettingsStoreFactory = (options: ReturnType<typeof settingsStoreOptions>) => SettingsBackend;

const confStore: SettingsStoreFactory = (options) => new Conf<SettingsData>({ ...options, configName: 'settings', projectName: 'bulwark' });

export class Settings {
  /** Set when the file was damaged and replaced by defaults: say so to the user. */
  readonly recovered: string | undefined;
  private readonly listeners = new Set<(key: keyof SettingsData) => void>();

  private constructor(
    private readonly backend: SettingsBackend,
    recovered?: string,
    private readonly secrets?: SecretCodec,
  ) {
    this.recovered = recovered;
  }

  /** Open (or create) settings.json in `dir` with conf. */
  static open(dir: string, secrets?: SecretCodec, createStore: SettingsStoreFactory = confStore): Settings {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'settings.json');
    const create = () => createStore(settingsStoreOptions(dir));
    try {
      return new Settings(create(), undefined, secrets);
    } catch (error) {
      // Only a damaged file is set aside; an unreadable one (permissions, disk) is the user's to fix.
      const damaged = error instanceof SyntaxError || (error as Error).message.startsWith('Config schema violation');
      if (!fs.existsSync(file) || !damaged) throw new SettingsError(`cannot open ${file}: ${(error as Error).message}`, { cause: error });
      const backup = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(file, backup);
      const reason = (error as Error).message.split('\n')[0];
      return new Settings(create(), `${file} could not be used (${reason}); it was saved as ${backup} and the defaults were restored`, secrets);
    }
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

  /** Validate and save one setting; on refusal the old value stays and a SettingsError says why. */
  set<K extends keyof SettingsData>(key: K, value: SettingsData[K]): void {
    if (key === 'schedule') cronFor(value as Schedule);
    if (key === 'proxy') checkProxy(value as ProxySetting);
    if (key === 'agents') {
      for (const agent of value as string[]) {
        if (!HOST_PATTERN.test(agent)) throw new SettingsError(`invalid agents: "${agent}" is not a host name or IP address; the previous value is kept`);
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
      const message = (error as Error).message.replace(/^Config schema violation: /, '');
      throw new SettingsError(`invalid ${key}: ${message}; the previous value is kept`, { cause: error });
    }
    for (const listener of this.listeners) listener(key);
  }

  onChange(listener: (key: keyof SettingsData) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
