// Every coding a catalogue can name, rebuilt byte for byte, and the decoders' bounds against hostile input.
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { applyPatch, compressFullBest, createRecordsPatch, decompressFull, Encoder, estimatePatch } from '../src-main/engine/codec.js';
import { CorruptDataError } from '../src-main/engine/errors.js';
import { prng } from '../src-main/demo/patterns.js';
import { compressXz, decompressXz, xzBuild } from '../src-main/engine/xz.js';

const limits = (expectedLength: number) => ({ maxFileBytes: 1 << 30, expectedLength });

/** A sorted list of domain-like records, as the npm lists are: `count` of them from `seed`. */
function domains(count: number, seed: number): string[] {
  const random = prng(seed);
  const word = () => Array.from({ length: 4 + Math.floor(random() * 10) }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join('');
  return Array.from({ length: count }, () => `${word()}.${['com', 'net', 'org', 'ru'][Math.floor(random() * 4)]}`).sort();
}

/** The next version of a list: some records gone, some new, in sorted order. */
function nextVersion(list: string[], seed: number): string[] {
  const random = prng(seed);
  return [...list.filter(() => random() > 0.01), ...domains(Math.floor(list.length / 20), seed + 1)].sort();
}

const asJsonLines = (list: string[]) => Buffer.from(`[\n${list.map((d) => `  "${d}"`).join(',\n')}\n]\n`);
const asCommaList = (list: string[]) => Buffer.from(`'use strict';\nvar blacklist = new Set([${list.map((d) => `"${d}"`).join(',')}]);\nmodule.exports = blacklist;\n`);

describe('record-aware incrementals', () => {
  const v1 = domains(5000, 1);
  const v2 = nextVersion(v1, 2);
  const v3 = nextVersion(v2, 4);

  for (const [layout, write] of [
    ['one record a line', asJsonLines],
    ['comma-separated records on one line', asCommaList],
  ] as const) {
    it(`rebuild ${layout} byte for byte, smaller than the byte-level patch`, () => {
      for (const [base, target] of [
        [write(v1), write(v2)],
        [write(v1), write(v3)],
        [write(v3), write(v1)], // backwards: records come back
        [write(v2), write(v2)], // unchanged
      ] as const) {
        const patch = createRecordsPatch(base, target)!;
        expect(patch).toBeDefined();
        expect(applyPatch(base, patch, limits(target.length), 'records').equals(target)).toBe(true);
      }
      const patch = createRecordsPatch(write(v1), write(v2))!;
      expect(patch.length).toBeLessThan(new Encoder().createPatch(write(v1), write(v2)).length);
    });
  }

  it('are not made for binary files, nor for files that are mostly new', () => {
    const random = prng(9);
    const binary = Buffer.from(Array.from({ length: 100_000 }, () => Math.floor(random() * 256)));
    expect(createRecordsPatch(binary, binary)).toBeUndefined();
    expect(createRecordsPatch(asJsonLines(v1), asJsonLines(domains(5000, 99)))).toBeUndefined();
  });

  it('refuse a patch that builds another length, and bound what a hostile one can decompress to', () => {
    const base = asJsonLines(v1);
    const target = asJsonLines(v2);
    const patch = createRecordsPatch(base, target)!;
    expect(() => applyPatch(base, patch, limits(target.length - 1), 'records')).toThrow(/expected/);
    // A brotli bomb behind the magic: 64 MiB of zeros in a few bytes.
    const bomb = Buffer.concat([patch.subarray(0, 5), zlib.brotliCompressSync(Buffer.alloc(64 << 20), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } })]);
    expect(() => applyPatch(Buffer.from('a\n'), bomb, limits(100), 'records')).toThrow(CorruptDataError);
    // Hunks that point past the base.
    expect(() => applyPatch(Buffer.from('a\n'), patch, limits(target.length), 'records')).toThrow(CorruptDataError);
  });
});

// Both builds of liblzma (xz.ts): node-liblzma's native binding where it is installed, and the WebAssembly
// build every installation has. npm leaves node-liblzma out under Node 20 (its engines say 22 or later) and
// where its build fails; CI installs it for its Node 22 run (.ci/run), where these cases must not be skipped.
const nativeXz = (() => {
  try {
    compressXz(Buffer.from('x'), 0, 'native');
    return true;
  } catch (error) {
    if (process.env.CI && Number(process.versions.node.split('.')[0]) >= 22) throw error;
    return false;
  }
})();

/** Made once for both builds: a decompression bomb, and a 4 MB file with its `xz -1` file. */
let made: { bomb: Buffer; large: Buffer; packed: Buffer } | undefined;
function shared() {
  if (!made) {
    const random = prng(5);
    const text = asJsonLines(domains(20_000, 3));
    const large = Buffer.concat([text, Buffer.from(Array.from({ length: 3 << 20 }, () => Math.floor(random() * 64))), text]);
    made = { bomb: execFileSync('xz', ['-1', '-c'], { input: Buffer.alloc(64 << 20), maxBuffer: 1 << 20 }), large, packed: execFileSync('xz', ['-1', '-c'], { input: large, maxBuffer: 64 << 20 }) };
  }
  return made;
}

