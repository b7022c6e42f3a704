// Address families for real, in network namespaces joined by veth pairs (needs root):
//
//   srv6 (IPv6 only) ── fd42:b00:1::/64 ──┐            ┌── 10.77.1.0/24 ── src4 (IPv4-only source, "updates4.test")
//                                         px (dual stack: squid, and squid with Basic auth)
//   srv4 (IPv4 only) ── 10.77.2.0/24 ─────┘            └── fd42:b00:2::/64 ── src6 (IPv6-only source, "updates6.test")
//
// The Bulwark servers run the compiled CLI inside their namespace (`ip netns exec NS node
// bin/bulwark.js …`); the sources serve a real signed source with the project's static server; the
// names resolve through /etc/netns/<ns>/hosts. Nothing here can reach beyond these namespaces.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { Settings } from '../src-main/engine/settings.js';
import { BIN, ensureBuilt, ROOT } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';
import { cleanEnv, namespaceSupport, namespacesWithPrefix, NetnsLab, requestsSince, type CommandResult, type NsProcess } from './helpers/netns.js';
import { hasCommand, SQUID_AUTH_HELPER, startSquid, stopAllProxies, type RunningProxy } from './helpers/proxies.js';

/** Why this suite cannot run here ('' when it can): decided before collection, so the whole suite is SKIPPED with the reason. */
const skipReason = ((): string => {
  const support = namespaceSupport();
  if (!support.ok) return support.reason;
  const missing = [...['squid', 'openssl'].filter((c) => !hasCommand(c)), ...(SQUID_AUTH_HELPER ? [] : ['squid basic_ncsa_auth'])];
  return missing.length ? `needs ${missing.join(', ')} (apt-get install squid openssl)` : '';
})();
if (skipReason) console.warn(`netns tests SKIPPED: ${skipReason}`);

const ADDR = {
  srv6: 'fd42:b00:1::2',
  pxToSrv6: 'fd42:b00:1::1',
  pxToSrc4: '10.77.1.1',
  src4: '10.77.1.2',
  pxToSrv4: '10.77.2.1',
  srv4: '10.77.2.2',
  pxToSrc6: 'fd42:b00:2::1',
  src6: 'fd42:b00:2::2',
};
const SOURCE_PORT = 8080;
const SQUID_PORT = 3128;
const SQUID_AUTH_PORT = 3129;
const SOURCE4 = `http://updates4.test:${SOURCE_PORT}/`;
const SOURCE6 = `http://updates6.test:${SOURCE_PORT}/`;
const USER = 'alice';
const PASSWORD = 'pw-netns-right';
const AGENT4 = '192.0.2.30';

let lab: NetnsLab;
const ns = { srv6: '', px: '', src4: '', srv4: '', src6: '' };
let work: string;
let source: TestSource;
let server4: NsProcess;
let server6: NsProcess;
let squid: RunningProxy;
let squidAuth: RunningProxy;
let data6: string;
let data4: string;

interface UpdateJson {
  result: 'ok' | 'failed';
  error?: string;
  components: { id: string; previousVersion: number | null; version: number | null; method: string }[];
}
interface StatusJson {
  network: { stack: string; source: { host: string; ipv4: string[]; ipv6: string[] } | null } | null;
  reminders: { id: string; severity: string; title: string; body: string; action: string }[];
  components: { id: string; version: number }[];
}

/** `bulwark …` inside a namespace. */
function bulwark(where: string, args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return lab.run(where, [process.execPath, BIN, ...args], { env: cleanEnv(env), cwd: ROOT, timeoutMs: 45_000 });
}

async function update(where: string, dataDir: string): Promise<{ code: number | null; json: UpdateJson; raw: CommandResult }> {
  const raw = await bulwark(where, ['update', '--data', dataDir, '--json']);
  let json: UpdateJson;
  try {
    json = JSON.parse(raw.stdout) as UpdateJson;
  } catch {
    throw new Error(`update printed no JSON (exit ${raw.code})\nstdout: ${raw.stdout}\nstderr: ${raw.stderr}`);
  }
  return { code: raw.code, json, raw };
}

async function status(where: string, dataDir: string): Promise<StatusJson> {
  const raw = await bulwark(where, ['status', '--data', dataDir, '--json']);
  expect(raw.code, raw.stderr).toBe(0);
  return JSON.parse(raw.stdout) as StatusJson;
}

