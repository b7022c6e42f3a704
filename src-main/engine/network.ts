// Address families: which of IPv4 and IPv6 this server has and can actually use, which the update
// source and the agents answer on, and the reminders that follow when they don't meet (a pure IPv6
// server cannot reach an IPv4-only source without a dual-stack proxy, and the reverse).
import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';

export type Family = 4 | 6;
export type StackKind = 'ipv4' | 'ipv6' | 'dual' | 'none';

/** Families with a usable (global or unique-local, not loopback or link-local) address. */
export function interfaceFamilies(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): Family[] {
  const families = new Set<Family>();
  for (const list of Object.values(interfaces)) {
    for (const nic of list ?? []) {
      if (nic.internal) continue;
      if (nic.family === 'IPv4' && !nic.address.startsWith('169.254.')) families.add(4);
      if (nic.family === 'IPv6' && !/^fe[89ab]/i.test(nic.address) && nic.address !== '::1') families.add(6);
    }
  }
  return [...families].sort();
}

export function stackKind(families: readonly Family[]): StackKind {
  const has4 = families.includes(4);
  const has6 = families.includes(6);
  return has4 && has6 ? 'dual' : has4 ? 'ipv4' : has6 ? 'ipv6' : 'none';
}

/** A fingerprint of the interfaces' addresses, to notice network changes cheaply. */
export function interfacesFingerprint(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): string {
  return Object.entries(interfaces)
    .flatMap(([name, list]) => (list ?? []).map((nic) => `${name}/${nic.address}`))
    .sort()
    .join(',');
}

export interface HostFamilies {
  host: string;
  /** Addresses the host name resolves to, per family (a literal resolves to itself). */
  v4: string[];
  v6: string[];
  /** Set when the name could not be resolved at all. */
  error?: string;
}

/** Resolve a host's A and AAAA addresses the way connections will (getaddrinfo, /etc/hosts included). */
export async function resolveHost(host: string): Promise<HostFamilies> {
  const bare = host.replace(/^\[|\]$/g, '');
  const literal = net.isIP(bare);
  if (literal) return { host: bare, v4: literal === 4 ? [bare] : [], v6: literal === 6 ? [bare] : [] };
  // RFC 6761 §6.3: localhost names are loopback; never ask DNS (which /etc/hosts without "::1 localhost" would).
  if (/^(.+\.)?localhost\.?$/i.test(bare)) return { host: bare, v4: ['127.0.0.1'], v6: ['::1'] };
  const lookupFamily = async (family: 4 | 6) => {
    try {
      // hints: 0 — no AI_ADDRCONFIG, so a v6-only machine still learns about A records.
      return (await dns.promises.lookup(bare, { family, all: true, hints: 0 })).map((a) => a.address);
    } catch {
      return [];
    }
  };
  const [v4, v6] = await Promise.all([lookupFamily(4), lookupFamily(6)]);
  return v4.length || v6.length ? { host: bare, v4, v6 } : { host: bare, v4, v6, error: `${bare} did not resolve` };
}

