// The files a server makes for its agents (incrementals from a kept version, compressed full files), on
// real files with the real codec worker: each is made once ever, named by its inputs, only toward the
// current release's version; one damaged on disk is noticed and not served (nor made again).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { PatternSeries } from '../src-main/demo/patterns.js';
import { sha256 } from '../src-main/engine/files.js';
import { MadeFiles, MadeQueueFull, MAX_BUILD_ATTEMPTS, MAX_QUEUED_BUILDS, type KeptVersion } from '../src-main/distribution/made-files.js';
import { ensureBuilt } from './helpers/cli.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
let kept: KeptVersion[];

beforeAll(() => ensureBuilt()); // the codec worker runs from out/main

beforeEach(() => {
  dir = tempDir('bulwark-made-');
  const series = new PatternSeries('virus-pattern', 171, 200_000, 7);
  kept = [];
  for (let i = 0; i < 3; i++) {
    const data = i === 0 ? series.content() : series.next();
    const file = path.join(dir, 'store', String(series.version));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, data);
    kept.push({ id: 'virus-pattern', version: series.version, sha256: sha256(data), file, latest: i === 2 });
  }
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const lookup = (id: string, hash: string) => kept.find((k) => k.id === id && k.sha256 === hash);
const made = (options: { retryAfterMs?: number } = {}) => new MadeFiles(path.join(dir, 'made'), lookup, options);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('makes an incremental once, names it by its inputs, and never again: damaged on disk, it is not served', async () => {
  const [base, , target] = kept;
  const name = `${base!.sha256}-${target!.sha256}.patch`;
  const first = await made().get('virus-pattern', name);
  expect(first).toBeDefined();
  expect(first!.length).toBeLessThan(fs.statSync(target!.file).size / 4);
  expect(sha256(fs.readFileSync(first!.file))).toBe(first!.sha256);
  // Asked again (by the next agent, or the next server on this directory): the same file, not made again.
  const mtime = fs.statSync(first!.file).mtimeMs;
  expect(await made().get('virus-pattern', name)).toEqual(first);
  expect(fs.statSync(first!.file).mtimeMs).toBe(mtime);

  // Damaged while the server was down: the next server notices (the hash recorded when it was made),
  // serves nothing, and does not make it again (each file is made once ever; agents take another way).
  const bytes = fs.readFileSync(first!.file);
  for (let i = 20; i < bytes.length; i += 97) bytes[i] = bytes[i]! ^ 0xff;
  fs.writeFileSync(first!.file, bytes);
  expect(await made().get('virus-pattern', name)).toBeUndefined();
  expect(fs.existsSync(first!.file)).toBe(false);
  expect(await made().get('virus-pattern', name)).toBeUndefined();
  expect(fs.existsSync(first!.file)).toBe(false);
});

it("makes only toward the current release's version: no incremental between two older versions, no full file of an older one", async () => {
  const [base, middle, target] = kept;
  const files = made();
  expect(files.canMake('virus-pattern', `${base!.sha256}-${target!.sha256}.patch`)).toBe(true);
  expect(files.canMake('virus-pattern', `${middle!.sha256}-${target!.sha256}.patch`)).toBe(true);
  expect(files.canMake('virus-pattern', `${target!.sha256}.zst`)).toBe(true);
  expect(await files.get('virus-pattern', `${base!.sha256}-${middle!.sha256}.patch`)).toBeUndefined();
  expect(await files.get('virus-pattern', `${middle!.sha256}.zst`)).toBeUndefined();
  expect(await files.get('virus-pattern', `${target!.sha256}-${target!.sha256}.patch`)).toBeUndefined();
  expect(fs.existsSync(path.join(dir, 'made'))).toBe(false);
});

it('bounds the builds waiting: past the limit it refuses at once, and one request per pair starts one build', async () => {
  const [, , target] = kept;
  // Forty more kept versions to build from (the limit is 32 waiting).
  for (let i = 0; i < 40; i++) {
    const data = Buffer.alloc(50_000, i);
    const file = path.join(dir, 'store', `extra-${i}`);
    fs.writeFileSync(file, data);
    kept.push({ id: 'virus-pattern', version: 100 + i, sha256: sha256(data), file, latest: false });
  }
  const files = made();
  const bases = kept.slice(3);
  const asked = bases.map((b) => files.get('virus-pattern', `${b.sha256}-${target!.sha256}.patch`).then(
    (file) => (file ? 'made' : 'none'),
    (error: Error) => (error instanceof MadeQueueFull ? 'busy' : `failed: ${error.message}`),
  ));
  // The same pair again while it is being made: it shares the build.
  const twice = await Promise.all([files.get('virus-pattern', `${bases[0]!.sha256}-${target!.sha256}.patch`), asked[0]]);
  expect(twice[0]).toBeDefined();
  const outcomes = await Promise.all(asked);
  expect(outcomes.filter((o) => o === 'made')).toHaveLength(MAX_QUEUED_BUILDS);
  expect(outcomes.filter((o) => o === 'busy')).toHaveLength(bases.length - MAX_QUEUED_BUILDS);
});

it('makes nothing from versions it does not keep, or backwards, or from a malformed name', async () => {
  const [base, middle, target] = kept;
  const files = made();
  expect(await files.get('virus-pattern', `${'0'.repeat(64)}-${target!.sha256}.patch`)).toBeUndefined();
  expect(await files.get('virus-pattern', `${target!.sha256}-${middle!.sha256}.patch`)).toBeUndefined();
  expect(await files.get('virus-pattern', `${base!.sha256}.patch`)).toBeUndefined();
  expect(await files.get('virus-pattern', '../../etc/passwd')).toBeUndefined();
  expect(await files.get('spyware-pattern', `${base!.sha256}-${target!.sha256}.patch`)).toBeUndefined();
  expect(fs.existsSync(path.join(dir, 'made'))).toBe(false);
});

it('a build that failed is tried again once its retry time has passed (a passing fault: the base was away), and made then', async () => {
  const [base, , target] = kept;
  const name = `${base!.sha256}-${target!.sha256}.patch`;
  const away = `${base!.file}.away`;
  fs.renameSync(base!.file, away);
  await expect(made({ retryAfterMs: 1_000 }).get('virus-pattern', name)).rejects.toThrow();
  const mark = path.join(dir, 'made', 'virus-pattern', `${name}.failed`);
  expect(JSON.parse(fs.readFileSync(mark, 'utf8'))).toMatchObject({ attempts: 1, error: expect.stringMatching(/ENOENT|no such file/) });
  fs.renameSync(away, base!.file);
  // Within the retry time: not built again, whoever asks (another server on this directory too).
  expect(await made({ retryAfterMs: 1_000 }).get('virus-pattern', name)).toBeUndefined();
  await sleep(1_100);
  const file = await made({ retryAfterMs: 1_000 }).get('virus-pattern', name);
  expect(file).toBeDefined();
  expect(sha256(fs.readFileSync(file!.file))).toBe(file!.sha256);
  expect(fs.existsSync(mark)).toBe(false);
  // Made now: served as any made file, and the hour's default does not matter any more.
  expect(await made().get('virus-pattern', name)).toEqual(file);
});

it(`a build that keeps failing is tried ${MAX_BUILD_ATTEMPTS} times in all, then never again; a mark in the older form (the error's words) counts as one`, async () => {
  const [base, middle, target] = kept;
  const name = `${base!.sha256}-${target!.sha256}.patch`;
  fs.renameSync(base!.file, `${base!.file}.away`);
  const files = made({ retryAfterMs: 600 });
  for (let attempt = 1; attempt <= MAX_BUILD_ATTEMPTS; attempt++) {
    await expect(files.get('virus-pattern', name)).rejects.toThrow();
    expect(await files.get('virus-pattern', name)).toBeUndefined();
    await sleep(700);
  }
  fs.renameSync(`${base!.file}.away`, base!.file);
  expect(await files.get('virus-pattern', name)).toBeUndefined();
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'made', 'virus-pattern', `${name}.failed`), 'utf8')).attempts).toBe(MAX_BUILD_ATTEMPTS);

  // An older server's mark: the words alone. Within the hour since it was written, nothing; after it, one more build.
  const other = `${middle!.sha256}-${target!.sha256}.patch`;
  const older = path.join(dir, 'made', 'virus-pattern', `${other}.failed`);
  fs.writeFileSync(older, 'building failed (worker exit code 1)');
  expect(await made().get('virus-pattern', other)).toBeUndefined();
  const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
  fs.utimesSync(older, twoHoursAgo, twoHoursAgo);
  expect(await made().get('virus-pattern', other)).toBeDefined();
});
