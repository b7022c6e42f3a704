import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SettingsError } from '../src-main/engine/errors.js';
import { DEFAULT_SCHEDULE } from '../src-main/engine/schedule.js';
import { DEFAULT_SETTINGS, Settings, type SettingsData } from '../src-main/engine/settings.js';
import { runMainInProcess } from './helpers/cli.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
let rootFile: string;

beforeEach(() => {
  dir = tempDir('bulwark-settings-');
  // Settings only check that a trusted root file exists; the engine checks what is in it.
  rootFile = path.join(dir, 'root.json');
  fs.writeFileSync(rootFile, JSON.stringify({ signed: { _type: 'root' }, signatures: [] }));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const settingsFile = () => path.join(dir, 'settings.json');
const backups = () => fs.readdirSync(dir).filter((n) => n.startsWith('settings.json.damaged-'));

describe('Settings.open', () => {
  it('creates settings.json with the defaults (hourly) in a fresh directory', () => {
    const fresh = path.join(dir, 'nested', 'data');
    const settings = Settings.open(fresh);
    expect(settings.recovered).toBeUndefined();
    expect(settings.data).toEqual(DEFAULT_SETTINGS);
    expect(settings.data.schedule).toEqual({ kind: 'interval', every: 1, unit: 'hours' });
    expect(settings.data.schedule).toEqual(DEFAULT_SCHEDULE);
    expect(settings.data.source).toEqual({ url: '', trustedRoot: '' });
    const onDisk = JSON.parse(fs.readFileSync(path.join(fresh, 'settings.json'), 'utf8')) as SettingsData;
    expect(onDisk).toEqual(DEFAULT_SETTINGS);
  });

  it('returns a copy: changing the returned data does not change the settings', () => {
    const settings = Settings.open(dir);
    const data = settings.data;
    data.startAtLogin = true;
    data.schedule = { kind: 'daily', at: '01:00' };
    expect(settings.data).toEqual(DEFAULT_SETTINGS);
  });

  it('keeps valid values across a reopen', () => {
    const settings = Settings.open(dir);
    const changed: string[] = [];
    settings.onChange((key) => changed.push(key));
    settings.set('schedule', { kind: 'interval', every: 15, unit: 'minutes' });
    settings.set('source', { url: 'https://updates.example.com/bulwark', trustedRoot: rootFile });
    settings.set('notifications', { updateFailed: false, componentsInstalled: true });
    settings.set('startAtLogin', true);
    expect(changed).toEqual(['schedule', 'source', 'notifications', 'startAtLogin']);

    const reopened = Settings.open(dir);
    expect(reopened.recovered).toBeUndefined();
    expect(reopened.data).toEqual({
      ...DEFAULT_SETTINGS,
      schedule: { kind: 'interval', every: 15, unit: 'minutes' },
      source: { url: 'https://updates.example.com/bulwark', trustedRoot: rootFile },
      notifications: { updateFailed: false, componentsInstalled: true },
      startAtLogin: true,
    });

    reopened.set('schedule', { kind: 'daily', at: '03:30' });
    reopened.set('source', { url: '', trustedRoot: '' });
    expect(Settings.open(dir).data.schedule).toEqual({ kind: 'daily', at: '03:30' });
    expect(Settings.open(dir).data.source).toEqual({ url: '', trustedRoot: '' });
  });
});

describe('refused values', () => {
  const previous: SettingsData = {
    ...DEFAULT_SETTINGS,
    schedule: { kind: 'interval', every: 15, unit: 'minutes' },
    source: { url: 'http://127.0.0.1:8080/source', trustedRoot: '' },
    notifications: { updateFailed: true, componentsInstalled: false },
    startAtLogin: true,
  };

  function seeded(): Settings {
    const settings = Settings.open(dir);
    settings.set('schedule', previous.schedule);
    settings.set('source', { ...previous.source, trustedRoot: rootFile });
    settings.set('notifications', previous.notifications);
    settings.set('startAtLogin', previous.startAtLogin);
    return settings;
  }

  function expectRefused(action: () => void, message: RegExp): SettingsError {
    let caught: unknown;
    try {
      action();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SettingsError);
    expect((caught as SettingsError).code).toBe('ERR_SETTINGS');
    expect((caught as SettingsError).message).toMatch(message);
    return caught as SettingsError;
  }

  const cases: { name: string; apply: (s: Settings) => void; message: RegExp }[] = [
    {
      name: 'a schedule of every 7 minutes',
      apply: (s) => s.set('schedule', { kind: 'interval', every: 7, unit: 'minutes' }),
      message: /every 7 minutes is not offered; choose one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 minutes/,
    },
    {
      name: 'a schedule of every 5 hours',
      apply: (s) => s.set('schedule', { kind: 'interval', every: 5, unit: 'hours' }),
      message: /every 5 hours is not offered; choose one of 1, 2, 3, 4, 6, 8, 12 hours/,
    },
    {
      name: 'a daily schedule at 25:00',
      apply: (s) => s.set('schedule', { kind: 'daily', at: '25:00' }),
      message: /daily time "25:00" must be HH:MM in 24-hour form/,
    },
    {
      name: 'a source URL ftp://x',
      apply: (s) => s.set('source', { url: 'ftp://x', trustedRoot: rootFile }),
      message: /invalid source: the update source must be an http or https URL, not ftp:; the previous value is kept/,
    },
    {
      name: 'a source URL that is not a URL',
      apply: (s) => s.set('source', { url: 'updates.example.com', trustedRoot: rootFile }),
      message: /invalid source: "updates\.example\.com" is not a URL/,
    },
    {
      name: 'a source without a trusted root',
      apply: (s) => s.set('source', { url: 'https://updates.example.com/', trustedRoot: '' }),
      message: /a custom update source needs its trusted root\.json/,
    },
    {
      name: 'a trusted root file that does not exist',
      apply: (s) => s.set('source', { url: 'https://updates.example.com/', trustedRoot: path.join(dir, 'missing-root.json') }),
      message: /trusted root .*missing-root\.json does not exist/,
    },
    {
      name: 'a non-boolean startAtLogin',
      apply: (s) => s.set('startAtLogin', 'yes' as unknown as boolean),
      message: /invalid startAtLogin: .*startAtLogin.* must be boolean; the previous value is kept/,
    },
    {
      name: 'a non-boolean notification flag',
      apply: (s) => s.set('notifications', { updateFailed: 'no' as unknown as boolean, componentsInstalled: true }),
      message: /invalid notifications: .*updateFailed.* must be boolean/,
    },
  ];

  for (const { name, apply, message } of cases) {
    it(`refuses ${name} with a SettingsError and keeps the previous value`, () => {
      const settings = seeded();
      const before = fs.readFileSync(settingsFile());
      const changed: string[] = [];
      settings.onChange((key) => changed.push(key));

      expectRefused(() => apply(settings), message);

      expect(changed).toEqual([]);
      expect(fs.readFileSync(settingsFile())).toEqual(before);
      const reopened = Settings.open(dir);
      expect(reopened.recovered).toBeUndefined();
      expect(reopened.data).toEqual({ ...previous, source: { ...previous.source, trustedRoot: rootFile } });
    });
  }

  it('refuses a non-boolean given on the command line, says why, and keeps the previous value', async () => {
    seeded();
    const result = await runMainInProcess(['settings', '--data', dir, 'set', 'startAtLogin', 'maybe']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual(['bulwark settings: startAtLogin must be true or false, not "maybe"']);
    expect(result.stdout).toBe('');
    expect(Settings.open(dir).data.startAtLogin).toBe(true);

    const notification = await runMainInProcess(['settings', '--data', dir, 'set', 'notifications.updateFailed', '2']);
    expect(notification.code).toBe(2);
    expect(notification.stderr).toMatch(/^bulwark settings: notifications\.updateFailed must be true or false, not "2"\n$/);
    expect(Settings.open(dir).data.notifications).toEqual(previous.notifications);

    const get = await runMainInProcess(['settings', '--data', dir, 'get', 'startAtLogin']);
    expect(get.code).toBe(0);
    expect(JSON.parse(get.stdout)).toBe(true);
  });

  it('refuses an invalid schedule given on the command line with exit code 2 (a settings error)', async () => {
    seeded();
    const result = await runMainInProcess(['settings', '--data', dir, 'set', 'schedule', 'every', '5', 'hours']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^bulwark settings: every 5 hours is not offered; choose one of .* hours\n$/);
    expect(Settings.open(dir).data.schedule).toEqual(previous.schedule);
  });
});

describe('a settings.json that is not JSON', () => {
  function expectRecovered(original: Buffer, reason: RegExp): void {
    const settings = Settings.open(dir);
    const found = backups();
    expect(found).toHaveLength(1);
    const backup = path.join(dir, found[0]!);
    expect(fs.readFileSync(backup)).toEqual(original);
    expect(settings.data).toEqual(DEFAULT_SETTINGS);
    expect(JSON.parse(fs.readFileSync(settingsFile(), 'utf8'))).toEqual(DEFAULT_SETTINGS);
    expect(fs.statSync(settingsFile()).mode & 0o777).toBe(0o600);
    expect(settings.recovered).toBeDefined();
    expect(settings.recovered).toContain(backup);
    expect(settings.recovered).toContain(settingsFile());
    expect(settings.recovered).toMatch(reason);
    expect(settings.recovered).toMatch(/the defaults were restored/);

    // The restored file is a normal one again: reopening reports nothing and settings persist.
    settings.set('schedule', { kind: 'interval', every: 30, unit: 'minutes' });
    const reopened = Settings.open(dir);
    expect(reopened.recovered).toBeUndefined();
    expect(reopened.data.schedule).toEqual({ kind: 'interval', every: 30, unit: 'minutes' });
    expect(backups()).toHaveLength(1);
  }

  it('backs up a file that is not JSON and restores the defaults', () => {
    const original = Buffer.from('{"schedule": {"kind": "interval", "every": 15, \u0000 oops');
    fs.writeFileSync(settingsFile(), original);
    expectRecovered(original, /JSON/i);
  });

  it('backs up an empty file', () => {
    fs.writeFileSync(settingsFile(), '');
    expectRecovered(Buffer.alloc(0), /JSON/i);
  });

  it('backs up JSON that is not an object', () => {
    const original = Buffer.from('["schedule", "hourly"]');
    fs.writeFileSync(settingsFile(), original);
    expectRecovered(original, /not hold a JSON object/);
  });
});

describe('a settings.json with invalid settings', () => {
  /** A file as a person might have edited it: a good source and proxy, and a schedule in words. */
  function edited(changes: Record<string, unknown>): { original: Buffer; kept: SettingsData } {
    const kept: SettingsData = {
      ...DEFAULT_SETTINGS,
      source: { url: 'https://updates.example.com/bulwark/', trustedRoot: rootFile },
      proxy: { enabled: true, host: 'proxy.example.com', port: 3128, username: 'ops', password: 'hunter2' },
      agents: ['agent-1.example.com'],
      startAtLogin: true,
    };
    const original = Buffer.from(JSON.stringify({ ...kept, ...changes }, null, 2));
    fs.writeFileSync(settingsFile(), original, { mode: 0o600 });
    return { original, kept };
  }

  it('keeps every valid setting, resets only the invalid one and names it', () => {
    const { original, kept } = edited({ schedule: 'every blue moon' });
    const settings = Settings.open(dir);
    expect(settings.data).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE });
    expect(settings.recovered).toBe(`${settingsFile()}: "schedule" was invalid ("every blue moon"); using the default hourly; the original was saved as ${path.join(dir, backups()[0]!)}`);

    // Repaired on disk, the original kept beside it; the repaired file opens cleanly.
    expect(backups()).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, backups()[0]!))).toEqual(original);
    expect(JSON.parse(fs.readFileSync(settingsFile(), 'utf8'))).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE });
    expect(fs.statSync(settingsFile()).mode & 0o777).toBe(0o600);
    const reopened = Settings.open(dir);
    expect(reopened.recovered).toBeUndefined();
    expect(reopened.data).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE });
    expect(backups()).toHaveLength(1);
  });

  it('names every invalid setting, never shows the proxy password, and keeps keys it does not know', () => {
    const { kept } = edited({
      schedule: { kind: 'interval', every: 7, unit: 'minutes' },
      proxy: { enabled: true, host: 'proxy.example.com', port: 0, username: 'ops', password: 'hunter2' },
      source: { url: 'ftp://x', trustedRoot: '' },
      futureSetting: { kept: true },
    });
    const settings = Settings.open(dir);
    expect(settings.data).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE, proxy: DEFAULT_SETTINGS.proxy, source: DEFAULT_SETTINGS.source, futureSetting: { kept: true } });
    expect(settings.recovered).toContain('"schedule" was invalid ({"kind":"interval","every":7,"unit":"minutes"}); using the default hourly');
    expect(settings.recovered).toContain('"source" was invalid ({"url":"ftp://x","trustedRoot":""}); using the default (no update source)');
    expect(settings.recovered).toContain('"proxy" was invalid ({"enabled":true,"host":"proxy.example.com","port":0,"username":"ops","password":"(hidden)"}); using the default (no proxy)');
    expect(settings.recovered).not.toContain('hunter2');
    expect(JSON.parse(fs.readFileSync(settingsFile(), 'utf8'))).toMatchObject({ agents: kept.agents, startAtLogin: true, futureSetting: { kept: true } });
  });

  describe('opened read-only', () => {
    it('reads the valid settings and the defaults for the invalid one, and never touches the file', () => {
      const { original, kept } = edited({ schedule: 'every blue moon' });
      const before = fs.statSync(settingsFile());
      const settings = Settings.openReadOnly(dir);
      expect(settings.readOnly).toBe(true);
      expect(settings.data).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE });
      expect(settings.recovered).toBe(`${settingsFile()}: "schedule" was invalid ("every blue moon"); using the default hourly`);
      expect(() => settings.set('startAtLogin', false)).toThrow(/cannot change startAtLogin: .*settings\.json was opened read-only/);
      expect(fs.readFileSync(settingsFile())).toEqual(original);
      expect(fs.statSync(settingsFile()).mtimeMs).toBe(before.mtimeMs);
      expect(fs.readdirSync(dir).sort()).toEqual(['root.json', 'settings.json']);
    });

    it('reads the defaults from a file that is not JSON and leaves it as it is', () => {
      fs.writeFileSync(settingsFile(), 'not json at all');
      const settings = Settings.openReadOnly(dir);
      expect(settings.data).toEqual(DEFAULT_SETTINGS);
      expect(settings.recovered).toMatch(/settings\.json could not be used \(.*JSON.*\); using the defaults$/);
      expect(fs.readFileSync(settingsFile(), 'utf8')).toBe('not json at all');
      expect(backups()).toEqual([]);
    });

    it('creates neither settings.json nor its directory', () => {
      const missing = path.join(dir, 'nested', 'data');
      const settings = Settings.openReadOnly(missing);
      expect(settings.data).toEqual(DEFAULT_SETTINGS);
      expect(settings.recovered).toBeUndefined();
      expect(fs.existsSync(path.join(dir, 'nested'))).toBe(false);
      Settings.openReadOnly(dir);
      expect(fs.existsSync(settingsFile())).toBe(false);
    });
  });

  it('warns on the command line: "settings get" leaves the file alone, "settings set" repairs it', async () => {
    const { original, kept } = edited({ schedule: 'every blue moon' });
    const warning = `bulwark: warning: ${settingsFile()}: "schedule" was invalid ("every blue moon"); using the default hourly`;

    const get = await runMainInProcess(['settings', '--data', dir, 'get', 'source']);
    expect(get.code).toBe(0);
    expect(JSON.parse(get.stdout)).toEqual(kept.source);
    expect(get.stderr).toBe(warning + '\n');
    expect(fs.readFileSync(settingsFile())).toEqual(original);

    const set = await runMainInProcess(['settings', '--data', dir, 'set', 'startAtLogin', 'false']);
    expect(set.code).toBe(0);
    expect(set.stderr).toBe(`${warning}; the original was saved as ${path.join(dir, backups()[0]!)}\n`);
    expect(fs.readFileSync(path.join(dir, backups()[0]!))).toEqual(original);
    expect(Settings.openReadOnly(dir).data).toEqual({ ...kept, schedule: DEFAULT_SCHEDULE, startAtLogin: false });
  });
});
