import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Engine, type PersistedState } from '../src-main/engine/engine.js';
import { SettingsError } from '../src-main/engine/errors.js';
import type { RunRecord } from '../src-main/engine/history.js';
import {
  cronFor,
  DEFAULT_SCHEDULE,
  describeSchedule,
  HOUR_INTERVALS,
  MINUTE_INTERVALS,
  parseSchedule,
  UpdateScheduler,
  type Schedule,
} from '../src-main/engine/schedule.js';
import { Settings } from '../src-main/engine/settings.js';
import { nextAlignedMinute, nextLocalTime, until } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

function settingsError(action: () => unknown): SettingsError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as SettingsError).code).toBe('ERR_SETTINGS');
    return error as SettingsError;
  }
  throw new Error('expected a SettingsError, but nothing was thrown');
}

describe('parseSchedule', () => {
  it.each<[string, Schedule]>([
    ['hourly', { kind: 'interval', every: 1, unit: 'hours' }],
    ['  Hourly ', { kind: 'interval', every: 1, unit: 'hours' }],
    ['every 15 minutes', { kind: 'interval', every: 15, unit: 'minutes' }],
    ['every 1 minute', { kind: 'interval', every: 1, unit: 'minutes' }],
    ['every 30 min', { kind: 'interval', every: 30, unit: 'minutes' }],
    ['every 5m', { kind: 'interval', every: 5, unit: 'minutes' }],
    ['EVERY 20 MINUTES', { kind: 'interval', every: 20, unit: 'minutes' }],
    ['every 6 hours', { kind: 'interval', every: 6, unit: 'hours' }],
    ['every 1 hour', { kind: 'interval', every: 1, unit: 'hours' }],
    ['every 12h', { kind: 'interval', every: 12, unit: 'hours' }],
    ['daily 03:30', { kind: 'daily', at: '03:30' }],
    ['daily at 23:59', { kind: 'daily', at: '23:59' }],
    ['daily 3:05', { kind: 'daily', at: '03:05' }],
    ['daily 00:00', { kind: 'daily', at: '00:00' }],
  ])('parses %j', (text, expected) => {
    expect(parseSchedule(text)).toEqual(expected);
  });

  it.each<[string, RegExp]>([
    ['every 7 minutes', /^every 7 minutes is not offered; choose one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 minutes$/],
    ['every 45 minutes', /^every 45 minutes is not offered; choose one of/],
    ['every 0 minutes', /^every 0 minutes is not offered/],
    ['every 5 hours', /^every 5 hours is not offered; choose one of 1, 2, 3, 4, 6, 8, 12 hours$/],
    ['every 24 hours', /^every 24 hours is not offered/],
    ['daily 25:00', /^daily time "25:00" must be HH:MM in 24-hour form, e\.g\. 03:30$/],
    ['daily 12:60', /^daily time "12:60" must be HH:MM in 24-hour form/],
    ['weekly', /^"weekly" is not a schedule; write "hourly", "every 15 minutes", "every 6 hours" or "daily 03:30"$/],
    ['', /^"" is not a schedule/],
    ['every fifteen minutes', /^"every fifteen minutes" is not a schedule/],
    ['every 15 seconds', /^"every 15 seconds" is not a schedule/],
    ['daily 3pm', /^"daily 3pm" is not a schedule/],
  ])('refuses %j with a clear SettingsError', (text, message) => {
    expect(settingsError(() => parseSchedule(text)).message).toMatch(message);
  });
});

