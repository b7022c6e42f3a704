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

async function install(store: ComponentStore, version: number) {
  const data = Buffer.from(`pattern ${version}`);
  await store.writeVerified('virus-pattern', version, data, { sha256: sha256(data), length: data.length }, 'test file');
  return store.activate('virus-pattern', version, { sha256: sha256(data), length: data.length, installedAt: new Date().toISOString(), method: 'full' });
}

it('keeps the last 15 versions per component, the active one always among them', async () => {
  const store = new ComponentStore(dir);
  for (let v = 1; v <= 20; v++) await install(store, v);
  expect(store.versions('virus-pattern')).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  expect(store.active('virus-pattern')).toMatchObject({ version: 20, method: 'full' });
});

it('refuses to store data that does not match its signed hash, leaving nothing behind', async () => {
  const store = new ComponentStore(dir);
  await install(store, 1);
  const good = Buffer.from('pattern 2');
  await expect(store.writeVerified('virus-pattern', 2, Buffer.from('pattern X'), { sha256: sha256(good), length: good.length }, 'the rebuilt file')).rejects.toThrow(
    /the rebuilt file does not match the signed length and hash of virus-pattern 2/,
  );
  expect(fs.readdirSync(path.join(dir, 'store', 'virus-pattern')).sort()).toEqual(['1', 'active.json']);
  expect(store.active('virus-pattern')?.version).toBe(1);
});

it('recognises a stored version only while it still matches its hash', async () => {
  const store = new ComponentStore(dir);
  const installed = await install(store, 1);
  expect(store.hasVerified('virus-pattern', 1, installed.sha256)).toBe(true);
  fs.writeFileSync(installed.path, 'tampered');
  expect(store.hasVerified('virus-pattern', 1, installed.sha256)).toBe(false);
});

it('sweeps temporary files left by an interrupted install', async () => {
  const store = new ComponentStore(dir);
  await install(store, 1);
  const leftover = path.join(dir, 'store', 'virus-pattern', '.2.abcdef.tmp');
  fs.writeFileSync(leftover, 'half a file');
  expect(store.recover()).toBe(1);
  expect(fs.existsSync(leftover)).toBe(false);
  expect(store.active('virus-pattern')?.version).toBe(1);
});

it('refuses component ids that could escape the store', async () => {
  const store = new ComponentStore(dir);
  await expect(store.writeVerified('../etc', 1, Buffer.from('x'), { sha256: sha256(Buffer.from('x')), length: 1 }, 'x')).rejects.toThrow(/invalid component id/);
});

it('checks an active file by size, time and inode on every run, and by hash when asked or when a day has passed', async () => {
  const store = new ComponentStore(dir);
  const active = await install(store, 1);
  expect(store.problem('virus-pattern', false)).toBeUndefined();
  // Another file of the same size and time put in its place: a new inode, seen without reading it.
  const replacement = `${active.path}.new`;
  fs.writeFileSync(replacement, 'pattern X');
  fs.utimesSync(replacement, active.mtimeMs! / 1000, active.mtimeMs! / 1000);
  fs.renameSync(replacement, active.path);
  expect(store.problem('virus-pattern', false)).toMatchObject({ problem: 'file-damaged' });
  // The same change in place (same inode, time put back) is found only by the hash.
  await install(store, 2);
  const second = store.active('virus-pattern')!;
  fs.writeFileSync(second.path, 'pattern Y');
  fs.utimesSync(second.path, second.mtimeMs! / 1000, second.mtimeMs! / 1000);
  expect(store.problem('virus-pattern', false)).toBeUndefined();
  expect(store.problem('virus-pattern', true)).toMatchObject({ problem: 'file-damaged' });

  // A full check is remembered for every process on the store; the next one is due a day later.
  expect(store.fullCheckDue()).toBe(true);
  store.problems(true, new Date('2030-01-01T00:00:00Z'));
  expect(store.lastFullCheck()).toEqual(new Date('2030-01-01T00:00:00Z'));
  expect(new ComponentStore(dir).fullCheckDue(new Date('2030-01-01T23:00:00Z'))).toBe(false);
  expect(new ComponentStore(dir).fullCheckDue(new Date('2030-01-02T00:00:00Z'))).toBe(true);
});
