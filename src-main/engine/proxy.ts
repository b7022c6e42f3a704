// Upstream traffic through an HTTP proxy, with undici's ProxyAgent: absolute-form requests for http
// sources, CONNECT tunnels for https, Basic credentials. In headless mode the standard
// HTTPS_PROXY / HTTP_PROXY / NO_PROXY variables apply when no proxy is set in the settings.
import { Agent, EnvHttpProxyAgent, ProxyAgent, type Dispatcher } from 'undici';
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

/** A proxy URL fit for logs: never the credentials. */
export function describeProxy(proxy: ProxySetting): string {
  return proxy.enabled && proxy.host ? `proxy ${proxyUrl(proxy)}${proxy.username ? ` as ${proxy.username}` : ''}` : 'direct connection';
}