describe('cronFor', () => {
  it.each<[Schedule, string]>([
    [{ kind: 'interval', every: 1, unit: 'minutes' }, '* * * * *'],
    [{ kind: 'interval', every: 15, unit: 'minutes' }, '*/15 * * * *'],
    [{ kind: 'interval', every: 30, unit: 'minutes' }, '*/30 * * * *'],
    [{ kind: 'interval', every: 1, unit: 'hours' }, '0 * * * *'],
    [{ kind: 'interval', every: 6, unit: 'hours' }, '0 */6 * * *'],
    [{ kind: 'daily', at: '03:30' }, '30 3 * * *'],
    [{ kind: 'daily', at: '00:05' }, '5 0 * * *'],
    [{ kind: 'daily', at: '23:59' }, '59 23 * * *'],
  ])('%j -> %s', (s, cron) => {
    expect(cronFor(s)).toBe(cron);
  });

  it('accepts exactly the offered intervals, which divide the hour or the day evenly', () => {
    for (let every = 0; every <= 60; every++) {
      const offered = (MINUTE_INTERVALS as readonly number[]).includes(every);
      if (offered) {
        expect(60 % every).toBe(0);
        expect(cronFor({ kind: 'interval', every, unit: 'minutes' })).toMatch(/^(\*|\*\/\d+) \* \* \* \*$/);
      } else {
        expect(settingsError(() => cronFor({ kind: 'interval', every, unit: 'minutes' })).message).toContain(`every ${every} minutes is not offered`);
      }
    }
    for (let every = 0; every <= 24; every++) {
      const offered = (HOUR_INTERVALS as readonly number[]).includes(every);
      if (offered) {
        expect(24 % every).toBe(0);
        expect(cronFor({ kind: 'interval', every, unit: 'hours' })).toMatch(/^0 (\*|\*\/\d+) \* \* \*$/);
      } else {
        expect(settingsError(() => cronFor({ kind: 'interval', every, unit: 'hours' })).message).toContain(`every ${every} hours is not offered`);
      }
    }
  });

  it.each(['24:00', '3:30', '03:3', '0330', '03:30 ', 'noon', ''])('refuses the daily time %j', (at) => {
    expect(settingsError(() => cronFor({ kind: 'daily', at })).message).toBe(`daily time "${at}" must be HH:MM in 24-hour form, e.g. 03:30`);
  });

  it('refuses a fractional interval', () => {
    expect(settingsError(() => cronFor({ kind: 'interval', every: 7.5, unit: 'minutes' })).message).toContain('every 7.5 minutes is not offered');
  });
});

describe('describeSchedule', () => {
  it.each<[Schedule, string]>([
    [DEFAULT_SCHEDULE, 'hourly'],
    [{ kind: 'interval', every: 1, unit: 'minutes' }, 'every minute'],
    [{ kind: 'interval', every: 15, unit: 'minutes' }, 'every 15 minutes'],
    [{ kind: 'interval', every: 6, unit: 'hours' }, 'every 6 hours'],
    [{ kind: 'daily', at: '03:30' }, 'daily at 03:30'],
  ])('%j -> %s', (s, text) => {
    expect(describeSchedule(s)).toBe(text);
  });

  // `bulwark status` prints describeSchedule(); a person should be able to type that back into
  // `--schedule` or `bulwark settings set schedule`.
  it('describes every offered schedule in words parseSchedule accepts back', () => {
    const all: Schedule[] = [
      ...MINUTE_INTERVALS.map((every) => ({ kind: 'interval', every, unit: 'minutes' }) as const),
      ...HOUR_INTERVALS.map((every) => ({ kind: 'interval', every, unit: 'hours' }) as const),
      { kind: 'daily', at: '00:00' },
      { kind: 'daily', at: '07:45' },
    ];
    const refused = all.filter((s) => {
      try {
        return JSON.stringify(parseSchedule(describeSchedule(s))) !== JSON.stringify(s);
      } catch {
        return true;
      }
    });
    expect(refused.map(describeSchedule)).toEqual([]);
  });
});

