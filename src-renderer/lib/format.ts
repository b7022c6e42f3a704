// Words and numbers as the console shows them. Pure functions: the components stay markup.
import type { AgentCountsView, AgentsSummary, AgentStateView, EngineStateView, InstallMethod, RingView, ScheduleView, Trigger } from '../../src-main/console/contract.js';

import { savedWords } from '../../src-main/engine/words.js';

const KB = 1000;

/** 16.2 kB, 4.0 MB: decimal units, as the CLI prints them. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < KB) return `${Math.max(0, Math.round(bytes || 0))} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / KB;
  let unit = 0;
  while (value >= KB && unit < units.length - 1) {
    value /= KB;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** "saved 97%", "no saving", "compressed: no saving" (words.ts, as the log says it); undefined when unknown. */
export function savedShare(bytes: number, fullBytes: number, method: string = 'incremental'): string | undefined {
  return savedWords(method, bytes, fullBytes) || undefined;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

const STEPS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['second', 60],
  ['minute', 60],
  ['hour', 24],
  ['day', 7],
  ['week', 4.35],
  ['month', 12],
  ['year', Number.POSITIVE_INFINITY],
];

/** "3 minutes ago", "in 12 minutes", "just now". */
export function formatRelative(iso: string, now: number): string {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  let value = (time - now) / 1000;
  if (Math.abs(value) < 45) return value < 0 || Math.abs(value) < 5 ? 'just now' : 'in less than a minute';
  for (const [unit, size] of STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return relative.format(Math.round(value), 'year');
}

/** A time something is due (the next update): "in 12 minutes", "in less than a minute", "any moment now" once it has come. */
export function formatDue(iso: string, now: number): string {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  const seconds = (time - now) / 1000;
  if (seconds <= 0) return 'any moment now';
  if (seconds < 45) return 'in less than a minute';
  return formatRelative(iso, now);
}

export function formatAbsolute(iso: string): string {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : absolute.format(time);
}

export function formatClock(iso: string): string {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : timeOnly.format(time);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

export const TRIGGER_WORDS: Record<Trigger, string> = {
  install: 'First run',
  startup: 'At start',
  schedule: 'Scheduled',
  manual: 'Update now',
  notification: 'Told by the server',
};

export function methodWord(method: InstallMethod): string {
  return method === 'incremental' ? 'incremental' : 'full';
}

export function describeSchedule(schedule: ScheduleView): string {
  if (schedule.kind === 'daily') return `daily at ${schedule.at}`;
  if (schedule.every === 1) return schedule.unit === 'hours' ? 'every hour' : 'every minute';
  return `every ${schedule.every} ${schedule.unit}`;
}

/**
 * The engine state in words: "Up to date", "Checking for updates",
 * "Updating 3 of 7: Virus Pattern (downloading, incremental)", "Failed: <reason>".
 */
export function describeState(state: EngineStateView, nameOf: (id: string) => string, neverUpdated = false): string {
  switch (state.type) {
    case 'idle':
      return neverUpdated ? 'Not updated yet' : 'Up to date';
    case 'checking':
      return 'Checking for updates';
    case 'downloading':
      return `Updating ${state.index + 1} of ${state.total}: ${nameOf(state.component)} (downloading, ${methodWord(state.method)})`;
    case 'applying':
      return `Updating ${state.index + 1} of ${state.total}: ${nameOf(state.component)} (installing)`;
    case 'distributing':
      return 'Handing the new components to the agents';
    case 'failed':
      // In words only: the reminder says why and what to do, the history keeps the raw error.
      return 'Last update failed';
  }
}

/** A fallback display name for a component id the snapshot does not list yet. */
export function titleCase(id: string): string {
  return id
    .split('-')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join(' ');
}

/** An agent's state as the table's badge says it, with the badge's tone. */
export const AGENT_STATES: Record<AgentStateView, { word: string; tone: 'ok' | 'warning' | 'info' | 'failed' }> = {
  current: { word: 'current', tone: 'ok' },
  held: { word: 'held', tone: 'info' },
  outdated: { word: 'outdated', tone: 'warning' },
  notified: { word: 'notified', tone: 'warning' },
  updating: { word: 'updating', tone: 'info' },
  failed: { word: 'failed', tone: 'failed' },
  unreachable: { word: 'unreachable', tone: 'failed' },
};

/** "1,234": counts as the console shows them. */
export function formatCount(count: number): string {
  return count.toLocaleString('en-US');
}

export function plural(count: number, one: string, many = `${one}s`): string {
  return `${formatCount(count)} ${count === 1 ? one : many}`;
}

/** "VP" for Virus Pattern: a short label for a component in a narrow column. */
export function initials(name: string): string {
  return name
    .split(/[\s-]+/)
    .filter(Boolean)
    .map((word) => word.charAt(0).toUpperCase())
    .join('');
}

/**
 * The agents in a few words, for the overview: "2 of 2 current", "1 of 3 current · 1 unreachable ·
 * 1 failed", "1 of 2 current · 1 held by the rollout", "none yet", "turned off", "cannot be served".
 */
export function describeAgents(summary: AgentsSummary): string {
  if (summary.error) return 'cannot be served';
  const { counts } = summary;
  if (!summary.enabled) return counts.total ? `turned off (${plural(counts.total, 'agent')} enrolled)` : 'turned off';
  if (counts.total === 0) return 'none yet';
  const problems = (['unreachable', 'failed', 'outdated', 'updating'] as const satisfies readonly (keyof AgentCountsView)[])
    .filter((key) => counts[key] > 0)
    .map((key) => `${formatCount(counts[key])} ${key}`);
  // Held on purpose by the rollout: said, but after the problems.
  if (counts.held > 0) problems.push(`${formatCount(counts.held)} held by the rollout`);
  return [`${formatCount(counts.current)} of ${formatCount(counts.total)} current`, ...problems].join(' · ');
}


/** "45 seconds", "15 minutes", "1 hour 30 minutes", "2 days": a length of time such as a soak. */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return plural(s, 'second');
  const parts: [number, string][] = [
    [Math.floor(s / 86_400), 'day'],
    [Math.floor((s % 86_400) / 3_600), 'hour'],
    [Math.floor((s % 3_600) / 60), 'minute'],
  ];
  const shown = parts.filter(([count]) => count > 0).slice(0, 2);
  return shown.map(([count, unit]) => plural(count, unit)).join(' ');
}

/** The rollout rings in order, with what each means. */
export const RINGS: readonly { ring: RingView; label: string; help: string }[] = [
  { ring: 'canary', label: 'Canary', help: 'Gets each release first' },
  { ring: 'early', label: 'Early', help: 'Gets it once canary ran it without failures' },
  { ring: 'broad', label: 'Broad', help: "Everyone else, last (the default join string's ring)" },
];

export function ringLabel(ring: RingView): string {
  return RINGS.find((r) => r.ring === ring)?.label ?? ring;
}