describe('full files', () => {
  for (const which of ['native', 'wasm'] as const) {
    describe.skipIf(which === 'native' && !nativeXz)(`in xz through the ${which} build of liblzma`, () => {
      it('rebuild byte for byte; the decoder never writes past the signed length', () => {
        const content = asJsonLines(domains(20_000, 3));
        const xz = compressXz(content, undefined, which);
        expect(decompressXz(xz, content.length, which).equals(content)).toBe(true);
        expect(() => decompressXz(xz, content.length - 1, which)).toThrow(/more than the expected/);
        expect(() => decompressXz(xz, content.length + 1, which)).toThrow(CorruptDataError);
        expect(() => decompressXz(xz.subarray(0, xz.length - 100), content.length, which)).toThrow(CorruptDataError);
        // 64 MiB of zeros (xz codes it in 10 kB): refused at the signed length, never allocated.
        expect(() => decompressXz(shared().bomb, 1000, which)).toThrow(/more than the expected 1000/);
        // A file over the WebAssembly build's 1 MiB chunks, in and out, written by this build and read by
        // `xz -d`, and written by `xz` and read by this build.
        const { large, packed } = shared();
        expect(decompressXz(packed, large.length, which).equals(large)).toBe(true);
        const ours = compressXz(large, 0, which);
        expect(execFileSync('xz', ['-d', '-c'], { input: ours, maxBuffer: 64 << 20 }).equals(large)).toBe(true);
      });

      it('refuse a stream that asks for a dictionary larger than any Bulwark writes', () => {
        const content = Buffer.from('x'.repeat(1000));
        const xz = Buffer.from(compressXz(content, undefined, which));
        // Block header at byte 12: size, flags, filter id 0x21, props size 1, dictionary props, padding, CRC32.
        const headerSize = (xz[12]! + 1) * 4;
        expect(xz.subarray(14, 16)).toEqual(Buffer.from([0x21, 0x01]));
        xz[16] = 40; // 4 GiB - 1
        xz.writeUInt32LE(zlib.crc32(xz.subarray(12, 12 + headerSize - 4)), 12 + headerSize - 4);
        expect(() => decompressXz(xz, content.length, which)).toThrow(/larger dictionary/);
      });
    });
  }

  it.skipIf(!nativeXz)('in xz: each build decodes what the other wrote, and the catalogue\'s codec reaches the one loaded', () => {
    const content = asCommaList(domains(30_000, 7));
    const fromNative = compressXz(content, undefined, 'native');
    const fromWasm = compressXz(content, undefined, 'wasm');
    expect(decompressXz(fromNative, content.length, 'wasm').equals(content)).toBe(true);
    expect(decompressXz(fromWasm, content.length, 'native').equals(content)).toBe(true);
    expect(xzBuild()).toBe('native');
    expect(decompressFull(fromWasm, limits(content.length), 'xz').equals(content)).toBe(true);
  });

  it('say which coding a version of Bulwark cannot decode', () => {
    expect(() => decompressFull(Buffer.from('x'), limits(1), 'lz5')).toThrow(/"lz5", which this version of Bulwark cannot decode/);
    expect(() => applyPatch(Buffer.from('x'), Buffer.from('x'), limits(1), 'vcdiff')).toThrow(/"vcdiff", which this version of Bulwark cannot apply/);
  });

  it('are published in the codec that makes each smallest', () => {
    const encoder = new Encoder();
    // A binary table of 7-byte records (a tree of 28-bit pointers, as GeoLite2's is): LZMA's literal coding wins.
    const random = prng(5);
    const table = Buffer.alloc(700_000);
    for (let i = 0; i < table.length; i += 7) table.writeUIntLE((i / 7 + Math.floor(random() * 64)) * 16, i, 6);
    const text = asJsonLines(domains(20_000, 6));
    for (const content of [table, text]) {
      const chosen = compressFullBest(content, encoder, 19);
      const sizes = { zstd: encoder.compressFull(content, 19).length, xz: compressXz(content).length };
      expect(chosen.data.length).toBe(Math.min(sizes.zstd, sizes.xz));
      expect(decompressFull(chosen.data, limits(content.length), chosen.codec).equals(content)).toBe(true);
    }
    expect(compressFullBest(table, encoder, 19).codec).toBe('xz');
  });
});

describe('estimatePatch', () => {
  it('is near nothing for a file that barely changed and near the compressed file for an unrelated one', () => {
    const random = prng(8);
    const base = Buffer.from(Array.from({ length: 2_000_000 }, () => Math.floor(random() * 256)));
    const changed = Buffer.from(base);
    for (let i = 0; i < 200; i++) changed[Math.floor(random() * changed.length)] = 0;
    const unrelated = Buffer.from(Array.from({ length: 2_000_000 }, () => Math.floor(random() * 256)));
    expect(estimatePatch(base, changed, 1)).toBeLessThan(changed.length * 0.05);
    expect(estimatePatch(base, unrelated, 1)).toBeGreaterThan(unrelated.length * 0.95);
  });
});
