// A real clamd (one for this file, started with its own configuration and a database directory of the
// test's own) handed ClamAV signature databases by the engine: clamscan checks each candidate, the
// database is placed beside clamd's others, clamdscan --reload makes clamd take it, and a health probe
// (a scan of a file only the new version detects) says it did. A database that passes its check but
// fails the probe is put back; a pin and a rollback place the older database the same way.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { Settings } from '../src-main/engine/settings.js';
import { Clamd, haveClamav, sample } from './helpers/clamd.js';
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
