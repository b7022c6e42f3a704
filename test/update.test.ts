// The update flow against a real signed source served over HTTP on loopback.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { sha256 } from '../src-main/engine/files.js';
import type { RunRecord } from '../src-main/engine/history.js';
import { Settings } from '../src-main/engine/settings.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

let source: TestSource;
let dataDir: string;

beforeEach(async () => {
  source = await new TestSource().start();
  dataDir = tempDir('bulwark-data-');
});

afterEach(async () => {
  await source.stop();
  fs.rmSync(source.dir, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** An engine on `dataDir`, trusting the root.json the source first published (imported once, as a user would). */
function engine(): Engine {
  const trustedRoot = path.join(dataDir, 'imported-root.json');
  if (!fs.existsSync(trustedRoot)) fs.copyFileSync(source.rootFile, trustedRoot);
  return new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot } });
}

function component(run: RunRecord, id: string) {
  const found = run.components.find((c) => c.id === id);
  if (!found) throw new Error(`${id} not in run`);
  return found;
}

function installedBytes(id: string, version: number): Buffer {
  return fs.readFileSync(path.join(dataDir, 'store', id, String(version)));
}

function activeVersion(id: string): number {
  return (JSON.parse(fs.readFileSync(path.join(dataDir, 'store', id, 'active.json'), 'utf8')) as { version: number }).version;
}

describe('first install', () => {
  it('installs every component in full and stores them uncompressed', async () => {
    source.addPattern('virus-pattern');
    source.addPattern('virus-pattern');
    source.writeVersion('scan-engine', 20, Buffer.alloc(5000, 7));
    source.publish();
    const run = await engine().runOnce();
    expect(run.result).toBe('ok');
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ previousVersion: null, version: 173, method: 'full', reason: 'no installed version', result: 'ok' });
    // Downloaded compressed: fewer bytes than the file it installed.
    expect(virus.bytes).toBeGreaterThan(0);
    expect(virus.bytes).toBeLessThan(virus.fullBytes);
    expect(installedBytes('virus-pattern', 173).equals(fs.readFileSync(path.join(source.input, 'virus-pattern', '173')))).toBe(true);
    expect(component(run, 'scan-engine')).toMatchObject({ version: 20, method: 'full' });
    expect(installedBytes('scan-engine', 20).equals(Buffer.alloc(5000, 7))).toBe(true);
    // History records the run.
    const history = fs.readFileSync(path.join(dataDir, 'history.jsonl'), 'utf8').trim().split('\n');
    expect(history).toHaveLength(1);
    expect(JSON.parse(history[0]!)).toMatchObject({ result: 'ok', trigger: 'manual' });
  });
});

