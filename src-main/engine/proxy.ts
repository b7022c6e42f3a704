// Upstream traffic through an HTTP proxy, with undici's ProxyAgent: absolute-form requests for http
// sources, CONNECT tunnels for https, Basic credentials. In headless mode the standard
// HTTPS_PROXY / HTTP_PROXY / NO_PROXY variables apply when no proxy is set in the settings.
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, EnvHttpProxyAgent, ProxyAgent, type Dispatcher } from './undici.js';
import type { ProxySetting } from './settings.js';

export function proxyUrl(proxy: Pick<ProxySetting, 'host' | 'port'>): string {
  const host = proxy.host.includes(':') && !proxy.host.startsWith('[') ? `[${proxy.host}]` : proxy.host;
  return `http://${host}:${proxy.port}`;
}

/** Proxy-Authorization for Basic credentials (RFC 7617). */
export function basicToken(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/** The dispatcher for a proxy setting: the proxy, else the environment's proxy, else direct. */
export function dispatcherFor(proxy: ProxySetting, env: NodeJS.ProcessEnv = process.env): Dispatcher {
  if (proxy.enabled && proxy.host) {
    return new ProxyAgent({
      uri: proxyUrl(proxy),
      proxyTunnel: false,
      ...(proxy.username ? { token: basicToken(proxy.username, proxy.password) } : {}),
    });
  }
  const httpProxy = env.HTTP_PROXY ?? env.http_proxy ?? '';
  const httpsProxy = env.HTTPS_PROXY ?? env.https_proxy ?? '';
  if (httpProxy || httpsProxy) {
    // From `env`, not process.env; and like a configured proxy, absolute-form for http sources
    // (a stock squid refuses CONNECT to port 80), CONNECT only for https.
    return new EnvHttpProxyAgent({ connect: HAPPY_EYEBALLS, proxyTunnel: false, httpProxy, httpsProxy, noProxy: env.NO_PROXY ?? env.no_proxy ?? '' });
  }
  return new Agent({ connect: HAPPY_EYEBALLS });
}

/**
 * Happy Eyeballs (RFC 8305): race the source's addresses across families so a broken family costs
 * a quarter second, not a connect timeout.
 */
export const HAPPY_EYEBALLS = { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 250, timeout: 10_000 } as const;

/** How requests to a URL travel: through which proxy (named without its password), or directly. */
export interface Route {
  viaProxy: boolean;
  /** "http://proxy.example:3128", or "" when direct. */
  proxy: string;
  /** The proxy user name, when credentials are sent. */
  username: string;
  /** Where the proxy comes from. */
  from: 'settings' | 'HTTP_PROXY' | 'HTTPS_PROXY' | 'direct';
  /** For messages: "proxy http://proxy.example:3128 as alice (from HTTP_PROXY)" or "direct connection". */
  description: string;
}

/** Whether NO_PROXY exempts `url` (entries: "*", host names with their subdomains, optional ":port"). */
export function exemptFromProxy(url: URL, noProxy: string): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return noProxy
    .split(/[\s,]+/)
    .filter(Boolean)
    .some((entry) => {
      if (entry === '*') return true;
      const match = /^(.*?)(?::(\d+))?$/.exec(entry.toLowerCase())!;
      const name = match[1]!.replace(/^\*?\./, '').replace(/^\[|\]$/g, '');
      return (!match[2] || match[2] === port) && (host === name || host.endsWith(`.${name}`));
    });
}

/** The route dispatcherFor() gives requests to `target`: the same choice, described. */
export function routeFor(proxy: ProxySetting, target: string, env: NodeJS.ProcessEnv = process.env): Route {
  if (proxy.enabled && proxy.host) {
    const url = proxyUrl(proxy);
    return { viaProxy: true, proxy: url, username: proxy.username, from: 'settings', description: `proxy ${url}${proxy.username ? ` as ${proxy.username}` : ''}` };
  }
  const url = new URL(target);
  const from = url.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY';
  const value = url.protocol === 'https:' ? (env.HTTPS_PROXY ?? env.https_proxy) : (env.HTTP_PROXY ?? env.http_proxy);
  if (!value || exemptFromProxy(url, env.NO_PROXY ?? env.no_proxy ?? '')) return { viaProxy: false, proxy: '', username: '', from: 'direct', description: 'direct connection' };
  let parsed: URL;
  try {
    parsed = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    return { viaProxy: true, proxy: value, username: '', from, description: `proxy ${value} (from ${from}, not a URL)` };
  }
  const username = decodeURIComponent(parsed.username);
  const name = `${parsed.protocol}//${parsed.host}`;
  return { viaProxy: true, proxy: name, username, from, description: `proxy ${name}${username ? ` as ${username}` : ''} (from ${from})` };
}

/**
 * Whether an answer that came back through a proxy was written by the proxy itself rather than
 * forwarded from the server behind it: a 407, or an answer that names a proxy — Proxy-Authenticate, a
 * WWW-Authenticate realm or a Server header naming one (tinyproxy answers a wrong password with 401,
 * "Server: tinyproxy/…", realm "Tinyproxy"; its 500 when it cannot reach the server says the same),
 * squid's X-Squid-Error. A forwarded answer keeps the server's own headers (proxies add Via, which
 * therefore proves nothing). Used by the update path and the agent's calls alike.
 */
export function answeredByProxy(status: number, headers: IncomingHttpHeaders): boolean {
  const one = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(', ') : (value ?? '');
  };
  return status === 407 || headers['proxy-authenticate'] !== undefined || headers['x-squid-error'] !== undefined || /proxy/i.test(one('www-authenticate')) || /proxy|squid/i.test(one('server'));
}

/**
 * The status of a proxy's refusal that undici turned into an error rather than an answer (a CONNECT
 * tunnel it would not open, a 407), found in the messages of `error` and its causes.
 */
export function proxyRefusalStatus(error: unknown): number | undefined {
  const parts: string[] = [];
  for (let e = error as { message?: string; cause?: unknown } | undefined; e && parts.length < 10; e = e.cause as typeof e) if (e.message) parts.push(e.message);
  const refused = /Proxy Authentication Required \((\d{3})\)|Proxy response \((\d{3})\)/.exec(parts.join(': '));
  return refused ? Number(refused[1] ?? refused[2]) : undefined;
}
