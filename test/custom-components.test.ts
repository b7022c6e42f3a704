// A source's own components end to end: published from DIR/<component-id>/ with or without a
// component.json, served over HTTP on loopback, updated by the Engine, which follows the signed
// catalogue's duplication flag.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
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

it('gives a custom component declared with duplication incrementals, and keeps an undeclared one full-only', async () => {
  for (const id of ['acme-rules', 'acme-plain']) {
    source.addPattern(id);
    source.addPattern(id); // 173
  }
  fs.writeFileSync(path.join(source.input, 'acme-rules', 'component.json'), JSON.stringify({ name: 'Acme Rules', duplication: true }));
  source.publish();
  const trustedRoot = path.join(dataDir, 'imported-root.json');
  fs.copyFileSync(source.rootFile, trustedRoot);
  const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot } });
  const first = await engine.runOnce();
  expect(first.components.map((c) => [c.id, c.method, c.version])).toEqual([
    ['acme-plain', 'full', 173],
    ['acme-rules', 'full', 173],
  ]);

  for (const id of ['acme-rules', 'acme-plain']) source.addPattern(id); // 175
  source.publish();
  source.requests.length = 0;
  const second = await engine.runOnce();
  expect(second.result).toBe('ok');
  const run = Object.fromEntries(second.components.map((c) => [c.id, c]));
  expect(run['acme-rules']).toMatchObject({ previousVersion: 173, version: 175, method: 'incremental', reason: 'incremental from 173' });
  expect(run['acme-rules']!.bytes).toBeLessThan(run['acme-rules']!.fullBytes / 10);
  expect(run['acme-plain']).toMatchObject({ previousVersion: 173, version: 175, method: 'full', reason: 'full-only component' });
  // What went over the wire: the incremental for one, the full file for the other.
  expect(source.requests.some((r) => r.endsWith('.v_173.175') && r.includes('/acme-rules/'))).toBe(true);
  expect(source.requests.some((r) => r.includes('/acme-plain/') && r.includes('.v_'))).toBe(false);
  expect(source.requests.some((r) => r.endsWith('.175.zst') && r.includes('/acme-plain/'))).toBe(true);
  // Both rebuilt exactly.
  for (const id of ['acme-rules', 'acme-plain']) {
    expect(fs.readFileSync(path.join(dataDir, 'store', id, '175')).equals(fs.readFileSync(path.join(source.input, id, '175')))).toBe(true);
  }
});