async function testConnection(where: string, dataDir: string, env: Record<string, string> = {}, extra: string[] = []) {
  const raw = await bulwark(where, ['test-connection', '--data', dataDir, '--json', ...extra], env);
  return { code: raw.code, ...(JSON.parse(raw.stdout) as { ok: boolean; stage: string; message: string; action?: string }) };
}

async function setProxy(where: string, dataDir: string, value: string, password?: string): Promise<void> {
  const raw = await bulwark(where, ['settings', '--data', dataDir, 'set', 'proxy', value], password === undefined ? {} : { BULWARK_PROXY_PASSWORD: password });
  expect(raw.code, raw.stderr).toBe(0);
}

function activeVersion(dataDir: string, id: string): number {
  return (JSON.parse(fs.readFileSync(path.join(dataDir, 'store', id, 'active.json'), 'utf8')) as { version: number }).version;
}

function storedVersions(dataDir: string, id: string): string[] {
  return fs
    .readdirSync(path.join(dataDir, 'store', id))
    .filter((n) => /^\d+$/.test(n))
    .sort();
}


/** A data directory with the source and trusted root in its settings (as a user would import them). */
function dataDir(url: string, agents: string[] = []): string {
  const dir = tempDir('bulwark-netns-data-');
  const trustedRoot = path.join(dir, 'imported-root.json');
  fs.copyFileSync(source.rootFile, trustedRoot);
  const settings = Settings.open(dir);
  settings.set('source', { url, trustedRoot });
  if (agents.length) settings.set('agents', agents);
  return dir;
}

const ids = (s: StatusJson) => s.reminders.map((r) => r.id);

