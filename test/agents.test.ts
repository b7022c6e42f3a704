// Agents, end to end, with real processes on loopback: a signed source, `bulwark serve`, and
// `bulwark agent` children. Releases reach agents by themselves (notification, then incremental), an
// agent far behind gets the full file, an agent some versions behind gets an incremental the server
// made (and a damaged one is refused), and the registry and the credentials hold.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, runCli, until } from './helpers/cli.js';

let lab: AgentsLab;

beforeAll(() => ensureBuilt());
afterEach(async () => {
  await lab?.stop();
});

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('releases reach the agents', () => {
  it('three agents follow a new release by incremental, unasked; one too far behind gets the full file', { timeout: 300_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 3 });
    await lab.startServer();
    const first = lab.latest;
    expect(lab.active(lab.serverDir)?.version).toBe(first);
    const agents = await Promise.all(['a1', 'a2', 'a3'].map((name) => lab.startAgent(name)));
    for (const name of ['a1', 'a2', 'a3']) {
      const held = await lab.waitForVersion(lab.agentDir(name), first);
      expect(held.method).toBe('full'); // the first install
    }

    // A release: the server installs it when asked through `bulwark update` (which joins the running
    // server), and a1 and a2 take it with no one asking them.
    await agents[2]!.stop('SIGTERM');
    let latest = lab.publish();
    const { code, json } = await lab.update();
    expect(code).toBe(0);
    expect(json.components[0]).toMatchObject({ version: latest, method: 'incremental' });
    for (const name of ['a1', 'a2']) {
      const held = await lab.waitForVersion(lab.agentDir(name), latest, 30_000);
      expect(held).toMatchObject({ version: latest, method: 'incremental' });
      expect(held.sha256).toBe(sha256(path.join(lab.source.input, 'virus-pattern', String(latest))));
      const run = await lab.runThatInstalled(lab.agentDir(name), latest);
      expect(run.trigger).toBe('notification');
      // Relayed as upstream published it: the incremental the vendor signed.
      expect(run.components[0]!.reason).toBe(`incremental from ${first}`);
    }

    // 15 more releases while a3 is away (each installed by the server through the same control channel).
    for (let i = 0; i < 15; i++) {
      latest = await lab.release();
    }
    for (const name of ['a1', 'a2']) expect(await lab.waitForVersion(lab.agentDir(name), latest, 30_000)).toMatchObject({ method: 'incremental' });

    // a3 comes back holding the first version: upstream's incrementals reach back 14 versions and the
    // server keeps 15, so there is no way from there but the full file.
    await lab.startAgent('a3');
    const a3 = await lab.waitForVersion(lab.agentDir('a3'), latest);
    expect(a3.method).toBe('full');
    const last = (await lab.runThatInstalled(lab.agentDir('a3'), latest)).components[0]!;
    expect(last.reason).toMatch(new RegExp(`too far behind: installed ${first}|no incremental from ${first}`));

    const listed = await lab.agents();
    expect(listed.agents.map((a) => a.name).sort()).toEqual(['a1', 'a2', 'a3']);
    await until(async () => (await lab.agents()).counts.current === 3, 30_000, 'all three agents reported current').catch(async () => {
      throw new Error(JSON.stringify(await lab.agents()));
    });
    for (const agent of (await lab.agents()).agents) expect(agent.components).toEqual([expect.objectContaining({ id: 'virus-pattern', version: latest })]);
  });

  it('an agent some versions behind gets an incremental the server made; a damaged one is refused and the full file taken', { timeout: 180_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer();
    const away = await Promise.all(['behind1', 'behind2'].map((name) => lab.startAgent(name)));
    const base = lab.latest;
    for (const name of ['behind1', 'behind2']) await lab.waitForVersion(lab.agentDir(name), base);
    await Promise.all(away.map((agent) => agent.stop('SIGTERM')));

    // Three releases while they are away; the server follows each, so it relays only the incrementals
    // between consecutive releases — none from the agents' version to the latest.
    for (let i = 0; i < 3; i++) {
      lab.publish();
      expect((await lab.update()).code).toBe(0);
    }
    const latest = lab.latest;
    await lab.startAgent('behind1');
    const held = await lab.waitForVersion(lab.agentDir('behind1'), latest);
    expect(held.method).toBe('incremental');
    expect(held.sha256).toBe(sha256(path.join(lab.source.input, 'virus-pattern', String(latest))));
    const run = lab.history(lab.agentDir('behind1')).findLast((r) => r.components.some((c) => c.method === 'incremental'))!;
    expect(run.components[0]!.reason).toBe(`incremental from ${base} (made by the server, verified against the signed hash)`);
    // It cost a fraction of the full file, which is what the server made it for.
    expect(run.components[0]!.bytes).toBeLessThan(run.components[0]!.fullBytes / 4);

    // The server-made incremental is replaced by other bytes, with the hash the server recorded for it to
    // match (as a compromised server would serve it: the server's own check, which remakes a made file
    // damaged on disk, passes); the next agent at that base refuses it and takes the full file.
    const madeDir = path.join(lab.serverDir, 'distribution', 'made', 'virus-pattern');
    const patches = fs.readdirSync(madeDir).filter((n) => n.endsWith('.patch'));
    expect(patches).toHaveLength(1);
    const patch = path.join(madeDir, patches[0]!);
    const bytes = fs.readFileSync(patch);
    for (let i = 20; i < bytes.length; i += 97) bytes[i] = bytes[i]! ^ 0xff;
    fs.writeFileSync(patch, bytes);
    fs.writeFileSync(`${patch}.sha256`, crypto.createHash('sha256').update(bytes).digest('hex'));
    // The server answers small files from memory once read: restart it (same address) so it serves what is on disk.
    await lab.server!.stop('SIGTERM');
    await lab.startServer([], `127.0.0.1:${new URL(lab.agentsUrl).port}`);

    await lab.startAgent('behind2');
    const second = await lab.waitForVersion(lab.agentDir('behind2'), latest);
    expect(second.method).toBe('full');
    expect(second.sha256).toBe(held.sha256);
    const refused = (await lab.runThatInstalled(lab.agentDir('behind2'), latest)).components[0]!;
    expect(refused.reason).toMatch(new RegExp(`^the server's incremental from ${base} unusable \\(.+\\)$`));
    // It never took more than the full file's length for the incremental.
    expect(refused.bytes).toBeLessThan(refused.fullBytes * 2);
  });
  it('a release announced while an agent is still installing the one before is installed right after it, not at the next poll', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer();
    // The agent's mirror, in this process: it passes every request on to the server, and holds the
    // pattern files while asked to, keeping the agent in the middle of its run.
    let holding = false;
    let held: (() => void)[] = [];
    let caught: () => void = () => {};
    const caughtOne = new Promise<void>((resolve) => (caught = resolve));
    const mirror = http.createServer((req, res) => {
      const pass = () =>
        void fetch(new URL(req.url!, lab.agentsUrl)).then(
          async (upstream) => res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' }).end(Buffer.from(await upstream.arrayBuffer())),
          () => res.destroy(),
        );
      if (holding && req.url!.startsWith('/targets/virus-pattern/')) {
        held.push(pass);
        caught();
      } else pass();
    });
    await new Promise<void>((resolve) => mirror.listen(0, '127.0.0.1', resolve));
    try {
      const mirrorUrl = `http://127.0.0.1:${(mirror.address() as AddressInfo).port}/`;
      await lab.startAgent('m1', ['--mirror', mirrorUrl]);
      await lab.waitForVersion(lab.agentDir('m1'), lab.latest);

      holding = true;
      const next = await lab.release();
      await caughtOne; // the agent is installing `next`
      const newest = await lab.release();
      // Announced while the agent's run is on its way; that run read the timestamp of `next`.
      await new Promise((resolve) => setTimeout(resolve, 500));
      holding = false;
      for (const pass of held.splice(0)) pass();
      // Its poll comes every 60 s (±20%): well after this.
      const run = await lab.runThatInstalled(lab.agentDir('m1'), newest, 20_000);
      expect(run.components[0]).toMatchObject({ version: newest, result: 'ok' });
      expect(lab.history(lab.agentDir('m1')).some((r) => r.components[0]?.version === next)).toBe(true);
    } finally {
      mirror.closeAllConnections();
      mirror.close();
    }
  });
});
