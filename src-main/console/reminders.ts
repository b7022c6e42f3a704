// Reminders: plain-language cards about conditions the user should act on, derived from the
// settings and the last run, so they clear by themselves once the condition is gone.
import type { EngineState } from '../engine/state.js';
import type { RunRecord } from '../engine/history.js';
import type { SettingsData } from '../engine/settings.js';
import type { Reminder } from './contract.js';

export interface ReminderInputs {
  settings: SettingsData;
  lastRun: RunRecord | undefined;
  state: EngineState;
}

export function remindersFor({ settings, lastRun }: ReminderInputs): Reminder[] {
  const reminders: Reminder[] = [];
  if (!settings.source.url) {
    reminders.push({
      id: 'no-source',
      severity: 'warning',
      title: 'No update source is set',
      body: 'Bulwark cannot update its components until it knows where to get them.',
      action: 'Open Settings › Update source and enter the source URL with its trusted root.json.',
    });
  }
  if (lastRun?.result === 'failed') {
    const proxy = settings.proxy.enabled;
    if (/\b407\b/.test(lastRun.error ?? '')) {
      reminders.push({
        id: 'proxy-auth',
        severity: 'error',
        title: 'The proxy wants a valid user name and password',
        body: 'The proxy refused the update with "407 Proxy Authentication Required".',
        action: 'Enter the proxy credentials in Settings › Proxy and use Test connection.',
      });
      return reminders;
    }
    switch (lastRun.errorCode) {
      case 'ERR_NETWORK':
        reminders.push({
          id: 'source-unreachable',
          severity: 'error',
          title: 'The update source cannot be reached',
          body: `The last update failed: ${lastRun.error ?? 'no connection'}.`,
          action: proxy
            ? 'Check the proxy in Settings › Proxy and use Test connection.'
            : 'Check the network. If this server reaches the internet only through a proxy, set it in Settings › Proxy.',
        });
        break;
      case 'ERR_METADATA':
        reminders.push({
          id: 'metadata',
          severity: 'error',
          title: "The update source's signatures could not be verified",
          body: lastRun.error ?? 'The signed metadata was rejected.',
          action: 'If the source was re-keyed, import its new root.json in Settings › Update source; otherwise contact its publisher.',
        });
        break;
      case 'ERR_COOLDOWN':
        reminders.push({
          id: 'cooldown',
          severity: 'info',
          title: 'The update source asked Bulwark to wait',
          body: lastRun.error ?? 'The source is rate-limiting requests.',
          action: 'Nothing to do: Bulwark tries again after the time the source gave.',
        });
        break;
    }
  }
  return reminders;
}
