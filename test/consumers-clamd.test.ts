// A real clamd (one for this file, started with its own configuration and a database directory of the
// test's own) handed ClamAV signature databases: clamscan checks each candidate, the database is placed
// beside clamd's others, clamdscan --reload makes clamd take it, and a health probe (a scan of a file
// only the new version detects) says it did. Through a fleet: a real server and real agents, the canary
// wired to clamd; a malformed database halts the rollout at the canary before broad gets it. In the
// engine: a database that passes its check but fails the probe is put back; a pin and a rollback place
// the older database the same way.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { Settings } from '../src-main/engine/settings.js';
import { AgentsLab } from './helpers/agents-lab.js';
import { Clamd, haveClamav, sample } from './helpers/clamd.js';
import { ensureBuilt, runCli, until } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

const ID = 'clamav-test-sigs';
let clamd: Clamd;

beforeAll(async () => {
  if (!haveClamav()) throw new Error('clamd, clamscan and clamdscan are needed (apt-get install clamav clamav-daemon clamdscan)');
  clamd = await new Clamd().start();
}, 90_000);
afterAll(async () => {
  await clamd?.stop();
});

describe('the engine hands databases to a real clamd', () => {
  let dir: string;
  let source: TestSource;
  beforeEach(async () => {
    dir = tempDir('bulwark-clamd-case-');
    source = await new TestSource(path.join(dir, 'source')).start();
  });
  afterEach(async () => {
    await source.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Samples s1, s2 and one probe file per version, each with its .hsb line. */
  function samples() {
    const s1 = sample(dir, 'Bulwark.Test.S1');
    const s2 = sample(dir, 'Bulwark.Test.S2');
    const probe = (version: number) => sample(dir, `Bulwark.Probe.${version}`);
    return { s1, s2, probes: [1, 2, 3].map(probe) };
  }

  it('a database that passes its check but not the health probe is put back, and clamd keeps the previous one', async () => {
    const { s1, s2, probes } = samples();
    const target = path.join(clamd.dbDir, 'health-case.hsb');
    const dataDir = path.join(dir, 'data');
    const consumers = path.join(dir, 'consumers.json');
    // The probe: a file only version N detects (each version carries a signature for its own probe).
    const probeOf = (version: number) => path.join(dir, `Bulwark.Probe.${version}.sample`);
    fs.writeFileSync(
      consumers,
      JSON.stringify({
        [ID]: clamd.consumer(target, { health: { command: ['clamdscan', `--config-file=${clamd.conf}`, '--no-summary', path.join(dir, 'Bulwark.Probe.{version}.sample')], exitCodes: [1], timeoutSeconds: 6 } }),
      }),
    );
    const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot: source.rootFile }, consumers });
    const database = (...lines: string[]) => lines.join('\n') + '\n';

    source.writeVersion(ID, 1, database(s1.signature, probes[0]!.signature));
    source.publish();
    expect((await engine.runOnce('schedule')).result).toBe('ok');
    expect(await clamd.scan(s1.file)).toEqual(['Bulwark.Test.S1']);
    expect(await clamd.scan(s2.file)).toEqual([]);

    source.writeVersion(ID, 2, database(s1.signature, s2.signature, probes[1]!.signature));
    source.publish();
    expect((await engine.runOnce('schedule')).result).toBe('ok');
    // The health probe passed, so clamd is on version 2 already (no waiting here).
    expect(await clamd.scan(s2.file)).toEqual(['Bulwark.Test.S2']);
    expect(await clamd.scan(probeOf(2))).toEqual(['Bulwark.Probe.2']);

    // Version 3 loads (clamscan accepts it) but lost its probe's signature (a wrong hash): clamd on it
    // does not detect its probe, so the health step fails; version 2 goes back and clamd reloads it.
    const broken = probes[2]!.signature.replace(/^[0-9a-f]/, (c) => (c === '0' ? '1' : '0'));
    source.writeVersion(ID, 3, database(s2.signature, broken));
    source.publish();
    const logFrom = clamd.logLength();
    const run = await engine.runOnce('schedule');
    expect(run.result).toBe('failed');
    expect(run.components[0]).toMatchObject({ previousVersion: 2, version: 2, result: 'failed', consumer: { version: 3, engine: 'clamd', stage: 'health', kind: 'content' } });
    expect(run.components[0]!.error).toMatch(/clamd failed its health probe with clamav-test-sigs 3 for 6 s \(clamdscan exit 0\).*OK; the previous version is back in place/);
    expect(fs.readFileSync(target, 'utf8')).toBe(fs.readFileSync(path.join(source.input, ID, '2'), 'utf8'));
    expect(engine.store.active(ID)?.version).toBe(2);
    // clamd reloaded twice (version 3, then version 2 again) and detects what version 2 detects.
    await clamd.waitForDetection(s1.file, ['Bulwark.Test.S1']);
    await clamd.waitForDetection(probeOf(2), ['Bulwark.Probe.2']);
    expect(clamd.logSince(logFrom).match(/Database correctly reloaded/g)?.length).toBe(2);
    expect(fs.readdirSync(clamd.dbDir).sort()).toEqual(['health-case.hsb', 'placeholder.hsb']);
  }, 90_000);

  it('a pin and a rollback place the older database, and clamd detects what that version detects', async () => {
    const { s1, s2, probes } = samples();
    const target = path.join(clamd.dbDir, 'rollback-case.hsb');
    const dataDir = path.join(dir, 'data');
    const consumers = path.join(dir, 'consumers.json');
    fs.writeFileSync(consumers, JSON.stringify({ [ID]: clamd.consumer(target) }));
    // Pins as an agent's server would order them (the policy), or none.
    let pins = new Map<string, number>();
    const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot: source.rootFile }, consumers, policy: async () => ({ pins, hold: false }) });
    source.writeVersion(ID, 1, `${s1.signature}\n${probes[0]!.signature}\n`);
    source.publish();
    expect((await engine.runOnce('schedule')).result).toBe('ok');
    source.writeVersion(ID, 2, `${s1.signature}\n${s2.signature}\n`);
    source.publish();
    expect((await engine.runOnce('schedule')).result).toBe('ok');
    await clamd.waitForDetection(s2.file, ['Bulwark.Test.S2']);

    // Pinned at 1: placed and reloaded; clamd no longer detects s2 (and detects version 1's probe again).
    pins = new Map([[ID, 1]]);
    const pinned = await engine.runOnce('schedule');
    expect(pinned.components[0]).toMatchObject({ previousVersion: 2, version: 1, result: 'ok', reason: 'rolled back from 2 to the pinned 1' });
    expect(fs.readFileSync(target, 'utf8')).toBe(fs.readFileSync(path.join(source.input, ID, '1'), 'utf8'));
    await clamd.waitForDetection(s2.file, []);
    await clamd.waitForDetection(probes[0]!.file, ['Bulwark.Probe.1']);

    // Unpinned: back to 2.
    pins = new Map();
    expect((await engine.runOnce('schedule')).components[0]).toMatchObject({ version: 2, result: 'ok' });
    await clamd.waitForDetection(s2.file, ['Bulwark.Test.S2']);

    // The operator's rollback (this engine's own pin): the same hand-off.
    const rolledBack = await engine.withLock(() => engine.change({ action: 'rollback', id: ID, version: 1, reason: 'test' }));
    expect(rolledBack.result).toBe('ok');
    expect(engine.store.active(ID)?.version).toBe(1);
    await clamd.waitForDetection(s2.file, []);
    await clamd.waitForDetection(s1.file, ['Bulwark.Test.S1']);
    expect(engine.status().consumers).toEqual([{ id: ID, engine: 'clamd', path: target, version: 1, active: true }]);
  }, 90_000);
});