/** Whether a TCP connection to address:port opens within the timeout. */
export function canConnect(address: string, port: number, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

/** Connection errors that an address-family mismatch produces (ENOTFOUND: getaddrinfo hides the other family's records). */
const FAMILY_SYMPTOMS = new Set(['ENETUNREACH', 'EHOSTUNREACH', 'EADDRNOTAVAIL', 'EAFNOSUPPORT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

/** The first system error code in an error's cause chain (ENETUNREACH, EAI_AGAIN…). */
export function errorCode(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; name?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    // A DOMException's code is a legacy number (a timeout's is 23): its name says what happened.
    if (typeof e.code === 'number' && typeof e.name === 'string') return e.name;
    if (typeof e.code === 'string' && e.code && e.code !== 'UND_ERR_SOCKET') return e.code;
  }
  return undefined;
}

export interface FamilyMismatch {
  /** What is wrong, e.g. "updates.example has IPv4 addresses only (192.0.2.7) and this machine has no IPv4 address". */
  message: string;
  /** What to do about it. */
  action: string;
}

/**
 * Why a direct connection to `host` failed, when the reason is an address-family mismatch: the host
 * has addresses only in a family this machine lacks (a pure IPv6 server and an IPv4-only source, a
 * pure IPv4 agent and a pure IPv6 server...). One explanation for every path that connects (updates,
 * agents, test-connection); undefined when the failure is something else.
 */
export async function explainUnreachable(
  host: string,
  error: unknown,
  options: { remedy?: string; interfaces?: NodeJS.Dict<os.NetworkInterfaceInfo[]> } = {},
): Promise<FamilyMismatch | undefined> {
  const code = errorCode(error);
  if (code && !FAMILY_SYMPTOMS.has(code)) return undefined;
  const resolved = await resolveHost(host);
  const families = interfaceFamilies(options.interfaces);
  const action = options.remedy ?? PROXY_REMEDY;
  if (resolved.v4.length && !resolved.v6.length && !families.includes(4) && !resolved.v4.some((a) => a.startsWith('127.'))) {
    return { message: `${resolved.host} has IPv4 addresses only (${resolved.v4.join(', ')}) and this machine has no IPv4 address`, action };
  }
  if (resolved.v6.length && !resolved.v4.length && !families.includes(6) && !resolved.v6.includes('::1')) {
    return { message: `${resolved.host} has IPv6 addresses only (${resolved.v6.join(', ')}) and this machine has no IPv6 address`, action };
  }
  return undefined;
}

export interface NetworkReport {
  checkedAt: string;
  /** Families from the interfaces, narrowed by what actually connected when that was tested. */
  stack: { families: Family[]; kind: StackKind };
  source?: HostFamilies & { port: number; reachable: { 4?: boolean; 6?: boolean } };
  agents: (HostFamilies & { unreachableFamilies: Family[] })[];
}

export interface NetworkCheckOptions {
  sourceUrl?: string;
  agents?: string[];
  /** Test connections to the source directly (skip when a proxy will carry the traffic anyway). */
  probe?: boolean;
  interfaces?: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
  timeoutMs?: number;
}

export async function checkNetwork(options: NetworkCheckOptions): Promise<NetworkReport> {
  let families = interfaceFamilies(options.interfaces);
  const report: NetworkReport = { checkedAt: new Date().toISOString(), stack: { families, kind: stackKind(families) }, agents: [] };
  if (options.sourceUrl) {
    const url = new URL(options.sourceUrl);
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const resolved = await resolveHost(url.hostname);
    const reachable: { 4?: boolean; 6?: boolean } = {};
    if (options.probe !== false) {
      // An address family only counts as working if a connection over it opens.
      const [v4ok, v6ok] = await Promise.all([
        resolved.v4[0] ? canConnect(resolved.v4[0], port, options.timeoutMs) : undefined,
        resolved.v6[0] ? canConnect(resolved.v6[0], port, options.timeoutMs) : undefined,
      ]);
      if (v4ok !== undefined) reachable[4] = v4ok;
      if (v6ok !== undefined) reachable[6] = v6ok;
      if (v4ok === true && !families.includes(4)) families = [...families, 4 as const].sort();
      if (v6ok === true && !families.includes(6)) families = [...families, 6 as const].sort();
    }
    report.source = { ...resolved, port, reachable };
    report.stack = { families, kind: stackKind(families) };
  }
  for (const agent of options.agents ?? []) {
    const resolved = await resolveHost(agent);
    const agentFamilies: Family[] = [...(resolved.v4.length ? [4 as const] : []), ...(resolved.v6.length ? [6 as const] : [])];
    const shared = agentFamilies.filter((f) => families.includes(f));
    report.agents.push({ ...resolved, unreachableFamilies: shared.length ? [] : agentFamilies });
  }
  return report;
}

export interface NetworkReminder {
  id: string;
  severity: 'warning' | 'error';
  title: string;
  body: string;
  action: string;
}

/** The remedy for an address-family mismatch, where the proxy is set in the settings (the server). */
export const PROXY_REMEDY =
  'Set a dual-stack proxy that converts between IPv4 and IPv6 (such as squid or DeleGate, on a host with both) in Settings › Proxy.';

/**
 * Reminders for address-family mismatches. The source mismatch clears once a proxy is set and the
 * last update through it worked; agent mismatches clear once the server gains the agents' family.
 */
export function networkReminders(report: NetworkReport | undefined, context: { proxyEnabled: boolean; lastRunOk: boolean }): NetworkReminder[] {
  if (!report) return [];
  const reminders: NetworkReminder[] = [];
  const { kind } = report.stack;
  const source = report.source;
  const bridged = context.proxyEnabled && context.lastRunOk;
  if (source && !source.error && !bridged) {
    const sourceHas4 = source.v4.length > 0;
    const sourceHas6 = source.v6.length > 0;
    if (kind === 'ipv6' && sourceHas4 && !sourceHas6) {
      reminders.push({
        id: 'ipv6-server-ipv4-source',
        severity: 'error',
        title: 'This server has only IPv6; the update source only IPv4',
        body: `A pure IPv6 server cannot reach ${source.host}, which has IPv4 addresses only (${source.v4.join(', ')}).`,
        action: PROXY_REMEDY,
      });
    } else if (kind === 'ipv4' && sourceHas6 && !sourceHas4) {
      reminders.push({
        id: 'ipv4-server-ipv6-source',
        severity: 'error',
        title: 'This server has only IPv4; the update source only IPv6',
        body: `A pure IPv4 server cannot reach ${source.host}, which has IPv6 addresses only (${source.v6.join(', ')}).`,
        action: PROXY_REMEDY,
      });
    }
  }
  const stranded = report.agents.filter((a) => a.unreachableFamilies.length);
  if (stranded.length) {
    const family = stranded[0]!.unreachableFamilies[0] === 4 ? 'IPv4' : 'IPv6';
    const serverFamily = family === 'IPv4' ? 'IPv6' : 'IPv4';
    reminders.push({
      id: 'agents-other-family',
      severity: 'warning',
      title: `${stranded.length} agent${stranded.length > 1 ? 's' : ''} use${stranded.length > 1 ? '' : 's'} only ${family}`,
      body: `This server has only ${serverFamily}, so it cannot reach ${stranded.map((a) => a.host).join(', ')}.`,
      action: `Give this server an ${family} address (dual stack), or let those agents update through a dual-stack proxy such as squid or DeleGate.`,
    });
  }
  return reminders;
}
