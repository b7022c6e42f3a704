// The checks the console makes before sending a settings change. They mirror the engine's rules
// (src-main/engine/settings.ts, schedule.ts, source.ts) so mistakes are caught at the field, but
// the server stays the judge: it checks again and may still refuse.

/** Host names, IPv4 and IPv6 literals (with or without brackets), as the engine accepts them. */
const HOST_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]*:[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*)$/;

export function checkHost(host: string, required: boolean): string | undefined {
  if (!host) return required ? 'Enter the proxy host name or IP address.' : undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) return 'Enter only the host name, without "http://".';
  if (!HOST_PATTERN.test(host)) return 'Enter a host name or IP address (e.g. proxy.example.com or 10.0.0.8), without a port.';
  if (host.length > 253) return 'This host name is too long.';
  return undefined;
}

export function checkPort(port: string): string | undefined {
  const text = port.trim();
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) return 'Enter a port number from 1 to 65535.';
  return undefined;
}

export function checkSourceUrl(url: string): string | undefined {
  if (!url) return 'Enter the URL of the update source.';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'Enter a full URL, e.g. https://updates.example.com/bulwark/';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'The URL must start with http:// or https://.';
  if (parsed.username || parsed.password) return 'Do not put a user name or password in the URL; use the Proxy settings for credentials.';
  if (url.length > 2048) return 'This URL is too long.';
  return undefined;
}

export function checkDailyTime(at: string): string | undefined {
  return /^([01]\d|2[0-3]):[0-5]\d$/.test(at) ? undefined : 'Enter a time of day as HH:MM, e.g. 03:30.';
}