describe.skipIf(Boolean(skipReason))(`address families in network namespaces${skipReason ? ` (SKIPPED: ${skipReason})` : ''}`, () => {
  let started = 0;

  beforeAll(async () => {
    started = Date.now();
    ensureBuilt();
    lab = new NetnsLab();
    work = tempDir('bulwark-netns-');
    for (const name of Object.keys(ns) as (keyof typeof ns)[]) ns[name] = lab.addNamespace(name);

    lab.link(ns.srv6, 'v6', ns.px, 'to-srv6');
    lab.address(ns.srv6, 'v6', `${ADDR.srv6}/64`);
    lab.address(ns.px, 'to-srv6', `${ADDR.pxToSrv6}/64`);

    lab.link(ns.src4, 'v4', ns.px, 'to-src4');
    lab.disableIpv6(ns.src4, 'v4');
    lab.address(ns.src4, 'v4', `${ADDR.src4}/24`);
    lab.address(ns.px, 'to-src4', `${ADDR.pxToSrc4}/24`);

    lab.link(ns.srv4, 'v4', ns.px, 'to-srv4');
    lab.disableIpv6(ns.srv4, 'v4');
    lab.address(ns.srv4, 'v4', `${ADDR.srv4}/24`);
    lab.address(ns.px, 'to-srv4', `${ADDR.pxToSrv4}/24`);

    lab.link(ns.src6, 'v6', ns.px, 'to-src6');
    lab.address(ns.src6, 'v6', `${ADDR.src6}/64`);
    lab.address(ns.px, 'to-src6', `${ADDR.pxToSrc6}/64`);

    // What each host's /etc/hosts says: the servers know their source by name; so does the proxy.
    lab.hosts(ns.srv6, { 'updates4.test': [ADDR.src4] });
    lab.hosts(ns.srv4, { 'updates6.test': [ADDR.src6] });
    lab.hosts(ns.px, { 'updates4.test': [ADDR.src4], 'updates6.test': [ADDR.src6] });

    // A real signed source: v171 first (installed on srv6 beforehand, over loopback), then v173.
    source = await new TestSource(path.join(work, 'source')).start();
    source.addPattern('virus-pattern');
    source.writeVersion('scan-engine', 20, Buffer.alloc(5000, 7));
    source.publish();
    data6 = dataDir(SOURCE4, [AGENT4]);
    const preinstall = await new Engine({ dataDir: data6, settings: Settings.open(data6), source: { url: source.url, trustedRoot: path.join(data6, 'imported-root.json') } }).runOnce();
    if (preinstall.result !== 'ok') throw new Error(`pre-install failed: ${preinstall.error}`);
    source.addPattern('virus-pattern'); // 173
    source.publish();
    data4 = dataDir(SOURCE6);

    const serve = (where: string, host: string) => lab.spawn(where, [process.execPath, path.join(ROOT, 'test/helpers/serve-static.mjs'), source.out, host, String(SOURCE_PORT)], { label: `source in ${where}` });
    server4 = serve(ns.src4, ADDR.src4);
    server6 = serve(ns.src6, ADDR.src6);
    [squid, squidAuth] = await Promise.all([
      startSquid({ dir: path.join(work, 'squid'), hosts: [ADDR.pxToSrv6, ADDR.pxToSrv4], port: SQUID_PORT, netns: ns.px }),
      startSquid({ dir: path.join(work, 'squid-auth'), hosts: [ADDR.pxToSrv6], port: SQUID_AUTH_PORT, netns: ns.px, auth: { username: USER, password: PASSWORD } }),
      server4.waitFor(/^listening /m),
      server6.waitFor(/^listening /m),
    ]);
  }, 90_000);

  afterAll(async () => {
    try {
      await stopAllProxies();
      await source?.stop();
      const prefix = lab?.prefix;
      await lab?.destroy();
      if (work) fs.rmSync(work, { recursive: true, force: true });
      for (const dir of [data6, data4]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
      if (prefix) {
        // Cleanup is part of the contract: fail loudly if anything is left.
        expect(namespacesWithPrefix(prefix)).toEqual([]);
        for (const name of Object.values(ns)) if (name) expect(fs.existsSync(path.join('/etc/netns', name))).toBe(false);
        for (const proc of [server4, server6]) if (proc) expect(proc.running).toBe(false);
        for (const proxy of [squid, squidAuth]) if (proxy) expect(fs.existsSync(`/proc/${proxy.pid}`)).toBe(false);
      }
    } finally {
      if (started) console.log(`netns suite: ${((Date.now() - started) / 1000).toFixed(1)} s including set-up and clean-up`);
    }
  }, 60_000);

  it('the lab is what it claims: srv6 has IPv6 only, srv4 IPv4 only, px both', () => {
    const srv6 = lab.addresses(ns.srv6);
    expect(srv6).toContain(ADDR.srv6);
    const outside = (text: string) => text.split('\n').filter((l) => !l.startsWith('lo '));
    expect(outside(srv6).join('\n')).not.toMatch(/\b\d+\.\d+\.\d+\.\d+\/\d+/);
    const srv4 = lab.addresses(ns.srv4);
    expect(srv4).toContain(ADDR.srv4);
    // Not even a link-local IPv6 address.
    expect(outside(srv4).join('\n')).not.toMatch(/[0-9a-f]*:[0-9a-f:]+\/\d+/);
    const px = lab.addresses(ns.px);
    for (const a of [ADDR.pxToSrv6, ADDR.pxToSrc4, ADDR.pxToSrv4, ADDR.pxToSrc6]) expect(px).toContain(a);
  });

  describe('a pure IPv6 server and an IPv4-only update source', () => {
    let statusAfterDirect: StatusJson | undefined;
    it('(a) a direct update fails, leaves the components as they were, and status names the dual-stack proxy remedy', async () => {
      expect(activeVersion(data6, 'virus-pattern')).toBe(171);
      const before = server4.stdout.length;
      const { code, json } = await update(ns.srv6, data6);
      expect(code).toBe(1);
      expect(json.result).toBe('failed');
      // getaddrinfo (AI_ADDRCONFIG) asks only for AAAA on an IPv6-only host, so the system reports a DNS
      // failure; the update says what is really wrong, as test-connection does, and what bridges it.
      expect(json.error).toMatch(/^cannot reach http:\/\/updates4\.test:8080: updates4\.test has IPv4 addresses only \(10\.77\.1\.2\) and this machine has no IPv4 address \(.+\)\. Set a dual-stack proxy/);
      expect(json.error).not.toMatch(/host name not found/);
      // Untouched: still 171 active, 173 never stored, and the source never heard from us.
      expect(activeVersion(data6, 'virus-pattern')).toBe(171);
      expect(storedVersions(data6, 'virus-pattern')).toEqual(['171']);
      expect(requestsSince(server4, before)).toEqual([]);

      const s = (statusAfterDirect = await status(ns.srv6, data6));
      expect(s.network).toMatchObject({ stack: 'ipv6', source: { host: 'updates4.test', ipv4: [ADDR.src4], ipv6: [] } });
      const reminder = s.reminders.find((r) => r.id === 'ipv6-server-ipv4-source');
      expect(reminder).toMatchObject({ severity: 'error', title: 'This server has only IPv6; the update source only IPv4' });
      expect(reminder!.body).toBe(`A pure IPv6 server cannot reach updates4.test, which has IPv4 addresses only (${ADDR.src4}).`);
      expect(reminder!.action).toMatch(/dual-stack proxy .*squid.*Settings › Proxy/);
      expect(ids(s)).toContain('source-unreachable');
      expect(s.components.find((c) => c.id === 'virus-pattern')?.version).toBe(171);
    });

    it('(a) the connection test says why: the source has IPv4 addresses only, and what to do', async () => {
      const test = await testConnection(ns.srv6, data6);
      expect(test).toMatchObject({ code: 1, ok: false });
      // Not "check the spelling of the host name and the DNS settings": the name resolves fine (to IPv4).
      expect(test.stage, test.message).not.toBe('dns');
      expect(test.message).toContain('IPv4');
      expect(test.action).toMatch(/dual-stack proxy/);
    });

    it('(e) an IPv4-only agent of this IPv6-only server gets its own reminder', () => {
      // From the status (a) printed after the direct attempt.
      const s = statusAfterDirect;
      expect(s, 'the status (a) printed').toBeDefined();
      expect(s?.reminders.find((r) => r.id === 'agents-other-family')).toMatchObject({
        severity: 'warning',
        title: '1 agent uses only IPv4',
        body: `This server has only IPv6, so it cannot reach ${AGENT4}.`,
      });
    });

    it('(b) through the dual-stack squid the same update succeeds (incrementally) and the family reminder clears', async () => {
      await setProxy(ns.srv6, data6, `[${ADDR.pxToSrv6}]:${SQUID_PORT}`);
      const test = await testConnection(ns.srv6, data6);
      expect(test).toMatchObject({ ok: true, stage: 'ok', message: `reached http://updates4.test:8080 through http://[${ADDR.pxToSrv6}]:${SQUID_PORT}` });

      const before = server4.stdout.length;
      const logBefore = squid.accessLog().length;
      const { code, json, raw } = await update(ns.srv6, data6);
      expect(code, raw.stderr + raw.stdout).toBe(0);
      expect(json.components.find((c) => c.id === 'virus-pattern')).toMatchObject({ previousVersion: 171, version: 173, method: 'incremental' });
      expect(activeVersion(data6, 'virus-pattern')).toBe(173);
      // squid took the IPv6 request and fetched over IPv4: the source saw only the proxy's address.
      const seen = requestsSince(server4, before);
      expect(seen.length).toBeGreaterThan(2);
      expect(new Set(seen.map((r) => r.address))).toEqual(new Set([ADDR.pxToSrc4]));
      await vi.waitFor(() => expect(squid.accessLog().slice(logBefore)).toMatch(new RegExp(` ${ADDR.srv6} TCP_MISS/200 \\d+ GET http://updates4\\.test:8080/metadata/timestamp\\.json - HIER_DIRECT/${ADDR.src4.replace(/\./g, '\\.')} `)), { timeout: 3000 });

      const s = await status(ns.srv6, data6);
      expect(ids(s)).not.toContain('ipv6-server-ipv4-source');
      expect(ids(s)).not.toContain('source-unreachable');
      // The agents' family problem is not the proxy's to solve: it stays.
      expect(ids(s)).toEqual(['agents-other-family']);
    });

    it('(c) a proxy that wants credentials: 407 without, a clear refusal with a wrong password, success with the right one', async () => {
      source.addPattern('virus-pattern'); // 175
      source.publish();
      const address = `[${ADDR.pxToSrv6}]:${SQUID_AUTH_PORT}`;

      // No user name: set directly (the CLI path is covered in (b) and below, with the password from the environment).
      Settings.open(data6).set('proxy', { enabled: true, host: ADDR.pxToSrv6, port: SQUID_AUTH_PORT, username: '', password: '' });
      const none = await update(ns.srv6, data6);
      expect(none.code).toBe(1);
      expect(none.json.error).toMatch(/\b407\b/);
      expect(activeVersion(data6, 'virus-pattern')).toBe(173);
      const [asked, afterNone] = await Promise.all([testConnection(ns.srv6, data6), status(ns.srv6, data6)]);
      expect(asked).toMatchObject({ ok: false, stage: 'auth' });
      expect(ids(afterNone)).toContain('proxy-auth');

      await setProxy(ns.srv6, data6, `${address} ${USER}`, 'not-the-password');
      const wrong = await update(ns.srv6, data6);
      expect(wrong.code).toBe(1);
      expect(wrong.json.error).toMatch(/\b407\b/);
      expect(activeVersion(data6, 'virus-pattern')).toBe(173);
      const [refused, afterWrong] = await Promise.all([testConnection(ns.srv6, data6), status(ns.srv6, data6)]);
      expect(refused).toMatchObject({ ok: false, stage: 'auth', message: `the proxy http://${address} refused the credentials (authentication failed, HTTP 407)`, action: 'Check the proxy user name and password.' });
      expect(ids(afterWrong)).toContain('proxy-auth');

      await setProxy(ns.srv6, data6, `${address} ${USER}`, PASSWORD);
      const right = await update(ns.srv6, data6);
      expect(right.code, right.raw.stderr + right.raw.stdout).toBe(0);
      expect(right.json.components.find((c) => c.id === 'virus-pattern')).toMatchObject({ previousVersion: 173, version: 175, method: 'incremental' });
      expect(activeVersion(data6, 'virus-pattern')).toBe(175);
      await vi.waitFor(() => expect(squidAuth.accessLog()).toMatch(new RegExp(`GET http://updates4\\.test:8080/metadata/timestamp\\.json ${USER} HIER_DIRECT/`)), { timeout: 3000 });
      const s = await status(ns.srv6, data6);
      expect(ids(s)).not.toContain('proxy-auth');
      expect(ids(s)).not.toContain('ipv6-server-ipv4-source');
      for (const text of [none.raw.stdout, wrong.raw.stdout, right.raw.stdout, JSON.stringify(s), fs.readFileSync(path.join(data6, 'history.jsonl'), 'utf8')]) expect(text).not.toContain(PASSWORD);
    });
  });

  describe('the reverse: a pure IPv4 server and an IPv6-only update source', () => {
    it('(d) the reminder "ipv4-server-ipv6-source", then success through the dual-stack squid, and it clears', async () => {
      const before = server6.stdout.length;
      const direct = await update(ns.srv4, data4);
      expect(direct.code).toBe(1);
      expect(direct.json.error).toMatch(/^cannot reach http:\/\/updates6\.test:8080: updates6\.test has IPv6 addresses only \(fd42:b00:2::2\) and this machine has no IPv6 address \(.+\)\. Set a dual-stack proxy/);
      expect(fs.existsSync(path.join(data4, 'store', 'virus-pattern', 'active.json'))).toBe(false);
      expect(requestsSince(server6, before)).toEqual([]);
      const failed = await status(ns.srv4, data4);
      expect(failed.network).toMatchObject({ stack: 'ipv4', source: { host: 'updates6.test', ipv4: [], ipv6: [ADDR.src6] } });
      expect(failed.reminders.find((r) => r.id === 'ipv4-server-ipv6-source')).toMatchObject({
        severity: 'error',
        body: `A pure IPv4 server cannot reach updates6.test, which has IPv6 addresses only (${ADDR.src6}).`,
        action: expect.stringMatching(/dual-stack proxy/),
      });

      await setProxy(ns.srv4, data4, `${ADDR.pxToSrv4}:${SQUID_PORT}`);
      const proxied = await update(ns.srv4, data4);
      expect(proxied.code, proxied.raw.stderr + proxied.raw.stdout).toBe(0);
      expect(proxied.json.components.map((c) => [c.id, c.method])).toEqual(
        expect.arrayContaining([
          ['virus-pattern', 'full'],
          ['scan-engine', 'full'],
        ]),
      );
      expect(new Set(requestsSince(server6, before).map((r) => r.address))).toEqual(new Set([ADDR.pxToSrc6]));
      await vi.waitFor(() => expect(squid.accessLog()).toMatch(new RegExp(` ${ADDR.srv4.replace(/\./g, '\\.')} TCP_MISS/200 \\d+ GET http://updates6\\.test:8080/metadata/timestamp\\.json - HIER_DIRECT/${ADDR.src6} `)), { timeout: 3000 });
      const ok = await status(ns.srv4, data4);
      expect(ids(ok)).toEqual([]);
      expect(ok.components.map((c) => c.id).sort()).toEqual(['scan-engine', 'virus-pattern']);
    });
  });
});
