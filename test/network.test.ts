// Address families without root: interface tables given as data, host resolution of literals (and
// of names, with the resolver observed), the network check against real listeners on loopback, and
// the reminders for every mismatch — including when they clear.
import dns from 'node:dns';
import net from 'node:net';
import type os from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkNetwork, interfaceFamilies, interfacesFingerprint, networkReminders, resolveHost, stackKind, type NetworkReport } from '../src-main/engine/network.js';
import { remindersFor } from '../src-main/engine/reminders.js';
import { DEFAULT_SETTINGS, type SettingsData } from '../src-main/engine/settings.js';
import type { RunRecord } from '../src-main/engine/history.js';
import { closedPort } from './helpers/cli.js';

type Table = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

function nic(address: string, internal = false): os.NetworkInterfaceInfo {
  const v6 = address.includes(':');
  return v6
    ? { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal, cidr: `${address}/64`, scopeid: 0 }
    : { address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal, cidr: `${address}/24` };
}

const LOOPBACK = [nic('127.0.0.1', true), nic('::1', true)];
const TABLES = {
  pureV4: { lo: LOOPBACK, eth0: [nic('192.0.2.10')] },
  pureV6: { lo: LOOPBACK, eth0: [nic('fd00:b::10'), nic('fe80::1c2:3ff:fe04:506')] },
  dual: { lo: LOOPBACK, eth0: [nic('192.0.2.10'), nic('fe80::1')], eth1: [nic('2001:db8::10')] },
  linkLocalOnly: { lo: LOOPBACK, eth0: [nic('169.254.10.20'), nic('fe80::1'), nic('FE80::2'), nic('febf::3')] },
  loopbackOnly: { lo: LOOPBACK },
} satisfies Record<string, Table>;

describe('interfaceFamilies and stackKind', () => {
  it.each([
    ['pure IPv4', TABLES.pureV4, [4], 'ipv4'],
    ['pure IPv6 (a ULA and a link-local address)', TABLES.pureV6, [6], 'ipv6'],
    ['dual stack over two interfaces', TABLES.dual, [4, 6], 'dual'],
    ['link-local only (169.254/16, fe80::/10, any case)', TABLES.linkLocalOnly, [], 'none'],
    ['loopback only', TABLES.loopbackOnly, [], 'none'],
    ['nothing at all', {}, [], 'none'],
  ] as const)('%s', (_name, table, families, kind) => {
    expect(interfaceFamilies(table)).toEqual(families);
    expect(stackKind(interfaceFamilies(table))).toBe(kind);
  });

  it('addresses on internal interfaces never count, even global ones', () => {
    // A global address marked internal (a loopback alias) is not a way out.
    expect(interfaceFamilies({ lo: [nic('192.0.2.99', true), nic('2001:db8::99', true)] })).toEqual([]);
  });

  it('the fingerprint changes when an address comes or goes, and not with the order', () => {
    const a = interfacesFingerprint(TABLES.dual);
    expect(interfacesFingerprint({ eth1: TABLES.dual.eth1, eth0: TABLES.dual.eth0, lo: LOOPBACK })).toBe(a);
    expect(interfacesFingerprint({ ...TABLES.dual, eth1: [] })).not.toBe(a);
  });
});

