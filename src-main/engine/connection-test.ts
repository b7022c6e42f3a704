// "Test Connection": fetch the source's timestamp.json the way an update would (same proxy, same
// timeouts) and say exactly which step failed and what to do about it.
import type { Dispatcher } from 'undici';
import { bufferedRequest } from './http.js';
import { explainUnreachable } from './network.js';
import { answeredByProxy, dispatcherFor, routeFor } from './proxy.js';
import type { ProxySetting } from './settings.js';

export interface ConnectionTestOptions {
  url: string;
  proxy: ProxySetting;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** A cool-down the source asked for (from the data directory's cooldown.json), if any. */
  cooldownUntil?: Date;
}

export type ConnectionStage = 'proxy' | 'auth' | 'dns' | 'connect' | 'tls' | 'http' | 'timeout' | 'ok';

export interface ConnectionTestResult {
  ok: boolean;
  stage: ConnectionStage;
  message: string;
  action?: string;
}

function codeOf(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; name?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    // A DOMException's code is a legacy number (a timeout's is 23): its name says what happened.
    if (typeof e.code === 'number' && typeof e.name === 'string') return e.name;
    if (typeof e.code === 'string' && e.code && e.code !== 'UND_ERR_SOCKET' && e.code !== 'UND_ERR_INVALID_ARG') return e.code;
  }
  return undefined;
}

function messageOf(error: unknown): string {
  const parts: string[] = [];
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) if (e.message) parts.push(e.message);
  return parts.join(': ');
}

export async function testConnection(options: ConnectionTestOptions): Promise<ConnectionTestResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let target: URL;
  try {
    target = new URL('metadata/timestamp.json', options.url.endsWith('/') ? options.url : `${options.url}/`);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error('not http');
  } catch {
    return { ok: false, stage: 'http', message: options.url ? `"${options.url}" is not an http or https URL` : 'no update source is configured', action: 'Enter the update source URL first.' };
  }
  // The same route an update takes: the proxy in the settings, else HTTP(S)_PROXY unless NO_PROXY exempts the source.
  const route = routeFor(options.proxy, target.href, options.env);
  const viaProxy = route.viaProxy;
  const proxyName = `${route.proxy}${route.from === 'settings' || !viaProxy ? '' : ` (from ${route.from})`}`;
  const until = options.cooldownUntil;
  if (until && until > new Date()) {
    return { ok: false, stage: 'http', message: `the update source ${target.origin} asked Bulwark to wait until ${until.toISOString()} (it answered 429 or 403 with Retry-After); updates resume then`, action: 'Nothing to do: Bulwark tries again at that time.' };
  }
  let dispatcher: Dispatcher | undefined;
  try {
    dispatcher = dispatcherFor(options.proxy, options.env);
    const response = await bufferedRequest(target, { dispatcher, timeoutMs, signal: AbortSignal.timeout(timeoutMs), maxBytes: 1024 * 1024 });
    const status = response.status;
    const proxyAuthenticate = answeredByProxy(status, response.headers);
    if (viaProxy && (status === 407 || (status === 401 && (route.username || proxyAuthenticate)))) {
      // tinyproxy answers a wrong proxy password with 401 (naming itself in WWW-Authenticate) instead of 407.
      return route.username
        ? { ok: false, stage: 'auth', message: `the proxy ${proxyName} refused the credentials (authentication failed, HTTP ${status})`, action: `Check the proxy user name and password${route.from === 'settings' ? '' : ` in ${route.from}`}.` }
        : { ok: false, stage: 'auth', message: `the proxy ${proxyName} requires authentication (HTTP ${status})`, action: 'Enter the proxy user name and password.' };
    }
    if (viaProxy && /^50[0234]$/.test(String(status))) {
      return { ok: false, stage: 'connect', message: `the proxy ${proxyName} could not reach ${target.host} (HTTP ${status})`, action: 'Check that the proxy can reach the update source (address family, firewall, DNS on the proxy).' };
    }
    if (status !== 200) {
      return { ok: false, stage: 'http', message: `the update source answered HTTP ${status} for ${target.pathname}`, action: 'Check the update source URL.' };
    }
    return { ok: true, stage: 'ok', message: `reached ${target.origin}${viaProxy ? ` through ${route.proxy}${route.from === 'settings' ? '' : ` (from ${route.from})`}` : ' directly'}` };
  } catch (error) {
    const result = classify(error, { viaProxy, proxyName, host: target.host, credentials: Boolean(route.username) });
    if (viaProxy || (result.stage !== 'dns' && result.stage !== 'connect' && result.stage !== 'timeout')) return result;
    const mismatch = await explainUnreachable(target.hostname, error);
    return mismatch ? { ok: false, stage: 'connect', ...mismatch } : result;
  } finally {
    await dispatcher?.close().catch(() => undefined);
  }
}

function classify(error: unknown, ctx: { viaProxy: boolean; proxyName: string; host: string; credentials: boolean }): ConnectionTestResult {
  const code = codeOf(error);
  const message = messageOf(error);
  if (/Proxy Authentication Required|\(407\)/.test(message)) {
    // undici turns a 407 into an error, with or without credentials sent.
    return ctx.credentials
      ? { ok: false, stage: 'auth', message: `the proxy ${ctx.proxyName} refused the credentials (authentication failed, HTTP 407)`, action: 'Check the proxy user name and password.' }
      : { ok: false, stage: 'auth', message: `the proxy ${ctx.proxyName} requires authentication (407)`, action: 'Enter the proxy user name and password.' };
  }
  if (/Proxy response \((\d+)\)/.test(message)) {
    const status = /Proxy response \((\d+)\)/.exec(message)![1];
    return { ok: false, stage: 'connect', message: `the proxy ${ctx.proxyName} refused to connect to ${ctx.host} (HTTP ${status})`, action: 'Check that the proxy allows connections to the update source.' };
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return { ok: false, stage: 'dns', message: `the host name ${ctx.viaProxy ? `of the proxy ${ctx.proxyName}` : ctx.host} was not found (DNS)`, action: 'Check the spelling of the host name and the DNS settings.' };
  }
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ECONNRESET') {
    return ctx.viaProxy
      ? { ok: false, stage: 'proxy', message: `the proxy ${ctx.proxyName} is unreachable (${code})`, action: 'Check the proxy host and port, and that the proxy is running.' }
      : { ok: false, stage: 'connect', message: `${ctx.host} is unreachable (${code})`, action: 'Check the network; if this server needs a proxy to reach the internet, set it in the Proxy tab.' };
  }
  if (code?.startsWith('ERR_TLS') || code?.includes('CERT') || /certificate|SSL|TLS/i.test(message)) {
    return { ok: false, stage: 'tls', message: `the TLS connection to ${ctx.host} failed: ${message}`, action: 'Check the server certificate and the system time.' };
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'ABORT_ERR' || code === 'TimeoutError' || /timeout|aborted/i.test(message)) {
    return { ok: false, stage: 'timeout', message: `no answer from ${ctx.viaProxy ? ctx.proxyName : ctx.host} in time`, action: 'Check the network path and any firewall in between.' };
  }
  return { ok: false, stage: 'connect', message: `the connection failed: ${message}`, action: 'Check the network and proxy settings.' };
}