describe('a fleet with a canary wired to clamd', () => {
  let lab: AgentsLab;
  beforeAll(() => ensureBuilt());
  afterEach(async () => {
    await lab?.stop();
  });

  const cli = async (args: string[]) => {
    const result = await runCli(args);
    if (result.code !== 0) throw new Error(`bulwark ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const rolloutStatus = async () =>
    JSON.parse(await cli(['rollout', 'status', '--data', lab.serverDir, '--json'])) as { stage: string; halted?: { reason: string; content?: Record<string, unknown>; failing: { name: string; error: string }[] } };
  const agentsList = async () => (await lab.agents()) as unknown as { counts: Record<string, number>; agents: { name: string; state: string; consumers: unknown[] }[] };

  it('a new database reaches clamd on the canary; a malformed one halts the rollout there, clamd keeps the previous one and broad never gets it', { timeout: 240_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2, bytes: 20_000 });
    const samplesDir = path.join(lab.dir, 'samples');
    fs.mkdirSync(samplesDir);
    const s1 = sample(samplesDir, 'Bulwark.Fleet.S1');
    const s2 = sample(samplesDir, 'Bulwark.Fleet.S2');
    const { source } = lab;
    fs.mkdirSync(path.join(source.input, ID), { recursive: true });
    fs.writeFileSync(path.join(source.input, ID, 'component.json'), JSON.stringify({ name: 'ClamAV test signatures', duplication: true }));
    source.writeVersion(ID, 1, `${s1.signature}\n`);
    source.publish();
    const target = path.join(clamd.dbDir, 'fleet-case.hsb');
    const consumers = path.join(lab.dir, 'consumers.json');
    fs.writeFileSync(consumers, JSON.stringify({ [ID]: clamd.consumer(target) }));

    // A long soak: rings after canary move only when the test promotes.
    await lab.startServer(['--rollout-soak', '600', '--console']);
    await lab.startAgent('canary-1', ['--consumers', consumers], { ring: 'canary' });
    await lab.startAgent('broad-1', [], { ring: 'broad' });
    for (const name of ['canary-1', 'broad-1']) await lab.waitForVersion(lab.agentDir(name), 1, 60_000, ID);
    await clamd.waitForDetection(s1.file, ['Bulwark.Fleet.S1']);
    expect(await clamd.scan(s2.file)).toEqual([]);

    // Version 2 detects s2 too: canary first (placed, reloaded: clamd detects s2 now); broad is held, and counted so.
    source.writeVersion(ID, 2, `${s1.signature}\n${s2.signature}\n`);
    source.publish();
    expect((await lab.serverUpdate()).result).toBe('ok');
    await lab.waitForVersion(lab.agentDir('canary-1'), 2, 30_000, ID);
    await clamd.waitForDetection(s2.file, ['Bulwark.Fleet.S2']);
    const held = await until(async () => {
      const list = await agentsList();
      return list.agents.find((a) => a.name === 'broad-1')?.state === 'held' ? list : undefined;
    }, 30_000, 'broad-1 to be counted as held');
    expect(held.counts).toMatchObject({ total: 2, current: 1, held: 1, outdated: 0 });
    expect(lab.active(lab.agentDir('broad-1'), ID)?.version).toBe(1);
    await cli(['rollout', 'promote', '--data', lab.serverDir]);
    await lab.waitForVersion(lab.agentDir('broad-1'), 2, 30_000, ID);

    // Version 3 is malformed: the canary's clamscan refuses it; the rollout halts at canary at once.
    source.writeVersion(ID, 3, `${s1.signature}\n${s2.signature}\nzzzz:notanumber:Broken\n`);
    source.publish();
    const logFrom = clamd.logLength();
    expect((await lab.serverUpdate()).result).toBe('ok');
    const halted = await until(async () => {
      const status = await rolloutStatus();
      return status.halted ? status : undefined;
    }, 30_000, 'the rollout to halt');
    expect(halted.stage).toBe('canary');
    expect(halted.halted!.reason).toMatch(/^the content failed to load in clamd on canary-1: .*Malformed database/);
    expect(halted.halted!.content).toMatchObject({ component: ID, version: 3, engine: 'clamd', stage: 'check', agents: ['canary-1'], message: expect.stringMatching(/Malformed database/) });
    const text = await cli(['rollout', 'status', '--data', lab.serverDir]);
    expect(text).toMatch(/HALTED at canary .* the content failed to load in clamd on canary-1: .*Malformed database/);
    expect(text).toContain(`${ID} 3 failed to load in clamd (check) on canary-1: `);
    // The console's reminder names the component, the version, the agent and clamscan's words.
    const snapshot = await lab.consoleCall<{ reminders: { id: string; title: string; body: string; detail?: string }[] }>('snapshot');
    expect(snapshot.reminders.find((r) => r.id === 'rollout-halted')).toMatchObject({
      title: expect.stringMatching(new RegExp(`^The rollout of release \\d+ is halted: ${ID} 3 failed to load in clamd$`)),
      body: expect.stringMatching(/^The content failed to load in clamd on canary-1: .*Malformed database/),
      // The agent's whole error behind Details.
      detail: expect.stringMatching(new RegExp(`^canary-1: ${ID} failed: clamd refused ${ID} 3 at its check \\(clamscan exit 2\\)`)),
    });
    // Per agent: the engine is on the active version (2), and says what it refused.
    const page = await lab.consoleCall<{ agents: { name: string; consumers: { id: string; engine: string; version: number | null; active: boolean; error?: string }[] }[] }>('agents', {});
    expect(page.agents.find((a) => a.name === 'canary-1')!.consumers).toEqual([{ id: ID, engine: 'clamd', version: 2, active: true, error: expect.stringMatching(/Malformed database/) }]);
    expect(page.agents.find((a) => a.name === 'broad-1')!.consumers).toEqual([]);

    // clamd still runs version 2 (it was never given 3: nothing was placed, nothing reloaded); the canary keeps 2 active.
    expect(await clamd.scan(s1.file)).toEqual(['Bulwark.Fleet.S1']);
    expect(await clamd.scan(s2.file)).toEqual(['Bulwark.Fleet.S2']);
    expect(clamd.logSince(logFrom)).not.toMatch(/Reading databases/);
    expect(fs.readFileSync(target, 'utf8')).toBe(fs.readFileSync(path.join(source.input, ID, '2'), 'utf8'));
    expect(lab.active(lab.agentDir('canary-1'), ID)?.version).toBe(2);
    const status = await cli(['status', '--data', lab.agentDir('canary-1')]);
    expect(status).toMatch(new RegExp(`${ID} → clamd \\(${target.replace(/[.]/g, '\\.')}\\): has the active version \\(2\\)`));
    expect(status).toMatch(/3 refused at check \(.*\): .*Malformed database/);

    // A new agent that enrolls during the halt gets the last release that passed (2), not the halted one.
    await lab.startAgent('new-1', [], { ring: 'broad' });
    await lab.waitForVersion(lab.agentDir('new-1'), 2, 30_000, ID);
    // Broad never receives version 3: held at 2, nothing of 3 in their stores.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    for (const name of ['broad-1', 'new-1']) {
      expect(lab.active(lab.agentDir(name), ID)?.version).toBe(2);
      expect(fs.existsSync(path.join(lab.agentDir(name), 'store', ID, '3'))).toBe(false);
    }
    expect(lab.history(lab.agentDir('new-1')).flatMap((r) => r.components).find((c) => c.id === ID && c.version === 2)?.reason).toMatch(/held: moved to 2, the last release that passed the server's rollout \(3 is being rolled out\)/);

    // The operator rolls the database back to 1 on the server: the canary follows the pin, places 1, and clamd no longer detects s2.
    await cli(['component', 'rollback', ID, '1', '--data', lab.serverDir, '--reason', 'test']);
    await until(() => lab.active(lab.agentDir('canary-1'), ID)?.version === 1, 30_000, 'canary-1 to roll back to 1');
    await clamd.waitForDetection(s2.file, []);
    await clamd.waitForDetection(s1.file, ['Bulwark.Fleet.S1']);
    expect(fs.readFileSync(target, 'utf8')).toBe(fs.readFileSync(path.join(source.input, ID, '1'), 'utf8'));
  });
});
