// Byte-level incrementals are built two ways (codec.ts): with the base referenced as a raw-content prefix by
// our addon (native/zstd_prefix.c, the base's match tables held once), or, where the addon could not be
// built, through zstd-napi's loadDictionary. Both rebuild byte for byte, whatever the base starts with, and
// what the addon makes is an ordinary `zstd --patch-from` frame.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import binding from 'zstd-napi/binding.js';
import { applyPatch, compressFull, createPatch, decompressFull, Encoder, FULL_LEVEL, patchBuilder } from '../src-main/engine/codec.js';
import { PatternSeries } from '../src-main/demo/patterns.js';
import { TURN_OFF, zstdPrefix } from '../src-main/engine/zstd-prefix.js';
import { tempDir } from './helpers/fixtures.js';

const dir = tempDir('bulwark-prefix-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// `npm install` builds the addon where a C compiler is (native/build.js); CI has one, so there it must load.
const addon = zstdPrefix();
if (addon instanceof Error && process.env.CI) throw addon;

/** Run `build` with incrementals built the given way, and see that they were (zstd-napi's loadDictionary called or not). */
function through<T>(way: 'prefix' | 'dictionary', build: () => T): T {
  const before = process.env[TURN_OFF];
  if (way === 'dictionary') process.env[TURN_OFF] = 'off';
  else delete process.env[TURN_OFF];
  const loadDictionary = vi.spyOn(binding.CCtx.prototype, 'loadDictionary');
  try {
    expect(patchBuilder().path).toBe(way);
    const result = build();
    expect(loadDictionary.mock.calls.length > 0).toBe(way === 'dictionary');
    return result;
  } finally {
    loadDictionary.mockRestore();
    if (before === undefined) delete process.env[TURN_OFF];
    else process.env[TURN_OFF] = before;
  }
}

const series = new PatternSeries('virus-pattern', 171, 300_000, 23);
const v1 = series.content();
series.next();
const v3 = series.next();
/** zstd's dictionary magic number, 0xEC30A437 little-endian: zstd reads a dictionary starting so as a trained one. */
const magic = Buffer.from([0x37, 0xa4, 0x30, 0xec]);
const bases = {
  'an ordinary base': [v1, v3],
  "a base that starts with zstd's dictionary magic": [Buffer.concat([magic, v1]), Buffer.concat([magic, v3])],
} as const;
const limits = (target: Buffer) => ({ maxFileBytes: 1 << 30, expectedLength: target.length });

/** zstd's own tool with `--patch-from=base` (which takes the base as raw content), on `input`, `-d` or not. */
function zstdCli(args: string[], base: Buffer, input: Buffer): Buffer {
  const [baseFile, inputFile] = [path.join(dir, 'base'), path.join(dir, 'input')];
  fs.writeFileSync(baseFile, base);
  fs.writeFileSync(inputFile, input);
  return execFileSync('zstd', ['-q', '-c', '--long=31', ...args, `--patch-from=${baseFile}`, inputFile], { maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

describe.skipIf(addon instanceof Error)('incrementals with the base as a prefix (native/zstd_prefix.node)', () => {
  it.each(Object.entries(bases))('rebuild %s byte for byte', (name, [base, target]) => {
    const patch = through('prefix', () => createPatch(base, target));
    expect(patch.length).toBeLessThan(target.length / 20);
    expect(applyPatch(base, patch, limits(target)).equals(target)).toBe(true);
    // An ordinary patch-from frame. (zstd's own decoder, 1.5.4 here, reads a base that starts with the magic
    // as a trained dictionary, though its encoder takes it raw: that case is checked the other way below.)
    if (name === 'an ordinary base') expect(zstdCli(['-d'], base, patch).equals(target)).toBe(true);
    // One Encoder for a series of files makes what a fresh one makes.
    const encoder = new Encoder();
    encoder.compressFull(target, 3);
    expect(through('prefix', () => encoder.createPatch(base, target)).equals(patch)).toBe(true);
  });

  it('makes full files too, the same frames as zstd-napi makes, with a context freed as each is made', () => {
    const target = bases['an ordinary base'][1];
    for (const level of [3, 9, FULL_LEVEL]) {
      const compress2 = vi.spyOn(binding.CCtx.prototype, 'compress2');
      const viaAddon = compressFull(target, level);
      expect(compress2).not.toHaveBeenCalled();
      compress2.mockRestore();
      process.env[TURN_OFF] = 'off';
      try {
        expect(compressFull(target, level).equals(viaAddon), `level ${level}`).toBe(true);
      } finally {
        delete process.env[TURN_OFF];
      }
      expect(decompressFull(viaAddon, limits(target)).equals(target)).toBe(true);
    }
  });

  it("throws zstd's error name", () => {
    const [base, target] = bases['an ordinary base'];
    const prefix = addon as Exclude<typeof addon, Error>;
    expect(() => prefix.compress(Buffer.alloc(16), target, base, [])).toThrow(/^Destination buffer is too small$/);
    expect(() => prefix.compress(Buffer.alloc(1 << 20), target, base, [101, 99])).toThrow(/^Parameter is out of bound$/);
    expect(() => prefix.compress(Buffer.alloc(1 << 20), target, base, [101])).toThrow(TypeError);
  });
});

describe('incrementals through zstd-napi (where the addon is missing)', () => {
  it.each(Object.entries(bases))('rebuild %s byte for byte', (_, [base, target]) => {
    const patch = through('dictionary', () => createPatch(base, target));
    expect(patch.length).toBeLessThan(target.length / 20);
    expect(applyPatch(base, patch, limits(target)).equals(target)).toBe(true);
  });
});

it("applies a `zstd --patch-from` incremental whose base starts with zstd's dictionary magic, as zstd reads it: raw content", () => {
  const [base, target] = bases["a base that starts with zstd's dictionary magic"];
  const patch = zstdCli(['-12'], base, target);
  expect(applyPatch(base, patch, limits(target)).equals(target)).toBe(true);
});