describe('component duplication', () => {
  it('updates by incremental pattern and rebuilds the exact full file', async () => {
    source.addPattern('virus-pattern');
    source.addPattern('virus-pattern'); // 173
    source.publish();
    await engine().runOnce();
    const latest = source.addPattern('virus-pattern'); // 175
    source.publish();
    const run = await engine().runOnce();
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ previousVersion: 173, version: latest, method: 'incremental', reason: 'incremental from 173' });
    expect(virus.bytes).toBeLessThan(virus.fullBytes / 10);
    expect(installedBytes('virus-pattern', latest).equals(fs.readFileSync(path.join(source.input, 'virus-pattern', String(latest))))).toBe(true);
    // The incremental was fetched, the full file was not.
    expect(source.requests.some((r) => r.includes('v_173.175'))).toBe(true);
    expect(source.requests.filter((r) => r.endsWith('.175.zst'))).toEqual([]);
  });

  it('follows a chain of releases, one incremental per run, keeping older versions as bases', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    const methods: string[] = [];
    for (let i = 0; i < 4; i++) {
      const version = source.addPattern('virus-pattern');
      source.publish();
      const run = await engine().runOnce();
      methods.push(component(run, 'virus-pattern').method);
      expect(activeVersion('virus-pattern')).toBe(version);
    }
    expect(methods).toEqual(['incremental', 'incremental', 'incremental', 'incremental']);
    expect(fs.readdirSync(path.join(dataDir, 'store', 'virus-pattern')).filter((n) => /^\d+$/.test(n)).sort()).toEqual(['171', '173', '175', '177', '179']);
  });

  it('takes the full file when the installed version is too far behind, and says so', async () => {
    source.addPattern('virus-pattern'); // 171
    source.publish();
    await engine().runOnce();
    for (let i = 0; i < 16; i++) source.addPattern('virus-pattern'); // up to 203
    // The source keeps only the last 15 input versions, so no incremental from 171 exists.
    for (const version of [171, 173]) source.removeVersion('virus-pattern', version);
    source.publish();
    const run = await engine().runOnce();
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ previousVersion: 171, version: 203, method: 'full' });
    expect(virus.reason).toMatch(/too far behind: installed 171, incrementals start at 175/);
  });

  it('falls back to the full file when the incremental is missing (404)', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    source.addPattern('virus-pattern');
    source.publish();
    fs.rmSync(source.targetFile('virus-pattern/v_171.173'));
    const run = await engine().runOnce();
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ version: 173, method: 'full', result: 'ok' });
    expect(virus.reason).toMatch(/incremental v_171\.173 unusable \(HTTP 404/);
    expect(activeVersion('virus-pattern')).toBe(173);
  });

  it('falls back to the full file when the incremental is corrupt', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    source.addPattern('virus-pattern');
    source.publish();
    const file = source.targetFile('virus-pattern/v_171.173');
    const bytes = fs.readFileSync(file);
    bytes[bytes.length >> 1]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const run = await engine().runOnce();
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ version: 173, method: 'full', result: 'ok' });
    expect(virus.reason).toMatch(/incremental v_171\.173 unusable \(.*does not match its signed length and hash/);
  });

  it('falls back to the full file when the rebuilt file does not match (damaged local base)', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    // One process throughout: only its first run checks the store by hash, later ones by size and time.
    const running = engine();
    await running.runOnce();
    source.addPattern('virus-pattern');
    source.publish();
    // Damage the installed base behind the store's back, time put back: the rebuild must not be trusted.
    const base = path.join(dataDir, 'store', 'virus-pattern', '171');
    const { mtimeMs } = fs.statSync(base);
    const bytes = fs.readFileSync(base);
    bytes[100]! ^= 0x01;
    fs.writeFileSync(base, bytes);
    fs.utimesSync(base, mtimeMs / 1000, mtimeMs / 1000);
    const run = await running.runOnce();
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ version: 173, method: 'full', result: 'ok' });
    expect(virus.reason).toMatch(/incremental v_171\.173 unusable/);
    expect(sha256(installedBytes('virus-pattern', 173))).toBe(sha256(fs.readFileSync(path.join(source.input, 'virus-pattern', '173'))));
  });
});

describe('no-change check', () => {
  it('downloads only metadata, under 2 KB in total', async () => {
    for (const id of ['virus-pattern', 'spyware-pattern', 'smart-scan-agent-pattern']) {
      source.addPattern(id);
      source.addPattern(id);
    }
    source.writeVersion('outbreak-defense-policy', 3, '{"policy":1}');
    source.publish();
    await engine().runOnce();
    source.requests.length = 0;
    const run = await engine().runOnce();
    expect(run.result).toBe('ok');
    expect(run.components.every((c) => c.method === 'none' && c.reason === 'up to date' && c.bytes === 0)).toBe(true);
    expect(run.bytes).toBeGreaterThan(0);
    expect(run.bytes).toBeLessThan(2048);
    expect(source.requests.every((r) => r.startsWith('/metadata/'))).toBe(true);
  });

  it('stays under 2 KB when the source re-signs its timestamp without changes', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    source.publish(); // new timestamp, snapshot and targets versions, same content
    const run = await engine().runOnce();
    expect(run.result).toBe('ok');
    expect(component(run, 'virus-pattern').method).toBe('none');
    // New signed metadata must be fetched once; still no component bytes.
    expect(component(run, 'virus-pattern').bytes).toBe(0);
  });
});

