// Scheduled updates with node-schedule. A schedule is "every N minutes", "every N hours" or "daily
// at HH:MM", aligned to the clock (every 15 minutes runs at :00, :15, :30, :45) so intervals stay
// even; N must therefore divide the hour or the day.
import schedule from 'node-schedule';
import { SettingsError } from './errors.js';

export type Schedule =
  | { kind: 'interval'; every: number; unit: 'minutes' | 'hours' }
  | { kind: 'daily'; at: string };

export const DEFAULT_SCHEDULE: Schedule = { kind: 'interval', every: 1, unit: 'hours' };
export const MINUTE_INTERVALS = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30] as const;
export const HOUR_INTERVALS = [1, 2, 3, 4, 6, 8, 12] as const;

/** The cron expression for a schedule; throws SettingsError for values it cannot express. */
export function cronFor(s: Schedule): string {
  if (s.kind === 'daily') {
    const match = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(s.at);
    if (!match) throw new SettingsError(`daily time "${s.at}" must be HH:MM in 24-hour form, e.g. 03:30`, { field: 'schedule.at' });
    return `${Number(match[2])} ${Number(match[1])} * * *`;
  }
  if (s.unit === 'minutes') {
    if (!(MINUTE_INTERVALS as readonly number[]).includes(s.every)) {
      throw new SettingsError(`every ${s.every} minutes is not offered; choose one of ${MINUTE_INTERVALS.join(', ')} minutes`, { field: 'schedule.every' });
    }
    return s.every === 1 ? '* * * * *' : `*/${s.every} * * * *`;
  }
  if (!(HOUR_INTERVALS as readonly number[]).includes(s.every)) {
    throw new SettingsError(`every ${s.every} hours is not offered; choose one of ${HOUR_INTERVALS.join(', ')} hours`, { field: 'schedule.every' });
  }
  return s.every === 1 ? '0 * * * *' : `0 */${s.every} * * *`;
}

/** Parse what a person types: "hourly", "every 15 minutes", "every 6 hours", "daily 03:30". */
export function parseSchedule(text: string): Schedule {
  const t = text.trim().toLowerCase();
  let parsed: Schedule | undefined;
  if (t === 'hourly') parsed = DEFAULT_SCHEDULE;
  const every = /^every\s+(?:(\d{1,3})\s*)?(minutes?|min|m|hours?|h)$/.exec(t);
  if (every) parsed = { kind: 'interval', every: every[1] ? Number(every[1]) : 1, unit: every[2]!.startsWith('h') ? 'hours' : 'minutes' };
  const daily = /^daily(?:\s+at)?\s+(\d{1,2}:\d{2})$/.exec(t);
  if (daily) parsed = { kind: 'daily', at: daily[1]!.padStart(5, '0') };
  if (!parsed) throw new SettingsError(`"${text}" is not a schedule; write "hourly", "every 15 minutes", "every 6 hours" or "daily 03:30"`);
  cronFor(parsed);
  return parsed;
}

export function describeSchedule(s: Schedule): string {
  if (s.kind === 'daily') return `daily at ${s.at}`;
  if (s.every === 1) return s.unit === 'hours' ? 'hourly' : 'every minute';
  return `every ${s.every} ${s.unit}`;
}

/** Runs `task` on the current schedule; the schedule can change at any time without a restart. */
export class UpdateScheduler {
  private job: schedule.Job | undefined;

  constructor(private readonly task: () => void) {}

  set(s: Schedule): void {
    const cron = cronFor(s);
    this.stop();
    this.job = schedule.scheduleJob(cron, () => this.task());
  }

  /** When the next scheduled run is due, if scheduled. */
  next(): Date | null {
    // node-schedule 2.1 returns a CronDate here, not a Date.
    const next = this.job?.nextInvocation() as unknown as { toDate(): Date } | null | undefined;
    return next ? next.toDate() : null;
  }

  stop(): void {
    this.job?.cancel();
    this.job = undefined;
  }
}