describe('resolveHost', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each([
    ['192.0.2.1', { host: '192.0.2.1', v4: ['192.0.2.1'], v6: [] }],
    ['fd00:b::1', { host: 'fd00:b::1', v4: [], v6: ['fd00:b::1'] }],
    ['[fd00:b::1]', { host: 'fd00:b::1', v4: [], v6: ['fd00:b::1'] }],
    ['::ffff:192.0.2.1', { host: '::ffff:192.0.2.1', v4: [], v6: ['::ffff:192.0.2.1'] }],
  ])('the literal %s resolves to itself, without a lookup', async (host, expected) => {
    const lookup = vi.spyOn(dns.promises, 'lookup');
    expect(await resolveHost(host)).toEqual(expected);
    expect(lookup).not.toHaveBeenCalled();
  });

  /** Answer lookups from a table instead of the system resolver (so no query leaves this machine). */
  function fakeResolver(table: Record<string, { 4?: string[]; 6?: string[] }>) {
    return vi.spyOn(dns.promises, 'lookup').mockImplementation((async (hostname: string, options: dns.LookupAllOptions) => {
      const addresses = table[hostname]?.[options.family as 4 | 6] ?? [];
      if (!addresses.length) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: options.family }));
    }) as unknown as typeof dns.promises.lookup);
  }

  it('asks for A and AAAA separately, without AI_ADDRCONFIG, and keeps what each family answered', async () => {
    const lookup = fakeResolver({ 'updates.test': { 4: ['192.0.2.7', '192.0.2.8'] }, 'v6.test': { 6: ['fd00:b::7'] }, 'both.test': { 4: ['192.0.2.9'], 6: ['fd00:b::9'] } });
    expect(await resolveHost('updates.test')).toEqual({ host: 'updates.test', v4: ['192.0.2.7', '192.0.2.8'], v6: [] });
    // hints 0: a pure IPv6 machine must still learn that the source has A records only.
    expect(lookup).toHaveBeenCalledWith('updates.test', { family: 4, all: true, hints: 0 });
    expect(lookup).toHaveBeenCalledWith('updates.test', { family: 6, all: true, hints: 0 });
    expect(await resolveHost('v6.test')).toEqual({ host: 'v6.test', v4: [], v6: ['fd00:b::7'] });
    expect(await resolveHost('both.test')).toEqual({ host: 'both.test', v4: ['192.0.2.9'], v6: ['fd00:b::9'] });
    expect(await resolveHost('nowhere.test')).toEqual({ host: 'nowhere.test', v4: [], v6: [], error: 'nowhere.test did not resolve' });
  });

  it("'localhost' is loopback in both families, answered without asking the resolver (RFC 6761 §6.3)", async () => {
    // Where /etc/hosts has no "::1 localhost" line (Debian images often lack it), getaddrinfo sends
    // the AAAA question for localhost to the DNS server — off this machine. The fake resolver knows
    // nothing, so only an answer that does not consult it passes.
    const lookup = fakeResolver({});
    const result = await resolveHost('localhost');
    expect(lookup).not.toHaveBeenCalled();
    expect(result).toEqual({ host: 'localhost', v4: ['127.0.0.1'], v6: ['::1'] });
  });
});

