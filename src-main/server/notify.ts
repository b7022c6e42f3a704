// Notifications for a server without a desktop: each one the desktop app would show (after a failed
// update, after new versions were installed; see electron/notifications.ts for when) also goes to
//   - a webhook: a JSON POST {event, title, body, at, host} to the URL in the settings;
//   - syslog: one RFC 5424 message over UDP, or TCP with octet counting (RFC 6587), to HOST:PORT.
// Sending is best effort: a receiver that is down is logged, and never holds up or fails an update.
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { describeError } from '../engine/errors.js';
import { bufferedRequest } from '../engine/http.js';
import type { SettingsData } from '../engine/settings.js';
import type { DesktopNotification } from './notifications.js';

const TIMEOUT_MS = 10_000;

/** RFC 5424 PRI: facility "user" (1); failures are errors (3), installations notices (5). */
const priority = (kind: DesktopNotification['kind']) => 8 * 1 + (kind === 'update-failed' ? 3 : 5);

/** One RFC 5424 line: <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG. */
export function syslogLine(notification: DesktopNotification, at = new Date()): string {
  const host = os.hostname().replace(/\s/g, '') || '-';
  return `<${priority(notification.kind)}>1 ${at.toISOString()} ${host} bulwark ${process.pid} ${notification.kind} - ${notification.title}: ${notification.body}`;
}

function parseSyslog(target: string): { protocol: 'udp' | 'tcp'; host: string; port: number } {
  const match = /^(udp|tcp):\/\/(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s/]+)):(\d{1,5})$/.exec(target)!;
  return { protocol: match[1] as 'udp' | 'tcp', host: match[2] ?? match[3]!, port: Number(match[4]) };
}

async function sendSyslog(target: string, line: string): Promise<void> {
  const { protocol, host, port } = parseSyslog(target);
  const message = Buffer.from(line);
  if (protocol === 'udp') {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    try {
      await new Promise<void>((resolve, reject) => socket.send(message, port, host, (error) => (error ? reject(error) : resolve())));
    } finally {
      socket.close();
    }
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host, port, timeout: TIMEOUT_MS });
    socket.once('error', reject);
    socket.once('timeout', () => socket.destroy(new Error('timed out')));
    socket.once('connect', () => socket.end(`${message.length} ${line}`, () => resolve()));
  });
}

async function sendWebhook(url: string, notification: DesktopNotification): Promise<void> {
  const body = JSON.stringify({ event: notification.kind, title: notification.title, body: notification.body, at: new Date().toISOString(), host: os.hostname() });
  const answer = await bufferedRequest(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'user-agent': 'Bulwark' }, timeoutMs: TIMEOUT_MS, maxBytes: 64 * 1024 });
  if (answer.status < 200 || answer.status > 299) throw new Error(`it answered HTTP ${answer.status}`);
}

/** Send a notification to every receiver the settings name; resolves when all have been tried. */
export async function sendNotification(notification: DesktopNotification, settings: SettingsData['notifications'], log: (line: string) => void): Promise<void> {
  const tries: Promise<void>[] = [];
  if (settings.webhook) {
    tries.push(sendWebhook(settings.webhook, notification).catch((error: unknown) => log(`cannot notify the webhook ${new URL(settings.webhook!).origin}: ${describeError(error)}`)));
  }
  if (settings.syslog) {
    tries.push(sendSyslog(settings.syslog, syslogLine(notification)).catch((error: unknown) => log(`cannot notify syslog at ${settings.syslog}: ${describeError(error)}`)));
  }
  await Promise.all(tries);
}
