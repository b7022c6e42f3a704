// Reminders: plain-language cards about conditions the user should act on, derived from the
// settings, the last run and the network check, so they clear by themselves once the condition is
// gone. The console shows them as cards, the tray in its tooltip, `bulwark status` as lines.
import type { RunRecord } from './history.js';
import { networkReminders, type NetworkReport } from './network.js';
import type { SettingsData } from './settings.js';
import type { StoreProblem } from './store.js';
import { plainError, updateFailure } from './words.js';

/** The host part of a source URL, for a sentence. */
function sourceHost(url: string | undefined): string | undefined {
  try {
    return url ? new URL(url).host : undefined;
  } catch {
    return undefined;
  }
}

export interface Reminder {
  id: string;
  severity: 'info' | 'warning' | 'error';
  title: string;
  body: string;
  /** What to do, in one sentence. */
  action: string;
  /** The raw error behind it, for a "Details" disclosure. */
  detail?: string;
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
    const detail = lastRun.error ? { detail: lastRun.error } : {};
    if (lastRun.errorCode === 'ERR_PROXY_AUTH') {
      reminders.push({
        id: 'proxy-auth',
        severity: 'error',
        title: 'The proxy wants a valid user name and password',
        body: 'The proxy refused the credentials it was given, so no update can get through it.',
        ...detail,
        action: proxy
          ? 'Enter the proxy credentials in Settings › Proxy and use Test connection.'
          : 'Correct the credentials in HTTP_PROXY / HTTPS_PROXY, or set the proxy in Settings › Proxy, and use Test connection.',
      });
      return reminders;
    }
    switch (lastRun.errorCode) {
      case 'ERR_NETWORK': {
        const error = lastRun.error ?? '';
        // Refused or not found: the address connected to is the likely fault, not the way to it. Through
        // a proxy that address is the proxy's (the proxy failing to reach the source answers HTTP 5xx).
        const refusedOrUnknown = /ECONNREFUSED|connection refused|ENOTFOUND|EAI_AGAIN|does not resolve|host name not found/i.test(error);
        const throughProxy = / through the proxy (\S+)/.exec(error)?.[1]?.replace(/:$/, '');
        const host = throughProxy ? `the proxy ${sourceHost(throughProxy) ?? throughProxy}` : (sourceHost(lastRun.source ?? settings.source.url) ?? 'the update source');
        const checkProxy = proxy
          ? 'Check the proxy in Settings › Proxy and use Test connection.'
          : 'Check the proxy in HTTP_PROXY / HTTPS_PROXY (or set one in Settings › Proxy) and use Test connection.';
        reminders.push({
          id: 'source-unreachable',
          severity: 'error',
          title: 'The update source cannot be reached',
          body: `Bulwark could not connect to ${host}: ${plainError(error)}. Installed components stay as they are.`,
          action: throughProxy
            ? checkProxy
            : refusedOrUnknown
              ? `Check the source URL in Settings › Update source (Test connection there says what fails)${proxy ? '' : '; if this server reaches the internet only through a proxy, set it in Settings › Proxy'}.`
              : proxy
                ? checkProxy
                : 'Check the network. If this server reaches the internet only through a proxy, set it in Settings › Proxy.',
          ...detail,
        });
        break;
      }
      case 'ERR_CLOCK': {
        // "this machine's clock is 2 days ahead of the update source (…): …"
        const ahead = /clock is (.+?) ahead of the update source/.exec(lastRun.error ?? '')?.[1];
        reminders.push({
          id: 'clock',
          severity: 'error',
          title: ahead ? `This machine's clock is ${ahead} ahead of the update source` : "This machine's clock is wrong",
          body: "By this machine's clock the source's signed metadata has expired, though by the source's own clock it is valid, so nothing was installed.",
          action: 'Set the clock right — let NTP keep it (timedatectl set-ntp true, or chrony) — then use Update now.',
          ...detail,
        });
        break;
      }
      case 'ERR_METADATA':
        // Validly signed but past its expiry date (TUF spec §5.4.4) is the publisher's to fix, not a wrong root.json.
        reminders.push(
          /signed metadata has expired/.test(lastRun.error ?? '')
            ? {
                id: 'metadata',
                severity: 'error',
                title: "The update source's signatures could not be verified",
                body: "Its signed metadata has expired: the publisher has not re-signed the source in time (or someone is replaying an old copy), so nothing from it was installed.",
                action: "The source's publisher must re-sign it (bulwark publish does); the next update tries again.",
                ...detail,
              }
            : {
                id: 'metadata',
                severity: 'error',
                title: "The update source's signatures could not be verified",
                body: 'What the source signed did not verify against the trusted root.json, so nothing from it was installed.',
                action: 'If the source was re-keyed, import its new root.json in Settings › Update source; otherwise contact its publisher.',
                ...detail,
              },
        );
        break;
      default:
        // Any other failure: said once, in words, with the raw text behind Details.
        if (lastRun.errorCode !== 'ERR_USAGE' && lastRun.errorCode !== 'ERR_COOLDOWN') {
          reminders.push({
            id: 'update-failed',
            severity: 'error',
            title: `The last update failed: ${updateFailure(lastRun.errorCode, lastRun.error)}`,
            body: 'Installed components stay as they are; the next update tries again.',
            action: /ERR_STORE|ERR_FILE/.test(lastRun.errorCode ?? '') ? 'Free space, fix the permissions or remount the disk read-write (the details name the file), then use Update now.' : 'Use Update now to try again; if it fails again, the details below say where.',
            ...detail,
          });
        }
    }
  }
  return reminders;
}