/** A listener on 127.0.0.1 for the probes to reach. */
async function listener(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('checkNetwork (probes on loopback, interface tables as given)', () => {
  it('a source that answers over IPv4 makes a "pure IPv6" table dual: what connects counts', async () => {
    const server = await listener();
    try {
      const report = await checkNetwork({ sourceUrl: `http://127.0.0.1:${server.port}/`, interfaces: TABLES.pureV6, timeoutMs: 2000 });
      expect(report.source).toMatchObject({ host: '127.0.0.1', port: server.port, v4: ['127.0.0.1'], v6: [], reachable: { 4: true } });
      expect(report.stack).toEqual({ families: [4, 6], kind: 'dual' });
      expect(networkReminders(report, { proxyEnabled: false, lastRunOk: false })).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('a source that refuses over IPv4 leaves a pure IPv6 server pure IPv6, with the reminder', async () => {
    const port = await closedPort();
    const report = await checkNetwork({ sourceUrl: `http://127.0.0.1:${port}/`, interfaces: TABLES.pureV6, timeoutMs: 2000 });
    expect(report.source?.reachable).toEqual({ 4: false });
    expect(report.stack).toEqual({ families: [6], kind: 'ipv6' });
    const reminders = networkReminders(report, { proxyEnabled: false, lastRunOk: false });
    expect(reminders.map((r) => r.id)).toEqual(['ipv6-server-ipv4-source']);
    expect(reminders[0]!.body).toContain('127.0.0.1');
  });

  it('without probing (a proxy carries the traffic) nothing is connected to and the port defaults by scheme', async () => {
    const report = await checkNetwork({ sourceUrl: 'https://192.0.2.50/bulwark/', interfaces: TABLES.pureV6, probe: false });
    expect(report.source).toMatchObject({ host: '192.0.2.50', port: 443, reachable: {} });
    expect(report.stack.kind).toBe('ipv6');
    expect((await checkNetwork({ sourceUrl: 'http://[fd00:b::5]/', interfaces: TABLES.pureV4, probe: false })).source).toMatchObject({ port: 80, v6: ['fd00:b::5'] });
  });

  it('agents: those sharing no family with the server are listed with the family they lack', async () => {
    const report = await checkNetwork({ agents: ['192.0.2.21', 'fd00:b::22', '192.0.2.23'], interfaces: TABLES.pureV6 });
    expect(report.source).toBeUndefined();
    expect(report.agents.map((a) => [a.host, a.unreachableFamilies])).toEqual([
      ['192.0.2.21', [4]],
      ['fd00:b::22', []],
      ['192.0.2.23', [4]],
    ]);
    const dual = await checkNetwork({ agents: ['192.0.2.21', 'fd00:b::22'], interfaces: TABLES.dual });
    expect(dual.agents.every((a) => a.unreachableFamilies.length === 0)).toBe(true);
  });
});

function report(kind: 'ipv4' | 'ipv6' | 'dual' | 'none', source?: { v4?: string[]; v6?: string[]; error?: string }, agents: NetworkReport['agents'] = []): NetworkReport {
  const families = kind === 'dual' ? [4, 6] : kind === 'ipv4' ? [4] : kind === 'ipv6' ? [6] : [];
  return {
    checkedAt: new Date(0).toISOString(),
    stack: { families: families as (4 | 6)[], kind },
    ...(source ? { source: { host: 'updates.test', v4: source.v4 ?? [], v6: source.v6 ?? [], port: 80, reachable: {}, ...(source.error ? { error: source.error } : {}) } } : {}),
    agents,
  };
}

const agent = (host: string, unreachableFamilies: (4 | 6)[]) => ({ host, v4: host.includes(':') ? [] : [host], v6: host.includes(':') ? [host] : [], unreachableFamilies });
const direct = { proxyEnabled: false, lastRunOk: false };
const ids = (r: NetworkReport | undefined, ctx = direct) => networkReminders(r, ctx).map((x) => x.id);

describe('networkReminders', () => {
  it('a pure IPv6 server and an IPv4-only source: an error naming the source, its addresses and the dual-stack proxy remedy', () => {
    const [reminder, ...rest] = networkReminders(report('ipv6', { v4: ['192.0.2.7', '192.0.2.8'] }), direct);
    expect(rest).toEqual([]);
    expect(reminder).toEqual({
      id: 'ipv6-server-ipv4-source',
      severity: 'error',
      title: 'This server has only IPv6; the update source only IPv4',
      body: 'A pure IPv6 server cannot reach updates.test, which has IPv4 addresses only (192.0.2.7, 192.0.2.8).',
      action: expect.stringMatching(/dual-stack proxy .*squid.*Settings › Proxy/),
    });
  });

  it('a pure IPv4 server and an IPv6-only source: the reverse reminder', () => {
    const [reminder] = networkReminders(report('ipv4', { v6: ['fd00:b::7'] }), direct);
    expect(reminder).toMatchObject({
      id: 'ipv4-server-ipv6-source',
      severity: 'error',
      body: 'A pure IPv4 server cannot reach updates.test, which has IPv6 addresses only (fd00:b::7).',
      action: expect.stringMatching(/dual-stack proxy/),
    });
  });

  it.each([
    ['dual server, IPv4-only source', report('dual', { v4: ['192.0.2.7'] })],
    ['dual server, IPv6-only source', report('dual', { v6: ['fd00:b::7'] })],
    ['IPv6 server, dual source', report('ipv6', { v4: ['192.0.2.7'], v6: ['fd00:b::7'] })],
    ['IPv4 server, dual source', report('ipv4', { v4: ['192.0.2.7'], v6: ['fd00:b::7'] })],
    ['IPv6 server, IPv6-only source', report('ipv6', { v6: ['fd00:b::7'] })],
    ['IPv6 server, source that did not resolve', report('ipv6', { error: 'updates.test did not resolve' })],
    ['no source configured', report('ipv6')],
    ['no network check yet', undefined],
  ])('no reminder: %s', (_name, r) => {
    expect(ids(r)).toEqual([]);
  });

  it('the source mismatch clears once a proxy is set AND the last run through it worked — not before', () => {
    for (const r of [report('ipv6', { v4: ['192.0.2.7'] }), report('ipv4', { v6: ['fd00:b::7'] })]) {
      expect(ids(r, { proxyEnabled: true, lastRunOk: false })).toHaveLength(1);
      expect(ids(r, { proxyEnabled: false, lastRunOk: true })).toHaveLength(1);
      expect(ids(r, { proxyEnabled: true, lastRunOk: true })).toEqual([]);
    }
  });

  it('agents of the other family: a warning naming them, which a proxy does not clear', () => {
    const r = report('ipv6', { v4: ['192.0.2.7'] }, [agent('192.0.2.21', [4]), agent('fd00:b::22', []), agent('192.0.2.23', [4])]);
    const reminders = networkReminders(r, { proxyEnabled: true, lastRunOk: true });
    expect(reminders).toEqual([
      {
        id: 'agents-other-family',
        severity: 'warning',
        title: '2 agents use only IPv4',
        body: 'This server has only IPv6, so it cannot reach 192.0.2.21, 192.0.2.23.',
        action: expect.stringMatching(/^Give this server an IPv4 address \(dual stack\)/),
      },
    ]);
    const one = networkReminders(report('ipv4', undefined, [agent('fd00:b::22', [6])]), direct);
    expect(one).toMatchObject([{ id: 'agents-other-family', title: '1 agent uses only IPv6', body: 'This server has only IPv4, so it cannot reach fd00:b::22.' }]);
    expect(ids(report('dual', undefined, [agent('192.0.2.21', []), agent('fd00:b::22', [])]))).toEqual([]);
  });
});

describe('remindersFor (settings, last run and network together)', () => {
  const settings = (proxyEnabled: boolean): SettingsData => ({
    ...DEFAULT_SETTINGS,
    source: { url: 'http://updates.test/', trustedRoot: '/nonexistent/root.json' },
    proxy: { ...DEFAULT_SETTINGS.proxy, enabled: proxyEnabled, host: proxyEnabled ? 'fd00:b::1' : '' },
  });
  const run = (result: 'ok' | 'failed', error?: string, errorCode?: RunRecord['errorCode']): RunRecord =>
    ({ trigger: 'manual', startedAt: new Date(0).toISOString(), finishedAt: new Date(0).toISOString(), result, bytes: 0, components: [], ...(error ? { error } : {}), ...(errorCode ? { errorCode } : {}) }) as RunRecord;
  const network = report('ipv6', { v4: ['192.0.2.7'] });

  it('a failed direct run on a pure IPv6 server shows the family mismatch and the unreachable source', () => {
    const reminders = remindersFor({ settings: settings(false), lastRun: run('failed', 'cannot reach http://updates.test: network unreachable', 'ERR_NETWORK'), network });
    expect(reminders.map((r) => r.id)).toEqual(['ipv6-server-ipv4-source', 'source-unreachable']);
  });

  it('with the proxy set the mismatch stays until a run through it succeeds', () => {
    expect(remindersFor({ settings: settings(true), lastRun: run('failed', 'cannot reach http://updates.test: connection refused', 'ERR_NETWORK'), network }).map((r) => r.id)).toEqual([
      'ipv6-server-ipv4-source',
      'source-unreachable',
    ]);
    expect(remindersFor({ settings: settings(true), lastRun: run('ok'), network })).toEqual([]);
  });

  it('a refused connection is the source URL\'s fault when direct, and the proxy\'s when through one (issue 22 item 10)', () => {
    const unreachable = (proxyEnabled: boolean, error: string) =>
      remindersFor({ settings: settings(proxyEnabled), lastRun: run('failed', error, 'ERR_NETWORK'), network: undefined }).find((r) => r.id === 'source-unreachable');
    const direct = unreachable(false, 'cannot reach http://updates.test: connection refused');
    expect(direct?.body).toBe('Bulwark could not connect to updates.test: nothing answers at that address (connection refused). Installed components stay as they are.');
    expect(direct?.action).toMatch(/^Check the source URL in Settings › Update source/);
    expect(unreachable(false, 'cannot reach http://updates.test: host name not found (DNS)')?.action).toMatch(/^Check the source URL in Settings › Update source/);
    const proxied = unreachable(true, 'cannot reach http://updates.test through the proxy http://[fd00:b::1]:3128: connection refused');
    expect(proxied?.body).toBe('Bulwark could not connect to the proxy [fd00:b::1]:3128: nothing answers at that address (connection refused). Installed components stay as they are.');
    expect(proxied?.action).toBe('Check the proxy in Settings › Proxy and use Test connection.');
    const fromEnv = unreachable(false, 'cannot reach http://updates.test through the proxy http://proxy.test:8080 as ann (from HTTPS_PROXY): host name not found (DNS)');
    expect(fromEnv?.body).toMatch(/^Bulwark could not connect to the proxy proxy\.test:8080: the host name does not resolve\./);
    expect(fromEnv?.action).toBe('Check the proxy in HTTP_PROXY / HTTPS_PROXY (or set one in Settings › Proxy) and use Test connection.');
  });

  it('expired signed metadata is said as such, for its publisher to re-sign, not as a wrong root.json', () => {
    const metadata = (error: string) => remindersFor({ settings: settings(false), lastRun: run('failed', error, 'ERR_METADATA'), network: undefined }).find((r) => r.id === 'metadata');
    const expired = metadata("the source's signed metadata has expired (timestamp.json is expired); its publisher must re-sign it");
    expect(`${expired?.title} ${expired?.body}`).toMatch(/signatures could not be verified.*signed metadata has expired/);
    expect(expired?.action).toMatch(/publisher must re-sign it/);
    expect(expired?.body).not.toMatch(/root\.json/);
    const forged = metadata("the source's metadata could not be verified: timestamp role signature threshold not met");
    expect(forged?.body).toMatch(/did not verify against the trusted root\.json/);
  });

  it('a 407 shows only the proxy-auth reminder beside the network ones', () => {
    // A proxy's refusal is recorded as ERR_PROXY_AUTH (see the fetcher), not as a network failure.
    const reminders = remindersFor({ settings: settings(true), lastRun: run('failed', 'the proxy [fd00:b::1]:3128 refused the credentials (407)', 'ERR_PROXY_AUTH'), network });
    expect(reminders.map((r) => r.id)).toEqual(['ipv6-server-ipv4-source', 'proxy-auth']);
  });
});