describe('refusals', () => {
  it('refuses a lower version than the installed one and keeps the installed one', async () => {
    source.addPattern('virus-pattern');
    source.addPattern('virus-pattern'); // 173
    source.publish();
    await engine().runOnce();
    source.removeVersion('virus-pattern', 173);
    source.publish(); // now offers 171
    const run = await engine().runOnce();
    expect(run.result).toBe('failed');
    const virus = component(run, 'virus-pattern');
    expect(virus).toMatchObject({ result: 'failed', errorCode: 'ERR_DOWNGRADE', version: 173 });
    expect(virus.error).toMatch(/version 171, lower than the installed 173; refused/);
    expect(activeVersion('virus-pattern')).toBe(173);
  });

  it('rejects a tampered full file and keeps the old version active', async () => {
    source.writeVersion('scan-engine', 1, Buffer.alloc(4000, 1));
    source.publish();
    await engine().runOnce();
    source.writeVersion('scan-engine', 2, Buffer.alloc(4000, 2));
    source.publish();
    const file = source.targetFile('scan-engine/2.zst');
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 5]! ^= 0x55;
    fs.writeFileSync(file, bytes);
    const run = await engine().runOnce();
    expect(run.result).toBe('failed');
    expect(component(run, 'scan-engine')).toMatchObject({ result: 'failed', errorCode: 'ERR_VERIFY', version: 1 });
    expect(activeVersion('scan-engine')).toBe(1);
    expect(fs.existsSync(path.join(dataDir, 'store', 'scan-engine', '2'))).toBe(false);
  });

  it('rejects metadata signed by another key (a source impersonating ours)', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    // An attacker republishes with fresh keys: the trusted root must reject it.
    fs.rmSync(source.keys, { recursive: true });
    fs.rmSync(source.out, { recursive: true });
    source.addPattern('virus-pattern');
    source.publish();
    source.publish(); // a timestamp version above ours, so the client must look at it
    const run = await engine().runOnce();
    expect(run.result).toBe('failed');
    expect(run.errorCode).toBe('ERR_METADATA');
    expect(run.error).toMatch(/could not be verified/);
    expect(activeVersion('virus-pattern')).toBe(171);
  });

  it('reports an unreachable source without touching the store', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    await engine().runOnce();
    await source.stop();
    const run = await engine().runOnce();
    expect(run.result).toBe('failed');
    expect(run.errorCode).toBe('ERR_NETWORK');
    expect(run.error).toMatch(/cannot reach .*connection refused/);
    expect(activeVersion('virus-pattern')).toBe(171);
    await source.start();
  });

  it('remembers a 429 Retry-After and does not call the source again until then', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    source.intercept = (req, res) => {
      if (req.url === '/metadata/timestamp.json') {
        res.writeHead(429, { 'retry-after': '3600' }).end();
        return true;
      }
      return false;
    };
    const first = await engine().runOnce();
    expect(first.result).toBe('failed');
    // The very first refusal already says what happened and when the next try is.
    expect(first.errorCode).toBe('ERR_COOLDOWN');
    expect(first.error).toMatch(/answered HTTP 429 and asked Bulwark to wait; the next try is at \d{4}-\d\d-\d\dT/);
    source.requests.length = 0;
    const second = await engine().runOnce();
    expect(second.result).toBe('failed');
    expect(second.errorCode).toBe('ERR_COOLDOWN');
    expect(second.error).toMatch(/asked to wait until/);
    expect(source.requests).toEqual([]);
  });
});

