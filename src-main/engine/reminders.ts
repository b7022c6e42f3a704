// Reminders: plain-language cards about conditions the user should act on, derived from the
// settings, the last run and the network check, so they clear by themselves once the condition is
// gone. The console shows them as cards, the tray in its tooltip, `bulwark status` as lines.
import type { RunRecord } from './history.js';
import { networkReminders, type NetworkReport } from './network.js';
import type { SettingsData } from './settings.js';
import type { StoreProblem } from './store.js';

export interface Reminder {
  id: string;
  severity: 'info' | 'warning' | 'error';
  title: string;
  body: string;
  /** What to do, in one sentence. */
  action: string;
}

export interface ReminderInputs {
  settings: SettingsData;
  lastRun: RunRecord | undefined;
  network: NetworkReport | undefined;
  /** A cool-down the source asked for that is still running. */
  cooldownUntil?: Date | undefined;
  /** Installed components whose file or record is damaged. */
  storeProblems?: readonly StoreProblem[];
}

export function remindersFor({ settings, lastRun, network, cooldownUntil, storeProblems = [] }: ReminderInputs): Reminder[] {
  const reminders: Reminder[] = networkReminders(network, { proxyEnabled: settings.proxy.enabled, lastRunOk: lastRun?.result === 'ok' });
  if (storeProblems.length) {
    reminders.push({
      id: 'store-damaged',
      severity: 'error',
      title: `${storeProblems.length === 1 ? 'An installed component is' : `${storeProblems.length} installed components are`} damaged`,
      body: `${storeProblems.map((p) => p.message).join('; ')}.`,
      action: 'The next update downloads a verified copy in full: use Update now, or wait for the schedule.',
    });
  }
  // A one-off `bulwark update --source …` has a source even where the settings have none.
  if (!settings.source.url && !lastRun?.source) {
    reminders.push({
      id: 'no-source',
      severity: 'warning',
      title: 'No update source is set',
      body: 'Bulwark cannot update its components until it knows where to get them.',
      action: 'Open Settings › Update source and enter the source URL with its trusted root.json.',
    });
  }
  if (cooldownUntil) {
    reminders.push({
      id: 'cooldown',
      severity: 'info',
      title: 'The update source asked Bulwark to wait',
      body: `It answered 429 or 403 with Retry-After; no request goes to it before ${cooldownUntil.toISOString()}.`,
      action: 'Nothing to do: Bulwark tries again after the time the source gave.',
    });
  }
  if (lastRun?.result === 'failed') {
    const proxy = settings.proxy.enabled;
    if (lastRun.errorCode === 'ERR_PROXY_AUTH') {
      reminders.push({
        id: 'proxy-auth',
        severity: 'error',
        title: 'The proxy wants a valid user name and password',
        body: `The last update failed: ${lastRun.error ?? 'the proxy refused the credentials'}.`,
        action: proxy
          ? 'Enter the proxy credentials in Settings › Proxy and use Test connection.'
          : 'Correct the credentials in HTTP_PROXY / HTTPS_PROXY, or set the proxy in Settings › Proxy, and use Test connection.',
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
      case 'ERR_CLOCK':
        reminders.push({
          id: 'clock',
          severity: 'error',
          title: "This machine's clock is wrong",
          body: `The last update failed: ${lastRun.error ?? "the signed metadata looks expired by this machine's clock"}.`,
          action: 'Set the clock right — let NTP keep it (timedatectl set-ntp true, or chrony) — then use Update now.',
        });
        break;
      case 'ERR_FILE':
        reminders.push({
          id: 'disk',
          severity: 'error',
          title: 'Bulwark cannot write its data directory',
          body: `The last update failed: ${lastRun.error ?? 'a file could not be written'}.`,
          action: 'Do what the message says for that disk, then use Update now.',
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
    }
  }
  return reminders;
}