describe('UpdateScheduler (fake clock)', () => {
  const start = new Date('2026-01-01T10:07:00Z');
  let scheduler: UpdateScheduler | undefined;
  let fired: Date[];

  beforeEach(() => {
    vi.useFakeTimers({ now: start });
    fired = [];
    scheduler = new UpdateScheduler(() => fired.push(new Date()));
  });

  afterEach(() => {
    scheduler?.stop();
    vi.useRealTimers();
  });

  const at = (d: Date) => d.toISOString();

  it('runs every 15 minutes on the quarter hours, and next() says when', async () => {
    scheduler!.set({ kind: 'interval', every: 15, unit: 'minutes' });
    const first = nextAlignedMinute(start, 15);
    const second = new Date(first.getTime() + 15 * 60_000);
    expect(first.toISOString()).toBe('2026-01-01T10:15:00.000Z'); // for every zone an offset of whole quarter hours
    expect(scheduler!.next()).toBeInstanceOf(Date);
    expect(at(scheduler!.next()!)).toBe(at(first));

    await vi.advanceTimersByTimeAsync(first.getTime() - Date.now() - 1);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired.map(at)).toEqual([at(first)]);
    expect(at(scheduler!.next()!)).toBe(at(second));

    await vi.advanceTimersByTimeAsync(15 * 60_000);
    expect(fired.map(at)).toEqual([at(first), at(second)]);
    expect(at(scheduler!.next()!)).toBe('2026-01-01T10:45:00.000Z');
  });

  it('runs hourly on the hour by default', async () => {
    scheduler!.set(DEFAULT_SCHEDULE);
    const first = nextAlignedMinute(start, 60);
    expect(at(scheduler!.next()!)).toBe(at(first));
    await vi.advanceTimersByTimeAsync(3 * 3_600_000);
    expect(fired.map(at)).toEqual([0, 1, 2].map((h) => at(new Date(first.getTime() + h * 3_600_000))));
  });

  it('runs daily at the local time given', async () => {
    scheduler!.set({ kind: 'daily', at: '03:30' });
    const first = nextLocalTime(start, 3, 30);
    expect(at(scheduler!.next()!)).toBe(at(first));
    await vi.advanceTimersByTimeAsync(first.getTime() - Date.now() + 24 * 3_600_000);
    expect(fired.map(at)).toEqual([at(first), at(new Date(first.getTime() + 24 * 3_600_000))]);
    expect(fired.every((d) => d.getHours() === 3 && d.getMinutes() === 30)).toBe(true);
  });

  it('moves next() and the actual run when the schedule changes, without a restart', async () => {
    scheduler!.set(DEFAULT_SCHEDULE);
    expect(at(scheduler!.next()!)).toBe(at(nextAlignedMinute(start, 60)));

    // Change before the first run: hourly (11:00) -> every 15 minutes (10:15).
    scheduler!.set({ kind: 'interval', every: 15, unit: 'minutes' });
    expect(at(scheduler!.next()!)).toBe('2026-01-01T10:15:00.000Z');
    await vi.advanceTimersByTimeAsync(8 * 60_000); // 10:15
    expect(fired.map(at)).toEqual(['2026-01-01T10:15:00.000Z']);

    // Change after it ran: every 15 minutes -> every 2 hours; 10:30 and 10:45 must not run.
    scheduler!.set({ kind: 'interval', every: 2, unit: 'hours' });
    const twoHourly = nextAlignedMinute(new Date(Date.now()), 60);
    while (twoHourly.getHours() % 2 !== 0) twoHourly.setHours(twoHourly.getHours() + 1);
    expect(at(scheduler!.next()!)).toBe(at(twoHourly));
    await vi.advanceTimersByTimeAsync(twoHourly.getTime() - Date.now() - 1);
    expect(fired).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired.map(at)).toEqual(['2026-01-01T10:15:00.000Z', at(twoHourly)]);

    // And back to a short interval: the long wait is dropped at once.
    scheduler!.set({ kind: 'interval', every: 5, unit: 'minutes' });
    const five = nextAlignedMinute(new Date(Date.now()), 5);
    expect(at(scheduler!.next()!)).toBe(at(five));
    await vi.advanceTimersByTimeAsync(five.getTime() - Date.now());
    expect(fired).toHaveLength(3);
    expect(at(fired[2]!)).toBe(at(five));
  });

  it('keeps the current schedule when set() is given an invalid one', async () => {
    scheduler!.set({ kind: 'interval', every: 15, unit: 'minutes' });
    expect(settingsError(() => scheduler!.set({ kind: 'interval', every: 7, unit: 'minutes' })).message).toContain('every 7 minutes is not offered');
    expect(at(scheduler!.next()!)).toBe('2026-01-01T10:15:00.000Z');
    await vi.advanceTimersByTimeAsync(8 * 60_000);
    expect(fired.map(at)).toEqual(['2026-01-01T10:15:00.000Z']);
  });

  it('stop() cancels: next() is null and nothing runs', async () => {
    expect(scheduler!.next()).toBeNull();
    scheduler!.set({ kind: 'interval', every: 1, unit: 'minutes' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fired).toHaveLength(1);
    scheduler!.stop();
    expect(scheduler!.next()).toBeNull();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(24 * 3_600_000);
    expect(fired).toHaveLength(1);
    scheduler!.stop(); // twice is harmless
  });
});

