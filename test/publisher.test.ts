// `bulwark publish`: layout, signatures, incrementals, re-publishing and bad input.
import fs from 'node:fs';
import path from 'node:path';
import { Metadata } from '@tufjs/models';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyPatch, decompressFull } from '../src-main/engine/codec.js';
import { parseCatalogue, type Catalogue } from '../src-main/engine/catalogue.js';
import { DEFAULT_LIMITS } from '../src-main/engine/limits.js';
import { publish } from '../src-main/publisher/publisher.js';
import { Engine } from '../src-main/engine/engine.js';
import { Settings } from '../src-main/engine/settings.js';
import { prng } from '../src-main/demo/patterns.js';
import { TEST_LEVEL, tempDir, TestSource } from './helpers/fixtures.js';

let source: TestSource;

beforeEach(() => {
  source = new TestSource();
});

afterEach(() => {
  fs.rmSync(source.dir, { recursive: true, force: true });
});

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}

function catalogue(): Catalogue {
  const targets = readJson(path.join(source.out, 'metadata', `${latestVersion('targets')}.targets.json`)) as {
    signed: { targets: Record<string, { hashes: { sha256: string } }> };
  };
  const hash = targets.signed.targets['catalogue.json']!.hashes.sha256;
  return parseCatalogue(fs.readFileSync(path.join(source.out, 'targets', `${hash}.catalogue.json`)));
}

function latestVersion(role: 'targets' | 'snapshot' | 'root'): number {
  return Math.max(...fs.readdirSync(path.join(source.out, 'metadata')).flatMap((n) => new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(n)?.[1] ?? []).map(Number));
}

