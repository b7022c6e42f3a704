// An agent and its server on different address families, in network namespaces (needs root):
//
//   srv6 (IPv6 only: the Bulwark server, "bulwark6.test", and its update source on its loopback)
//     └── fd42:c00:1::/64 ── px (dual stack: squid on 10.78.2.1:3128) ── 10.78.2.0/24 ── ag4 (IPv4 only: the agent)
//
// Direct, the pure IPv4 agent cannot reach the pure IPv6 server, and its error says exactly that and
// what bridges them; through the dual-stack proxy it enrolls and updates, and the server's status
// then names the family problem of its agent. Nothing here can reach beyond these namespaces.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt, ROOT, until } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';
import { cleanEnv, namespaceSupport, namespacesWithPrefix, NetnsLab, type NsProcess } from './helpers/netns.js';
import { hasCommand, startSquid, stopAllProxies, type RunningProxy } from './helpers/proxies.js';

const skipReason = ((): string => {
  const support = namespaceSupport();
  if (!support.ok) return support.reason;
  return hasCommand('squid') ? '' : 'needs squid (apt-get install squid)';
})();
if (skipReason) console.warn(`netns agent tests SKIPPED: ${skipReason}`);

const ADDR = { srv6: 'fd42:c00:1::2', pxToSrv6: 'fd42:c00:1::1', pxToAg4: '10.78.2.1', ag4: '10.78.2.2' };
const AGENT_PORT = 8470;
const SQUID_PORT = 3128;

let lab: NetnsLab;
const ns = { srv6: '', px: '', ag4: '' };
let work: string;
let source: TestSource;
let server: NsProcess;
let squid: RunningProxy;

function bulwark(where: string, args: string[]) {
  return lab.run(where, [process.execPath, BIN, ...args], { env: cleanEnv(), cwd: ROOT, timeoutMs: 45_000 });
}

function activeVersion(dataDir: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dataDir, 'store', 'virus-pattern', 'active.json'), 'utf8')) as { version: number }).version;
  } catch {
    return undefined;
  }
}

describe.skipIf(Boolean(skipReason))(`an agent and its server on different address families${skipReason ? ` (SKIPPED: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    ensureBuilt();
    lab = new NetnsLab();
    work = tempDir('bulwark-netns-agents-');
    for (const name of Object.keys(ns) as (keyof typeof ns)[]) ns[name] = lab.addNamespace(name);
    lab.link(ns.srv6, 'v6', ns.px, 'to-srv6');
    lab.address(ns.srv6, 'v6', `${ADDR.srv6}/64`);
    lab.address(ns.px, 'to-srv6', `${ADDR.pxToSrv6}/64`);
    lab.link(ns.ag4, 'v4', ns.px, 'to-ag4');
    lab.disableIpv6(ns.ag4, 'v4');
    lab.address(ns.ag4, 'v4', `${ADDR.ag4}/24`);
    lab.address(ns.px, 'to-ag4', `${ADDR.pxToAg4}/24`);
    // The agent knows its server by name; so does the proxy.
    lab.hosts(ns.ag4, { 'bulwark6.test': [ADDR.srv6] });
    lab.hosts(ns.px, { 'bulwark6.test': [ADDR.srv6] });

    source = new TestSource(path.join(work, 'source'));
    source.addPattern('virus-pattern');
    source.publish();
    const sourceServer = lab.spawn(ns.srv6, [process.execPath, path.join(ROOT, 'test/helpers/serve-static.mjs'), source.out, '::1', '8080'], { label: 'source in srv6' });
    squid = await startSquid({ dir: path.join(work, 'squid'), hosts: [ADDR.pxToAg4], port: SQUID_PORT, netns: ns.px });
    await sourceServer.waitFor(/^listening /m);
    server = lab.spawn(ns.srv6, [
      process.execPath, BIN, 'serve', '--data', path.join(work, 'server'), '--source', 'http://[::1]:8080/', '--trusted-root', source.rootFile,
      '--agents-listen', `[${ADDR.srv6}]:${AGENT_PORT}`, '--agent-spread', '0', '--schedule', 'daily 03:00',
    ], { cwd: ROOT, label: 'bulwark serve in srv6' });
    await server.waitFor(/next update at /, 60_000);
  }, 90_000);

  afterAll(async () => {
    await stopAllProxies();
    const prefix = lab?.prefix;
    await lab?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    if (prefix) {
      expect(namespacesWithPrefix(prefix)).toEqual([]);
      if (server) expect(server.running).toBe(false);
      if (squid) expect(fs.existsSync(`/proc/${squid.pid}`)).toBe(false);
    }
  }, 60_000);

  it('direct, the pure IPv4 agent says its server has IPv6 addresses only and names the dual-stack proxy remedy; through the proxy it updates', async () => {
    // The join string: `bulwark agents token` prints it alone on its last line.
    const token = (await bulwark(ns.srv6, ['agents', 'token', '--data', path.join(work, 'server')])).stdout.trim().split('\n').at(-1)!.trim();
    const dataDir = path.join(work, 'agent');
    const args = ['agent', '--server', `http://bulwark6.test:${AGENT_PORT}/`, '--token', token, '--data', dataDir, '--name', 'ipv4-only'];

    const direct = lab.spawn(ns.ag4, [process.execPath, BIN, ...args], { cwd: ROOT, label: 'agent direct' });
    const [line] = await direct.waitFor(/cannot reach the server .*trying again in/, 30_000);
    expect(line).toMatch(/bulwark6\.test has IPv6 addresses only \(fd42:c00:1::2\) and this machine has no IPv6 address/);
    expect(line).toMatch(/dual-stack proxy .*--proxy HOST:PORT/);
    expect(line).not.toMatch(/host name not found/);
    direct.child.kill('SIGTERM');
    await until(() => !direct.running, 10_000, 'the direct agent to stop');
    expect(activeVersion(dataDir)).toBeUndefined();

    const bridged = lab.spawn(ns.ag4, [process.execPath, BIN, ...args, '--proxy', `${ADDR.pxToAg4}:${SQUID_PORT}`], { cwd: ROOT, label: 'agent through the proxy' });
    await bridged.waitFor(/agent running in /, 60_000);
    await until(() => activeVersion(dataDir) === source.series.get('virus-pattern')!.version, 30_000, 'the agent to install through the proxy');

    // The server has a pure IPv4 agent, a pure IPv6 server itself, and says nothing of it: the agent
    // reports through the proxy (the family card is for single-stack agents gone silent).
    const status = await until(async () => {
      const now = JSON.parse((await bulwark(ns.srv6, ['status', '--data', path.join(work, 'server'), '--json'])).stdout) as { agents?: { current: number }; network: { stack: string }; reminders: { id: string; action: string }[] };
      return now.agents?.current === 1 ? now : undefined;
    }, 30_000, 'the server to count its IPv4-only agent current');
    expect(status.network.stack).toBe('ipv6');
    expect(status.reminders.map((r) => r.id)).not.toContain('agents-family');
  });
});