describe('Engine schedule follows the settings', () => {
  let source: TestSource;
  let dataDir: string;
  let engine: Engine | undefined;

  beforeEach(async () => {
    source = await new TestSource().start();
    source.addPattern('virus-pattern', { bytes: 50_000 });
    source.publish();
    dataDir = tempDir('bulwark-schedule-engine-');
  });

  afterEach(async () => {
    vi.useRealTimers();
    await engine?.stop();
    engine = undefined;
    await source.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(source.dir, { recursive: true, force: true });
  });

  const persisted = () => JSON.parse(fs.readFileSync(path.join(dataDir, 'state.json'), 'utf8')) as PersistedState;

  async function started(): Promise<Settings> {
    const settings = Settings.open(dataDir);
    settings.set('source', { url: source.url, trustedRoot: source.rootFile });
    engine = new Engine({ dataDir, settings });
    const record = await engine.start();
    expect(record.result).toBe('ok');
    expect(record.trigger).toBe('install');
    return settings;
  }

  it('moves nextRun() when the schedule setting changes while started', async () => {
    const settings = await started();

    const hourly = engine!.nextRun()!;
    expect(hourly).toBeInstanceOf(Date);
    expect(hourly.getMinutes()).toBe(0);
    expect(hourly.getSeconds()).toBe(0);
    expect(hourly.getTime()).toBeGreaterThan(Date.now());
    expect(hourly.getTime() - Date.now()).toBeLessThanOrEqual(3_600_000);
    expect(persisted().nextRun).toBe(hourly.toISOString());

    const before = new Date();
    settings.set('schedule', { kind: 'daily', at: '03:30' });
    const daily = engine!.nextRun()!;
    expect(daily.toISOString()).toBe(nextLocalTime(before, 3, 30).toISOString());
    expect(persisted().nextRun).toBe(daily.toISOString());
    expect(engine!.status().nextRun).toBe(daily.toISOString());

    settings.set('schedule', { kind: 'interval', every: 15, unit: 'minutes' });
    const quarter = engine!.nextRun()!;
    expect(quarter.getMinutes() % 15).toBe(0);
    expect(quarter.getSeconds()).toBe(0);
    expect(quarter.getTime()).toBeGreaterThan(Date.now());
    expect(quarter.getTime() - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    expect(persisted().nextRun).toBe(quarter.toISOString());

    // A refused value leaves the engine's schedule alone.
    expect(() => settings.set('schedule', { kind: 'interval', every: 7, unit: 'minutes' })).toThrow(SettingsError);
    expect(engine!.nextRun()!.toISOString()).toBe(quarter.toISOString());

    await engine!.stop();
    expect(engine!.nextRun()).toBeNull();
    expect(fs.existsSync(path.join(dataDir, 'bulwark.lock'))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'state.json'))).toBe(false);
    // After stop, settings changes no longer reach the engine.
    settings.set('schedule', { kind: 'interval', every: 5, unit: 'minutes' });
    expect(engine!.nextRun()).toBeNull();
    engine = undefined;
  });

  it('runs a scheduled update at the new time after the schedule changes', async () => {
    const settings = await started();
    const timestampRequests = () => source.requests.filter((r) => r.endsWith('timestamp.json')).length;
    expect(timestampRequests()).toBe(1);
    const runs: RunRecord[] = [];
    engine!.on('run', (run) => runs.push(run));

    // Only Date is faked (timers and I/O stay real, so HTTP works): the clock is set to 1.5 s
    // before a quarter hour and moves on with real time.
    const boundary = nextAlignedMinute(new Date(Date.now() + 60_000), 15);
    vi.useFakeTimers({ toFake: ['Date'], now: boundary.getTime() - 1_500, shouldAdvanceTime: true });
    settings.set('schedule', { kind: 'interval', every: 15, unit: 'minutes' });
    expect(engine!.nextRun()!.toISOString()).toBe(boundary.toISOString());

    const run = await until(() => runs[0], 15_000, 'the scheduled run');
    expect(run.trigger).toBe('schedule');
    expect(run.result).toBe('ok');
    expect(new Date(run.startedAt).getTime()).toBeGreaterThanOrEqual(boundary.getTime());
    expect(timestampRequests()).toBe(2);
    expect(engine!.nextRun()!.toISOString()).toBe(new Date(boundary.getTime() + 15 * 60_000).toISOString());
    vi.useRealTimers();
  });
});
