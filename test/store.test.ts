// The versioned store on real files.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sha256 } from '../src-main/engine/files.js';
import { ComponentStore } from '../src-main/engine/store.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
beforeEach(() => {
  dir = tempDir('bulwark-store-');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function install(store: ComponentStore, version: number) {
  const data = Buffer.from(`pattern ${version}`);
  store.write('virus-pattern', version, data);
  return store.activate('virus-pattern', version, { sha256: sha256(data), length: data.length, installedAt: new Date().toISOString(), method: 'full' });
}

it('keeps the last 15 versions per component, the active one always among them', () => {
  const store = new ComponentStore(dir);
  for (let v = 1; v <= 20; v++) install(store, v);
  expect(store.versions('virus-pattern')).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  expect(store.active('virus-pattern')).toMatchObject({ version: 20, method: 'full' });
});

it('notices a stored file changed behind its back', () => {
  const store = new ComponentStore(dir);
  const installed = install(store, 1);
  fs.writeFileSync(installed.path, 'tampered');
  expect(() => store.readVerified(store.active('virus-pattern')!)).toThrow(/no longer matches its recorded SHA-256/);
});

it('sweeps temporary files left by an interrupted install', () => {
  const store = new ComponentStore(dir);
  install(store, 1);
  const leftover = path.join(dir, 'store', 'virus-pattern', '.2.abcdef.tmp');
  fs.writeFileSync(leftover, 'half a file');
  expect(store.recover()).toBe(1);
  expect(fs.existsSync(leftover)).toBe(false);
  expect(store.active('virus-pattern')?.version).toBe(1);
});

it('refuses component ids that could escape the store', () => {
  const store = new ComponentStore(dir);
  expect(() => store.write('../etc', 1, Buffer.from('x'))).toThrow(/invalid component id/);
});
