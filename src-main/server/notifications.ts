// What to tell the user after an update run, as data. Pure, so it is tested without Electron; the
// desktop app shows the result through the adapter (Electron's Notification), and any server sends
// it to a webhook or syslog (notify.ts).
import { componentInfo } from '../engine/components.js';
import type { ComponentRun, RunRecord } from '../engine/history.js';
import type { SettingsData } from '../engine/settings.js';

export interface DesktopNotification {
  readonly kind: 'update-failed' | 'components-installed';
  readonly title: string;
  readonly body: string;
}

/** Notification bodies are a line or two on every platform. */
const MAX_BODY_CHARS = 200;
/** Components named in the "installed" body before "and N more". */
const MAX_NAMED = 3;

/** The first line of `text`, cut to `max` characters with an ellipsis. */
function truncate(text: string, max: number): string {
  const line = text.split('\n')[0]!.trim();
  return line.length <= max ? line : `${line.slice(0, max - 1).trimEnd()}…`;
}

/** The engine writes messages in lower case to compose them; a notification shows a sentence. */
function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A component that got a new version in this run. */
function installed(c: ComponentRun): boolean {
  return c.result === 'ok' && c.method !== 'none' && c.version !== null && c.version !== c.previousVersion;
}

/** The failure, in one sentence: the run's own error, else its failed components'. */
export function failureReason(run: RunRecord): string {
  if (run.error) return run.error;
  const failed = run.components.filter((c) => c.result === 'failed');
  if (failed.length) return failed.map((c) => `${componentInfo(c.id).name}: ${c.error ?? 'failed'}`).join('; ');
  return 'the update failed';
}

/**
 * The notifications a finished run calls for, given the user's choices. A failure is told when it is
 * news: the previous run did not fail the same way, or the user asked for this update (Update Now).
 * A source that stays unreachable for a day does not raise a notification every hour; the tray icon
 * and the console keep showing it.
 */
export function notificationsFor(
  run: RunRecord,
  previous: RunRecord | undefined,
  preferences: SettingsData['notifications'],
): DesktopNotification[] {
  const notifications: DesktopNotification[] = [];

  const changed = run.components.filter(installed);
  if (changed.length && preferences.componentsInstalled) {
    const named = changed.slice(0, MAX_NAMED).map((c) => `${componentInfo(c.id).name} ${c.version}`);
    const more = changed.length - named.length;
    notifications.push({
      kind: 'components-installed',
      title: changed.length === 1 ? 'Component updated' : `${changed.length} components updated`,
      body: truncate(more > 0 ? `${named.join(', ')} and ${more} more` : named.join(', '), MAX_BODY_CHARS),
    });
  }

  if (run.result === 'failed' && preferences.updateFailed) {
    const reason = failureReason(run);
    const repeated = previous?.result === 'failed' && failureReason(previous) === reason;
    if (!repeated || run.trigger === 'manual') {
      notifications.push({ kind: 'update-failed', title: 'Bulwark update failed', body: truncate(sentence(reason), MAX_BODY_CHARS) });
    }
  }
  return notifications;
}