describe('a damaged store', () => {
  async function installed(): Promise<Buffer> {
    source.addPattern('virus-pattern');
    source.addPattern('virus-pattern'); // 173
    source.publish();
    expect((await engine().runOnce()).result).toBe('ok');
    return fs.readFileSync(path.join(source.input, 'virus-pattern', '173'));
  }

  it('a byte changed in the active file is found at start, reported, and the file re-downloaded in full', async () => {
    const original = await installed();
    const file = path.join(dataDir, 'store', 'virus-pattern', '173');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([original[100]! ^ 0xff]), 0, 1, 100);
    fs.closeSync(fd);
    // Status looks at size and modification time only: it sees the change...
    const fresh = engine();
    expect(fresh.status().problems).toMatchObject([{ id: 'virus-pattern', problem: 'file-damaged' }]);
    // ...but not once the time is put back; a process that starts checks every active file by its hash.
    const { mtimeMs } = JSON.parse(fs.readFileSync(path.join(dataDir, 'store', 'virus-pattern', 'active.json'), 'utf8')) as { mtimeMs: number };
    fs.utimesSync(file, mtimeMs / 1000, mtimeMs / 1000);
    expect(fresh.status().problems).toEqual([]);
    const run = await fresh.runOnce();
    expect(run.result).toBe('ok');
    expect(component(run, 'virus-pattern')).toMatchObject({ previousVersion: 173, version: 173, method: 'full', problem: 'the active file of virus-pattern 173 does not match its recorded length and SHA-256' });
    expect(component(run, 'virus-pattern').reason).toMatch(/reinstalled in full/);
    expect(fs.readFileSync(file).equals(original)).toBe(true);
    expect(fresh.status().problems).toEqual([]);
  });

  it('a one-shot run hashes the store only when its last full check is a day old', async () => {
    const original = await installed();
    const file = path.join(dataDir, 'store', 'virus-pattern', '173');
    const { mtimeMs } = JSON.parse(fs.readFileSync(path.join(dataDir, 'store', 'virus-pattern', 'active.json'), 'utf8')) as { mtimeMs: number };
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([original[100]! ^ 0xff]), 0, 1, 100);
    fs.closeSync(fd);
    fs.utimesSync(file, mtimeMs / 1000, mtimeMs / 1000);
    const oneShot = () => new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot: path.join(dataDir, 'imported-root.json') }, verifyStoreAtStart: false });
    // The install's run hashed everything a moment ago: a change that keeps size, time and inode goes unseen...
    expect(component(await oneShot().runOnce(), 'virus-pattern')).toMatchObject({ method: 'none', reason: 'up to date' });
    // ...until the last full check is a day old.
    fs.writeFileSync(path.join(dataDir, 'store-check.json'), JSON.stringify({ fullCheckAt: new Date(Date.now() - 86_400_000).toISOString() }));
    expect(component(await oneShot().runOnce(), 'virus-pattern')).toMatchObject({ method: 'full', problem: 'the active file of virus-pattern 173 does not match its recorded length and SHA-256' });
    expect(fs.readFileSync(file).equals(original)).toBe(true);
  });

  it('a truncated active file is noticed by size, shown in status, and repaired by the next update of the same process', async () => {
    const original = await installed();
    const running = engine();
    expect((await running.runOnce()).components[0]!.reason).toBe('up to date');
    const file = path.join(dataDir, 'store', 'virus-pattern', '173');
    fs.truncateSync(file, 1000);
    expect(running.status().problems).toMatchObject([{ id: 'virus-pattern', version: 173, problem: 'file-damaged' }]);
    expect(running.status().reminders.map((r) => r.id)).toContain('store-damaged');
    const run = await running.runOnce();
    expect(component(run, 'virus-pattern')).toMatchObject({ method: 'full', version: 173 });
    expect(fs.readFileSync(file).equals(original)).toBe(true);
    expect(running.status().reminders.map((r) => r.id)).not.toContain('store-damaged');
  });

  it('a damaged active.json does not hide the component: it is reported, repaired, and never lets a lower version in', async () => {
    await installed();
    fs.writeFileSync(path.join(dataDir, 'store', 'virus-pattern', 'active.json'), '{"version": 1');
    const fresh = engine();
    expect(fresh.status().problems).toMatchObject([{ id: 'virus-pattern', problem: 'record-damaged' }]);
    expect(fresh.status().reminders.find((r) => r.id === 'store-damaged')?.body).toMatch(/virus-pattern's active version \(active\.json\) is damaged/);
    const run = await fresh.runOnce();
    // The file itself is intact (it matches the signed hash): no download, only a new record.
    expect(component(run, 'virus-pattern')).toMatchObject({ method: 'none', version: 173, result: 'ok', problem: expect.stringMatching(/active\.json/) });
    expect(component(run, 'virus-pattern').reason).toMatch(/matches the signed hash: re-activated it$/);
    expect(activeVersion('virus-pattern')).toBe(173);

    // The record damaged again, and the source now offering less than the store holds: refused.
    fs.writeFileSync(path.join(dataDir, 'store', 'virus-pattern', 'active.json'), 'garbage');
    source.removeVersion('virus-pattern', 173);
    source.publish();
    const lower = await engine().runOnce();
    expect(component(lower, 'virus-pattern')).toMatchObject({ result: 'failed', errorCode: 'ERR_DOWNGRADE' });
  });
});
