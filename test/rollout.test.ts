// Rollout rings with real agent processes: a release reaches canary first, early after canary's
// soak, broad after early's, while agents of rings not reached hold their versions and are counted as
// held. A canary agent whose install fails for a reason of its own (its store cannot be written) is
// marked failed without halting the fleet; an operator's halt holds a newly enrolled agent at the last
// release that passed; resuming with nobody in the later rings completes the rollout at once. (A
// canary whose engine refuses the content halts the rollout: consumers-clamd.test.ts.)
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, runCli, until } from './helpers/cli.js';

let lab: AgentsLab;

beforeAll(() => ensureBuilt());
afterEach(async () => {
  await lab?.stop();
});

interface RolloutStatus {
  stage: string;
  halted?: { reason: string; failing: { name: string; error: string }[] };
  rings: { ring: string; released: boolean; agents: number }[];
}

async function rolloutStatus(): Promise<RolloutStatus> {
  const result = await runCli(['rollout', 'status', '--data', lab.serverDir, '--json']);
  if (result.code !== 0) throw new Error(`rollout status: ${result.stderr}`);
  return JSON.parse(result.stdout) as RolloutStatus;
}

async function rollout(action: 'promote' | 'halt' | 'resume'): Promise<string> {
  const result = await runCli(['rollout', action, '--data', lab.serverDir]);
  if (result.code !== 0) throw new Error(`rollout ${action}: ${result.stderr}`);
  return result.stdout;
}

describe('rollout rings', () => {
  it('canary, then early after a clean soak, then broad; held rings keep their versions', { timeout: 180_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    // A soak long enough that canary's update and the status check fit inside it on a loaded machine.
    await lab.startServer(['--rollout-soak', '10']);
    const rings = { c1: 'canary', e1: 'early', b1: 'broad', b2: 'broad' } as const;
    await Promise.all(Object.entries(rings).map(([name, ring]) => lab.startAgent(name, [], { ring })));
    const first = lab.latest;
    for (const name of Object.keys(rings)) await lab.waitForVersion(lab.agentDir(name), first);

    const next = lab.publish();
    const released = Date.now();
    expect((await lab.serverUpdate()).result).toBe('ok');
    await lab.waitForVersion(lab.agentDir('c1'), next, 30_000);
    // Canary has it; early and broad were told of the release and held.
    expect((await rolloutStatus()).stage).toBe('canary');
    for (const name of ['e1', 'b1']) {
      await until(() => lab.history(lab.agentDir(name)).some((r) => /the server's rollout has not reached this agent's ring yet/.test(r.components[0]?.reason ?? '')), 20_000, `${name} to hold`);
      expect(lab.active(lab.agentDir(name))?.version).toBe(first);
    }

    // After canary's clean soak, early; after early's, broad.
    await lab.waitForVersion(lab.agentDir('e1'), next, 30_000);
    expect(Date.now() - released).toBeGreaterThanOrEqual(10_000);
    for (const name of ['b1', 'b2']) await lab.waitForVersion(lab.agentDir(name), next, 30_000);
    const status = await rolloutStatus();
    expect(status.stage).toBe('broad');
    expect(status.rings.map((r) => [r.ring, r.released, r.agents])).toEqual([
      ['canary', true, 1],
      ['early', true, 1],
      ['broad', true, 2],
    ]);
  });

  it("a canary's own failure (a store it cannot write) marks it without halting; held agents count as held; during a halt a new agent gets the last release that passed; resume with no agents in later rings moves on at once", { timeout: 180_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer(['--rollout-soak', '600', '--console']);
    await lab.startAgent('canary-1', [], { ring: 'canary' });
    await lab.startAgent('early-1', [], { ring: 'early' });
    const first = lab.latest;
    await lab.waitForVersion(lab.agentDir('early-1'), first);

    // canary-1 cannot install the next version: its store has a directory where the file would go.
    const next = lab.source.series.get('virus-pattern')!.version + 2;
    fs.mkdirSync(path.join(lab.agentDir('canary-1'), 'store', 'virus-pattern', String(next), 'in-the-way'), { recursive: true });
    expect(lab.publish()).toBe(next);
    expect((await lab.serverUpdate()).result).toBe('ok');

    // Failed, with its error, and counted as failed; early is held (not outdated). No halt: it is canary-1's own disk.
    const listed = await until(async () => {
      const list = await lab.agents();
      const states = Object.fromEntries(list.agents.map((a) => [a.name, a.state]));
      return states['canary-1'] === 'failed' && states['early-1'] === 'held' ? list : undefined;
    }, 30_000, 'canary-1 failed and early-1 held');
    expect(listed.counts).toMatchObject({ total: 2, failed: 1, held: 1, outdated: 0, current: 0 });
    const canary = lab.history(lab.agentDir('canary-1')).at(-1)!;
    expect(canary.failure).toMatchObject({ kind: 'local', component: 'virus-pattern' });
    // The rollout is evaluated on each report and every 5 s: give it two rounds.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    expect((await rolloutStatus()).halted).toBeUndefined();
    const text = (await runCli(['agents', 'list', '--data', lab.serverDir])).stdout;
    expect(text).toMatch(/2 agents: 0 current, 1 held by the rollout, 0 outdated, 0 updating, 1 failed, 0 unreachable/);

    // The operator halts. A new agent enrolling now gets the last release that passed (the first), not the halted one.
    expect(await rollout('halt')).toMatch(/halted at canary/);
    await lab.startAgent('new-1', [], { ring: 'broad' });
    await lab.waitForVersion(lab.agentDir('new-1'), first, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(lab.active(lab.agentDir('new-1'))?.version).toBe(first);
    expect(lab.history(lab.agentDir('new-1')).flatMap((r) => r.components).find((c) => c.version === first)?.reason).toMatch(new RegExp(`held: moved to ${first}, the last release that passed the server's rollout \\(${next} is being rolled out\\)`));

    // Everyone moves to canary: no agent is left in a later ring, so resuming moves on at once (no soak to wait for).
    for (const name of ['early-1', 'new-1']) expect((await runCli(['agents', 'ring', name, 'canary', '--data', lab.serverDir])).code).toBe(0);
    expect(await rollout('resume')).toMatch(/broad released/);
    expect((await rolloutStatus()).stage).toBe('broad');
    for (const name of ['early-1', 'new-1']) await lab.waitForVersion(lab.agentDir(name), next, 30_000);
  });
});