describe('publish', () => {
  it('codes each file as it is smallest, says so in the signed catalogue, and every coding installs byte for byte', async () => {
    // A list of records (comma-separated on one line, as npm's mailchecker is) and a binary table of
    // 7-byte records (a tree of pointers, as GeoLite2's is).
    const random = prng(3);
    const word = () => Array.from({ length: 5 + Math.floor(random() * 8) }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join('');
    let list = Array.from({ length: 8000 }, () => `${word()}.com`).sort();
    const listFile = () => Buffer.from(`var blacklist = new Set([${list.map((d) => `"${d}"`).join(',')}]);\n`);
    const table = (seed: number) => {
      const r = prng(seed);
      const data = Buffer.alloc(350_000);
      for (let i = 0; i < data.length; i += 7) data.writeUIntLE((i / 7 + Math.floor(r() * 64)) * 16, i, 6);
      return data;
    };
    source.fullCodecs = ['zstd', 'xz'];
    fs.mkdirSync(path.join(source.input, 'domains'), { recursive: true });
    fs.writeFileSync(path.join(source.input, 'domains', 'component.json'), '{"name": "Domains", "duplication": true}');
    source.writeVersion('domains', 1, listFile());
    source.writeVersion('geo-table', 1, table(1));
    source.publish();
    await source.start();
    const dataDir = tempDir('bulwark-data-');
    try {
      const trustedRoot = path.join(dataDir, 'imported-root.json');
      fs.copyFileSync(source.rootFile, trustedRoot);
      const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot } });
      expect((await engine.runOnce()).result).toBe('ok');

      list = [...list.filter(() => random() > 0.02), ...Array.from({ length: 300 }, () => `${word()}.net`)].sort();
      source.writeVersion('domains', 2, listFile());
      source.writeVersion('geo-table', 2, table(2));
      source.publish();
      const cat = catalogue();
      const domains = cat.components.find((c) => c.id === 'domains')!;
      expect(domains.incrementals).toEqual([{ from: 1, target: 'domains/v_1.2', format: 'records' }]);
      // xz for this version, and a zstd frame as `target` for a Bulwark older than xz full files, which
      // reads `target` alone and decodes it as zstd: it gets the same bytes.
      const geo = cat.components.find((c) => c.id === 'geo-table')!.full;
      expect(geo).toMatchObject({ target: 'geo-table/2.zst', compact: { target: 'geo-table/2.xz', codec: 'xz' } });
      expect(geo.codec).toBeUndefined();
      const signedFile = (target: string) => {
        const signed = (readJson(path.join(source.out, 'metadata', `${latestVersion('targets')}.targets.json`)) as { signed: { targets: Record<string, { hashes: { sha256: string } }> } }).signed.targets;
        return fs.readFileSync(path.join(source.out, 'targets', path.dirname(target), `${signed[target]!.hashes.sha256}.${path.basename(target)}`));
      };
      const asOlderVersion = decompressFull(signedFile(geo.target), { maxFileBytes: 1 << 30 });
      expect(asOlderVersion.equals(fs.readFileSync(path.join(source.input, 'geo-table', '2')))).toBe(true);
      expect(signedFile(geo.compact!.target).length).toBeLessThan(signedFile(geo.target).length);

      source.requests.length = 0;
      const run = await engine.runOnce();
      expect(run.result).toBe('ok');
      // This version takes the smaller one.
      expect(source.requests.filter((r) => r.includes('geo-table/'))).toEqual([expect.stringMatching(/^\/targets\/geo-table\/[0-9a-f]{64}\.2\.xz$/)]);
      expect(run.components.find((c) => c.id === 'domains')).toMatchObject({ method: 'incremental', version: 2 });
      expect(run.components.find((c) => c.id === 'geo-table')).toMatchObject({ method: 'full', version: 2 });
      for (const id of ['domains', 'geo-table']) {
        expect(fs.readFileSync(path.join(dataDir, 'store', id, '2')).equals(fs.readFileSync(path.join(source.input, id, '2')))).toBe(true);
      }
      await engine.stop();
    } finally {
      await source.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('writes a TUF repository whose metadata verifies against the published root', () => {
    source.addPattern('virus-pattern');
    source.writeVersion('scan-engine', 5, 'engine');
    source.publish();
    const root = Metadata.fromJSON('root' as never, readJson(source.rootFile) as never) as Metadata<never>;
    const rootSigned = (root as unknown as { signed: { consistentSnapshot: boolean; version: number } }).signed;
    expect(rootSigned.consistentSnapshot).toBe(true);
    expect(rootSigned.version).toBe(1);
    for (const [role, file] of [
      ['timestamp', 'timestamp.json'],
      ['snapshot', '1.snapshot.json'],
      ['targets', '1.targets.json'],
    ] as const) {
      const metadata = Metadata.fromJSON(role as never, readJson(path.join(source.out, 'metadata', file)) as never);
      expect(() => (root as unknown as Metadata<never>).verifyDelegate(role, metadata)).not.toThrow();
    }
    // Default lifetimes: timestamp 1 day, snapshot 7, targets 30, root 365.
    const expires = (file: string) => new Date((readJson(path.join(source.out, 'metadata', file)) as { signed: { expires: string } }).signed.expires).getTime();
    const day = 86_400_000;
    expect(Math.round((expires('timestamp.json') - Date.now()) / day)).toBe(1);
    expect(Math.round((expires('1.snapshot.json') - Date.now()) / day)).toBe(7);
    expect(Math.round((expires('1.targets.json') - Date.now()) / day)).toBe(30);
    expect(Math.round((expires('1.root.json') - Date.now()) / day)).toBe(365);
    // Keys were generated on first use, private and one per role.
    // (The publisher's own state is kept beside them, out of the published site.)
    expect(fs.readdirSync(source.keys).filter((f) => !/^publish-state-[0-9a-f]{16}\.json$/.test(f)).sort()).toEqual(['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
    expect(fs.statSync(path.join(source.keys, 'root.json')).mode & 0o077).toBe(0);
  });

  it('lists every component in a signed catalogue with full files compressed and incrementals from the previous 14', () => {
    for (let i = 0; i < 17; i++) source.addPattern('virus-pattern', { bytes: 50_000 }); // 171..203
    source.writeVersion('outbreak-defense-policy', 9, '{"policy":"od"}');
    source.publish();
    const cat = catalogue();
    const virus = cat.components.find((c) => c.id === 'virus-pattern')!;
    expect(virus).toMatchObject({ name: 'Virus Pattern', duplication: true, latest: 203, full: { target: 'virus-pattern/203.zst' } });
    expect(virus.incrementals.map((i) => i.from)).toEqual([175, 177, 179, 181, 183, 185, 187, 189, 191, 193, 195, 197, 199, 201]);
    expect(virus.incrementals[0]!.target).toBe('virus-pattern/v_175.203');
    const policy = cat.components.find((c) => c.id === 'outbreak-defense-policy')!;
    expect(policy).toMatchObject({ duplication: false, latest: 9, incrementals: [] });

    // The full file decompresses to the input; an incremental rebuilds it from its base.
    const latest = fs.readFileSync(path.join(source.input, 'virus-pattern', '203'));
    expect(decompressFull(fs.readFileSync(source.targetFile('virus-pattern/203.zst')), DEFAULT_LIMITS).equals(latest)).toBe(true);
    const base = fs.readFileSync(path.join(source.input, 'virus-pattern', '199'));
    const incremental = virus.incrementals.find((i) => i.from === 199)!;
    const limits = { ...DEFAULT_LIMITS, expectedLength: latest.length };
    expect(applyPatch(base, fs.readFileSync(source.targetFile(incremental.target)), limits, incremental.format).equals(latest)).toBe(true);
    expect(fs.statSync(source.targetFile('virus-pattern/203.zst')).size).toBeLessThan(latest.length);
  });

  it('does not publish an incremental that is not clearly smaller than the compressed full file', () => {
    // Two unrelated random files: a "patch" between them is as big as the file itself.
    source.writeVersion('spyware-pattern', 1, Buffer.from(Array.from({ length: 20_000 }, (_, i) => (i * 7919) % 251)));
    source.writeVersion('spyware-pattern', 2, Buffer.from(Array.from({ length: 20_000 }, () => Math.floor(Math.random() * 256))));
    const result = source.publish();
    const spyware = result.components.find((c) => c.id === 'spyware-pattern')!;
    expect(spyware.incrementals).toEqual([]);
    expect(spyware.skipped.map((s) => s.from)).toEqual([1]);
    expect(catalogue().components[0]!.incrementals).toEqual([]);
    // Built before the full file was, then removed again: nothing of it is left on the source.
    expect(fs.readdirSync(path.join(source.out, 'targets', 'spyware-pattern')).filter((n) => n.includes('.v_'))).toEqual([]);
    expect(source.publish().components[0]!.skipped).toEqual(spyware.skipped);
  });

  it('re-publishes incrementally: versions go up, built files are reused, older targets stay for a while', () => {
    source.addPattern('virus-pattern');
    source.addPattern('virus-pattern');
    source.publish();
    const firstFull = source.targetFile('virus-pattern/173.zst');
    const firstMtime = fs.statSync(firstFull).mtimeMs;
    const timestampV1 = (readJson(path.join(source.out, 'metadata', 'timestamp.json')) as { signed: { version: number } }).signed.version;

    source.publish(); // nothing new: only re-signed
    expect(fs.statSync(firstFull).mtimeMs).toBe(firstMtime);
    source.addPattern('virus-pattern'); // 175
    source.publish();
    const timestampV3 = (readJson(path.join(source.out, 'metadata', 'timestamp.json')) as { signed: { version: number } }).signed.version;
    expect(timestampV3).toBe(timestampV1 + 2);
    expect(latestVersion('targets')).toBe(3);
    expect(latestVersion('snapshot')).toBe(3);
    expect(latestVersion('root')).toBe(1);
    // The previous full file left the metadata but is still served, and previous metadata too.
    expect(fs.existsSync(firstFull)).toBe(true);
    expect(fs.existsSync(path.join(source.out, 'metadata', '1.targets.json'))).toBe(true);
    expect(catalogue().components[0]!.latest).toBe(175);

    // Past the retention period, files no longer referenced are removed; current ones stay.
    publish({ input: source.input, out: source.out, keys: source.keys, level: TEST_LEVEL, now: new Date(Date.now() + 8 * 86_400_000) });
    expect(fs.existsSync(firstFull)).toBe(false);
    expect(fs.existsSync(path.join(source.out, 'metadata', '1.targets.json'))).toBe(false);
    expect(fs.existsSync(source.targetFile('virus-pattern/175.zst'))).toBe(true);
    expect(fs.existsSync(path.join(source.out, 'metadata', '1.root.json'))).toBe(true);
  });

  it('refuses input that does not follow DIR/<component-id>/<version>, writing nothing', () => {
    source.writeVersion('virus-pattern', 171, 'x');
    fs.writeFileSync(path.join(source.input, 'virus-pattern', 'latest'), 'y');
    expect(() => source.publish()).toThrow(/virus-pattern\/latest: file names must be integer versions/);
    expect(fs.existsSync(source.out)).toBe(false);

    fs.rmSync(path.join(source.input, 'virus-pattern', 'latest'));
    fs.mkdirSync(path.join(source.input, 'Bad_Name'));
    expect(() => source.publish()).toThrow(/component ids use lower-case letters, digits and dashes/);
    expect(() => publish({ input: path.join(source.dir, 'missing'), out: source.out, keys: source.keys })).toThrow(/does not exist/);
  });

  it('takes a component\'s name and duplication from DIR/<component-id>/component.json', () => {
    source.addPattern('acme-rules', { bytes: 50_000 });
    source.addPattern('acme-rules', { bytes: 50_000 });
    fs.writeFileSync(path.join(source.input, 'acme-rules', 'component.json'), '{"name": "Acme Rules", "duplication": true}');
    source.addPattern('acme-plain', { bytes: 50_000 });
    source.addPattern('acme-plain', { bytes: 50_000 });
    source.addPattern('spyware-pattern', { bytes: 50_000 });
    source.addPattern('spyware-pattern', { bytes: 50_000 });
    fs.writeFileSync(path.join(source.input, 'spyware-pattern', 'component.json'), '{"duplication": false}');
    source.publish();
    const byId = Object.fromEntries(catalogue().components.map((c) => [c.id, c]));
    expect(byId['acme-rules']).toMatchObject({ name: 'Acme Rules', duplication: true, incrementals: [{ from: 171, target: 'acme-rules/v_171.173' }] });
    // Undeclared: as before, full-only with a name made from the id. Declared off: a built-in id too.
    expect(byId['acme-plain']).toMatchObject({ name: 'Acme Plain', duplication: false, incrementals: [] });
    expect(byId['spyware-pattern']).toMatchObject({ name: 'Spyware Pattern', duplication: false, incrementals: [] });
  });

  it('refuses a component.json that is not valid, naming the file and writing nothing', () => {
    source.writeVersion('acme-rules', 1, 'x');
    const file = path.join(source.input, 'acme-rules', 'component.json');
    for (const [content, problem] of [
      ['{"duplication": true', /acme-rules\/component\.json is not valid JSON/],
      ['{"duplication": "yes"}', /acme-rules\/component\.json: "duplication" must be boolean; expected \{"name": "\.\.\.", "duplication": true or false\}/],
      ['{"name": ""}', /acme-rules\/component\.json: "name" must NOT have fewer than 1 characters/],
      ['{"dupliction": true}', /acme-rules\/component\.json: must NOT have additional properties \("dupliction"\)/],
      ['[]', /acme-rules\/component\.json: must be object/],
    ] as const) {
      fs.writeFileSync(file, content);
      expect(() => source.publish()).toThrow(problem);
    }
    expect(fs.existsSync(source.out)).toBe(false);
  });

  it('refuses a damaged signing key instead of replacing it', () => {
    source.writeVersion('scan-engine', 1, 'x');
    source.publish();
    fs.writeFileSync(path.join(source.keys, 'targets.json'), '{"private":"nonsense"}');
    expect(() => source.publish()).toThrow(/cannot read the targets key/);
  });
});
