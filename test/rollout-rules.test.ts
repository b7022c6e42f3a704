// The rollout's rules over a real registry (SQLite in a temporary folder), without processes: whose
// failure halts (content on a canary at once, an agent's own never, the rest by threshold), held agents
// counted as held, the last release that passed (including from a rollout.json written before it was
// recorded), and a resume with nobody in the later rings.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pictureOf } from '../src-main/distribution/overview.js';
import { AgentRegistry } from '../src-main/distribution/registry.js';
import type { Release } from '../src-main/distribution/release.js';
import { DEFAULT_ROLLOUT, Rollout, type RolloutSettings } from '../src-main/distribution/rollout.js';
import type { AgentLastRun, Ring } from '../src-main/protocol/agent-protocol.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
let registry: AgentRegistry;
let settings: RolloutSettings;

beforeEach(async () => {
  dir = tempDir('bulwark-rollout-rules-');
  registry = await AgentRegistry.open(dir);
  settings = { ...DEFAULT_ROLLOUT };
});
afterEach(async () => {
  await registry.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const rollout = () => new Rollout(dir, () => settings);
const sizes = (counts: Partial<Record<Ring, number>>) => (ring: Ring) => counts[ring] ?? 0;

/** Enroll an agent in `ring` and have it report a last run (and versions). */
async function agent(name: string, ring: Ring, lastRun?: AgentLastRun, versions: Record<string, number> = {}): Promise<void> {
  // The token decides the ring.
  const { id } = await registry.enroll(await registry.enrollmentToken(ring), { name, hostname: name, address: '10.0.0.1', pollSeconds: 3600 });
  await registry.report(id, { name, hostname: name, addresses: [], components: Object.entries(versions).map(([cid, version]) => ({ id: cid, version })), ...(lastRun ? { lastRun } : {}), phase: 'idle', pollSeconds: 3600 }, '10.0.0.1');
}

const failed = (failure: AgentLastRun['failure'], error = failure?.message ?? 'failed'): AgentLastRun => ({ result: 'failed', at: new Date().toISOString(), bytes: 0, error, ...(failure ? { failure } : {}) });
const content = (message: string, at = new Date().toISOString()) => failed({ kind: 'content', component: 'clamav-test-sigs', version: 3, engine: 'clamd', stage: 'check', message, at }, `clamd refused clamav-test-sigs 3 at its check (clamscan exit 2): ${message}`);

describe('whose failure halts', () => {
  it('content on a canary halts at once whatever the threshold, naming the component, version, agents and the engine', async () => {
    settings.canaryFailures = 5;
    const started = new Date(Date.now() - 1000);
    const r = rollout();
    r.start(7, sizes({ canary: 2, broad: 1 }), { 'clamav-test-sigs': 3 }, {}, started);
    await agent('canary-1', 'canary', content('LibClamAV Error: cli_loadhash: Malformed database'));
    await agent('canary-2', 'canary', failed({ kind: 'local', message: 'EROFS: read-only file system', at: new Date().toISOString() }));
    await r.evaluate(registry, sizes({ canary: 2, broad: 1 }));
    expect(r.current()!.halted).toMatchObject({
      reason: 'the content failed to load in clamd on canary-1: LibClamAV Error: cli_loadhash: Malformed database',
      content: { component: 'clamav-test-sigs', version: 3, engine: 'clamd', stage: 'check', agents: ['canary-1'], message: 'LibClamAV Error: cli_loadhash: Malformed database' },
    });
    // The content failure first, then the others, with their errors.
    expect(r.current()!.halted!.failing.map((f) => f.name)).toEqual(['canary-1']);
  });

  it("an agent's own failure never halts, even in canary with no tolerance; a failure of the release itself does", async () => {
    const r = rollout();
    r.start(7, sizes({ canary: 2 }), {}, {}, new Date(Date.now() - 1000));
    await agent('canary-1', 'canary', failed({ kind: 'local', component: 'virus-pattern', message: 'cannot write store/virus-pattern/177: ENOSPC', at: new Date().toISOString() }));
    await r.evaluate(registry, sizes({ canary: 2 }));
    expect(r.current()!.halted).toBeUndefined();
    // An agent that does not say whose failure it is (an older agent) counts as before.
    await agent('canary-2', 'canary', failed(undefined, 'the file rebuilt does not match the signed hash'));
    await r.evaluate(registry, sizes({ canary: 2 }));
    expect(r.current()!.halted).toMatchObject({ reason: '1 of 2 canary agents failed with release 7', failing: [{ name: 'canary-2', error: 'the file rebuilt does not match the signed hash' }] });
  });

  it('a version refused before the rollout started (or resumed) does not count again: its failure is as old as the refusal', async () => {
    const refusedAt = new Date(Date.now() - 60_000).toISOString();
    await agent('canary-1', 'canary', content('Malformed database', refusedAt));
    const r = rollout();
    r.start(8, sizes({ canary: 1 }), {}, {}, new Date(Date.now() - 1000));
    await r.evaluate(registry, sizes({ canary: 1 }));
    expect(r.current()!.halted).toBeUndefined();
  });
});

describe('held agents and the last release that passed', () => {
  const served = { index: { release: 2, components: [{ id: 'virus-pattern', version: 177 }] } } as unknown as Release;

  it('agents of rings not reached are counted as held, not outdated', async () => {
    const r = rollout();
    r.start(2, sizes({ canary: 1, broad: 2 }));
    await agent('c', 'canary', { result: 'ok', at: new Date().toISOString(), bytes: 0 }, { 'virus-pattern': 177 });
    await agent('b1', 'broad', { result: 'ok', at: new Date().toISOString(), bytes: 0 }, { 'virus-pattern': 175 });
    await agent('b2', 'broad', undefined, {});
    const { counts } = pictureOf(await registry.tally({ release: served, now: Date.now(), held: r.heldRings() }));
    expect(counts).toMatchObject({ total: 3, current: 1, held: 2, outdated: 0 });
    // Once broad is reached, the one behind is outdated.
    r.promote(sizes({ canary: 1, broad: 2 }));
    expect(pictureOf(await registry.tally({ release: served, now: Date.now(), held: r.heldRings() })).counts).toMatchObject({ current: 1, held: 0, outdated: 2 });
  });

  it('records the last release that passed when it reaches broad, and keeps it through the next rollouts', () => {
    const r = rollout();
    r.start(1, sizes({}), { 'virus-pattern': 175 });
    expect(r.passedVersions()).toEqual({ 'virus-pattern': 175 });
    r.start(2, sizes({ canary: 1, broad: 1 }), { 'virus-pattern': 177 });
    expect(r.current()!.stage).toBe('canary');
    expect(r.passedVersions()).toEqual({ 'virus-pattern': 175 });
    r.halt('halted by the operator');
    r.start(3, sizes({ canary: 1, broad: 1 }), { 'virus-pattern': 179 });
    expect(r.passedVersions()).toEqual({ 'virus-pattern': 175 });
    r.promote(sizes({ canary: 1, broad: 1 }));
    expect(r.passedVersions()).toEqual({ 'virus-pattern': 179 });
    // Read back from rollout.json.
    expect(rollout().passedVersions()).toEqual({ 'virus-pattern': 179 });
  });

  it('a rollout.json from before the last passed release was recorded: a rollout that reached broad passed with the versions served then', () => {
    fs.writeFileSync(path.join(dir, 'rollout.json'), JSON.stringify({ release: 4, startedAt: new Date().toISOString(), stage: 'broad', stageSince: new Date().toISOString() }));
    const r = rollout();
    r.start(5, sizes({ canary: 1, broad: 1 }), { 'virus-pattern': 181 }, { 'virus-pattern': 179 });
    expect(r.current()).toMatchObject({ release: 5, stage: 'canary', passed: { release: 4, versions: { 'virus-pattern': 179 } } });
  });

  it('resuming with no agent in the later rings completes the rollout at once; with one, the soak starts again', () => {
    const r = rollout();
    r.start(2, sizes({ canary: 1, broad: 1 }), { 'virus-pattern': 177 });
    r.halt('halted by the operator');
    expect(r.resume(sizes({ canary: 1, broad: 1 }))).toMatchObject({ stage: 'canary' });
    expect(r.current()!.halted).toBeUndefined();
    r.halt('halted by the operator');
    expect(r.resume(sizes({ canary: 2 }))).toMatchObject({ stage: 'broad', passed: { release: 2, versions: { 'virus-pattern': 177 } } });
  });
});
