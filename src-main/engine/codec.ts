// Compression of full files and incremental patterns. Each published file says in the signed catalogue how
// it is coded, chosen per file when it is published (docs/benchmarks.md has the measurements):
//
//   full files     'zstd'     a zstd frame with long-distance matching (the official library, zstd-napi)
//                  'xz'       an .xz file (LZMA2, xz.ts): smaller on binary databases
//   incrementals   'zstd'     a zstd frame compressed with the base version as a raw-content prefix:
//                             the "patch-from" technique of `zstd --patch-from`, for any file (built
//                             with our addon, zstd-prefix.ts, or zstd-napi's loadDictionary without it)
//                  'records'  which records went and which came (records.ts), for text lists of records
//
// A catalogue entry without a codec is 'zstd' (what every earlier Bulwark published), so older sources keep
// working; a codec this version does not know is reported as such, never guessed at.
import binding from 'zstd-napi/binding.js';
import { CorruptDataError } from './errors.js';
import { applyRecordPatch, createRecordPatch, isRecordPatch } from './records.js';
import { compressXz, decompressXz } from './xz.js';
import { zstdPrefix } from './zstd-prefix.js';

export interface CodecLimits {
  /** Largest decompressed component file we accept; guards against decompression bombs. */
  maxFileBytes: number;
  /** The exact length the result must have (the signed length), when known; formats without a declared size need it. */
  expectedLength?: number;
}

/** How a full file is coded (`full.codec` in the catalogue). */
export type FullCodec = 'zstd' | 'xz';
/** How an incremental is coded (`format` of a catalogue incremental). */
export type PatchFormat = 'zstd' | 'records';
export const FULL_CODECS: readonly FullCodec[] = ['zstd', 'xz'];
export const PATCH_FORMATS: readonly PatchFormat[] = ['zstd', 'records'];

/** zstd's largest window on 64-bit builds; frames that need more are refused. */
const MAX_WINDOW_LOG = 31;

function windowLogFor(bytes: number): number {
  return Math.min(MAX_WINDOW_LOG, Math.max(20, Math.ceil(Math.log2(bytes + 1))));
}

/** Default zstd levels, chosen by measurement (docs/benchmarks.md). Level 20 full files come within xz -9's
 * size on text and closest to it on a binary database among the levels whose memory fits the publisher
 * (21 and 22 gain under 1% more, with 1.5-2.5x the memory, which the publisher's shared context would then
 * keep through the incrementals); a decoder's window stays the file's size. Level-12 patches come within
 * 1.15x of the best delta tool at a fraction of level 19's time. */
export const FULL_LEVEL = 20;
export const PATCH_LEVEL = 12;

/**
 * The match-finder tables of an incremental (5 bytes per entry for the row match finder of levels 5-12)
 * are held once with the base as a prefix, twice through loadDictionary (in the CDict built from the
 * base and in the context's copy of it). About one entry per byte of base and target is enough: measured
 * on the benchmark's data, 2^(W-1) entries make level-12 patches 0.0-0.3% larger than 2^W on 4 and 20 MB files, at half the
 * memory. Above 2^26 entries (320 MiB per copy) a 66 MB file could not be published in 1 GB; at 2^26 the
 * 50 MB pattern's patch is 1% larger than at 2^27.
 */
const MAX_TABLE_LOG = 26;

type Parameters = Partial<Record<keyof typeof binding.CParameter, number>>;

/** zstd's dictionary magic number (ZSTD_MAGIC_DICTIONARY), as the first four bytes of a file. */
const DICTIONARY_MAGIC = 0xec30a437;

/**
 * A base as zstd-napi's loadDictionary and decompressUsingDict take it: always raw content. They read a
 * dictionary that starts with zstd's magic number as a trained dictionary (and refuse it, or decode
 * wrongly), so such a base gets one zero byte in front: a raw-content dictionary that ends with the
 * base, where a patch's matches reach back from. A patch made with the base itself as the prefix
 * decodes the same way (its matches never reach that byte). (zstd's own command line, 1.5.4, encodes
 * such a base as raw content but decodes it as a trained dictionary.)
 */
function asRawContent(base: Uint8Array): Uint8Array {
  const magic = base.length >= 4 && Buffer.from(base.buffer, base.byteOffset, 4).readUInt32LE(0) === DICTIONARY_MAGIC;
  return magic ? Buffer.concat([Buffer.alloc(1), base]) : base;
}

/**
 * How this process builds byte-level incrementals: with the base as a prefix (zstd-prefix.ts, its tables
 * held once), or, where that addon is missing, through zstd-napi's loadDictionary, with the reason.
 */
export function patchBuilder(): { path: 'prefix' } | { path: 'dictionary'; reason: string } {
  const addon = zstdPrefix();
  return addon instanceof Error ? { path: 'dictionary', reason: addon.message } : { path: 'prefix' };
}

/** An empty prefix: the addon then compresses as with no dictionary at all. */
const NO_PREFIX = new Uint8Array(0);

/** Parameters as zstd's [ZSTD_cParameter, value, ...] pairs, as the prefix addon takes them. */
function asPairs(parameters: Parameters): number[] {
  return Object.entries(parameters).flatMap(([name, value]) => [binding.CParameter[name as keyof typeof binding.CParameter], value]);
}

function fullParameters(length: number, level: number): Parameters {
  return {
    compressionLevel: level,
    windowLog: windowLogFor(length),
    // Long-distance matching pays off at the high levels and costs size below 16 (measured on JSON).
    enableLongDistanceMatching: level >= 16 ? 1 : 0,
    checksumFlag: 1,
  };
}

/**
 * The same on both paths (prefix and loadDictionary). The match finder reaches far back into a large
 * base only when its tables are sized to the window, and long-distance matching never indexes a loaded
 * dictionary (it only made patches worse), so both are set here rather than left to the level's defaults.
 */
function patchParameters(baseLength: number, targetLength: number, level: number): Parameters {
  // The window must span the base and the target so matches can reach back into the base.
  const windowLog = windowLogFor(baseLength + targetLength);
  const tables =
    level >= 13
      ? { hashLog: Math.min(windowLog - 1, MAX_TABLE_LOG), chainLog: Math.min(windowLog + 1, 30) }
      : { hashLog: Math.min(windowLog - 1, MAX_TABLE_LOG), chainLog: Math.min(windowLog - 1, MAX_TABLE_LOG) };
  return { compressionLevel: level, windowLog, ...tables, enableLongDistanceMatching: 0, checksumFlag: 1 };
}

/**
 * One zstd compression context for a series of files (a publish builds a full file and up to 14
 * incrementals per component). zstd-napi frees a context's native memory only when its wrapper has
 * been garbage-collected and a turn of the event loop has run the finalizer, so a synchronous loop
 * that made a context per file held all of them at once (1.6 GB for 14 incrementals of a 4 MB file).
 * Here the context is reset after every file, which frees the dictionary (zstd's copy of the base and
 * the CDict built from it) at once, and its workspace is reused by the next file. Where the prefix addon
 * is built, incrementals and full files use a context of their own, freed as each file is made, and this
 * one only codes the samples that estimate a large file's size.
 */
export class Encoder {
  private readonly cctx = new binding.CCtx();
  /** Output buffer for patches, reused: a new bound-sized buffer per patch would wait for a garbage collection. */
  private patchOutput = Buffer.alloc(0);

  /**
   * Compress a full component file for publishing. Through the prefix addon (with no prefix) where it is
   * built, whose context is freed as the file is made: this Encoder's would keep level 20's workspace (87
   * MiB for a 4 MB file) through what follows, xz's encoder for the same file included. The frames are the
   * same either way (test/codec-prefix.test.ts).
   */
  compressFull(content: Uint8Array, level = FULL_LEVEL): Buffer {
    // Its own buffer, handed to the caller: about half of it is the result, the rest never touched.
    const output = Buffer.allocUnsafe(binding.compressBound(content.length));
    const parameters = fullParameters(content.length, level);
    const prefix = zstdPrefix();
    const length = prefix instanceof Error ? this.compress(parameters, content, output) : prefix.compress(output, content, NO_PREFIX, asPairs(parameters));
    return output.subarray(0, length);
  }

  /** Build the incremental pattern that turns `base` into `target`. */
  createPatch(base: Uint8Array, target: Uint8Array, level = PATCH_LEVEL): Buffer {
    const bound = binding.compressBound(target.length);
    if (this.patchOutput.length < bound) this.patchOutput = Buffer.allocUnsafe(bound);
    const parameters = patchParameters(base.length, target.length, level);
    const prefix = zstdPrefix();
    const length =
      prefix instanceof Error
        ? this.compress(parameters, target, this.patchOutput, asRawContent(base))
        : prefix.compress(this.patchOutput, target, base, asPairs(parameters));
    return Buffer.from(this.patchOutput.subarray(0, length));
  }

  private compress(parameters: Parameters, input: Uint8Array, output: Buffer, dictionary?: Uint8Array): number {
    const cctx = this.cctx;
    try {
      for (const [name, value] of Object.entries(parameters)) cctx.setParameter(binding.CParameter[name as keyof typeof binding.CParameter], value);
      if (dictionary) cctx.loadDictionary(dictionary);
      return cctx.compress2(output, input);
    } finally {
      cctx.reset(binding.ResetDirective.sessionAndParameters);
    }
  }
}

/** Compress a full component file for publishing (one file; a publish uses an Encoder). */
export function compressFull(content: Uint8Array, level = FULL_LEVEL): Buffer {
  return new Encoder().compressFull(content, level);
}

/** Build the incremental pattern that turns `base` into `target` (one file; a publish uses an Encoder). */
export function createPatch(base: Uint8Array, target: Uint8Array, level = PATCH_LEVEL): Buffer {
  return new Encoder().createPatch(base, target, level);
}

function declaredSize(frame: Uint8Array, limits: CodecLimits): number {
  let size: number | null;
  try {
    size = binding.getFrameContentSize(frame);
  } catch (cause) {
    throw new CorruptDataError('not a zstd frame', { cause });
  }
  if (size === null) throw new CorruptDataError('zstd frame does not declare its content size');
  if (size > limits.maxFileBytes) {
    throw new CorruptDataError(`declared size ${size} exceeds the limit of ${limits.maxFileBytes} bytes`);
  }
  return size;
}

function decompressInto(frame: Uint8Array, limits: CodecLimits, dictionary?: Uint8Array): Buffer {
  const size = declaredSize(frame, limits);
  const output = Buffer.allocUnsafe(size);
  const dctx = new binding.DCtx();
  dctx.setParameter(binding.DParameter.windowLogMax, MAX_WINDOW_LOG);
  let written: number;
  try {
    // Raw-content dictionaries are used by reference here, so the base is not copied (unless asRawContent must).
    written = dictionary ? dctx.decompressUsingDict(output, frame, asRawContent(dictionary)) : dctx.decompress(output, frame);
  } catch (cause) {
    throw new CorruptDataError(`zstd could not decode the data: ${(cause as Error).message}`, { cause });
  }
  if (written !== size) throw new CorruptDataError(`decoded ${written} bytes, frame declared ${size}`);
  return output;
}

function expected(limits: CodecLimits, what: string): number {
  if (limits.expectedLength === undefined) throw new CorruptDataError(`${what} needs the expected length of its result`);
  if (limits.expectedLength > limits.maxFileBytes) throw new CorruptDataError(`expected size ${limits.expectedLength} exceeds the limit of ${limits.maxFileBytes} bytes`);
  return limits.expectedLength;
}

/** Decompress a downloaded full file coded with `codec` (the catalogue's `full.codec`, 'zstd' when absent). */
export function decompressFull(frame: Uint8Array, limits: CodecLimits, codec: string = 'zstd'): Buffer {
  if (codec === 'zstd') return checkedLength(decompressInto(frame, limits), limits);
  if (codec === 'xz') return decompressXz(frame, expected(limits, 'an xz file'));
  throw new CorruptDataError(`full file coded as "${codec}", which this version of Bulwark cannot decode`);
}

/** Rebuild the full file from the installed base and an incremental in `format` ('zstd' when absent). */
export function applyPatch(base: Uint8Array, patch: Uint8Array, limits: CodecLimits, format: string = 'zstd'): Buffer {
  if (format === 'zstd') return checkedLength(decompressInto(patch, limits, base), limits);
  if (format === 'records') return applyRecordPatch(base, patch, expected(limits, 'a record patch'));
  throw new CorruptDataError(`incremental coded as "${format}", which this version of Bulwark cannot apply`);
}

function checkedLength(data: Buffer, limits: CodecLimits): Buffer {
  if (limits.expectedLength !== undefined && data.length !== limits.expectedLength) {
    throw new CorruptDataError(`decoded ${data.length} bytes, expected ${limits.expectedLength}`);
  }
  return data;
}

/** Whether a codec or format name is one this version decodes. */
export function knownFullCodec(codec: string | undefined): boolean {
  return codec === undefined || (FULL_CODECS as readonly string[]).includes(codec);
}
export function knownPatchFormat(format: string | undefined): boolean {
  return format === undefined || (PATCH_FORMATS as readonly string[]).includes(format);
}

// ---- Choosing per file, at publish time ----

/** Full files up to this size are coded both ways and the smaller kept; larger ones by a sample's verdict. */
export const FULL_TRIAL_MAX = 24 * 1024 * 1024;
/** The sample a large file's codec is chosen on: this many slices of SAMPLE_SLICE, spread over the file. */
const SAMPLE_SLICES = 4;
const SAMPLE_SLICE = 512 * 1024;
/** zstd's level for a sample (the full level on half a megabyte would measure the same, at more cost). */
const SAMPLE_ZSTD_LEVEL = 19;

function sampleOf(content: Uint8Array): Uint8Array[] {
  if (content.length <= SAMPLE_SLICES * SAMPLE_SLICE) return [content];
  return Array.from({ length: SAMPLE_SLICES }, (_, i) => {
    const start = Math.floor(((content.length - SAMPLE_SLICE) * i) / (SAMPLE_SLICES - 1));
    return content.subarray(start, start + SAMPLE_SLICE);
  });
}

export interface FullEstimate {
  /** The codec that compresses the sample best. */
  codec: FullCodec;
  /** Compressed size per byte of the whole file, as the sample suggests. */
  ratio: number;
}

/**
 * Which codec suits a file, from a sample of it (a few spread slices, each compressed both ways): cheap
 * next to compressing the file, and enough to tell a binary database that LZMA codes much better from
 * text that zstd's long window serves as well. Also gives the compressed size to expect.
 */
export function estimateFull(content: Uint8Array, encoder: Encoder, codecs: readonly FullCodec[] = FULL_CODECS): FullEstimate {
  let zstd = 0;
  let xz = 0;
  let raw = 0;
  for (const slice of sampleOf(content)) {
    zstd += codecs.includes('zstd') ? encoder.compressFull(slice, SAMPLE_ZSTD_LEVEL).length : Infinity;
    xz += codecs.includes('xz') ? compressXz(slice).length : Infinity;
    raw += slice.length;
  }
  const codec: FullCodec = xz < zstd ? 'xz' : 'zstd';
  return { codec, ratio: Math.min(zstd, xz) / Math.max(1, raw) };
}

/**
 * Compress a full file for publishing with the codec that makes it smallest: both are tried on files up
 * to FULL_TRIAL_MAX, larger files get the codec their sample chose (one compression of a 66 MB file
 * costs about a minute).
 */
export function compressFullBest(
  content: Uint8Array,
  encoder: Encoder,
  level = FULL_LEVEL,
  estimate?: FullEstimate,
  codecs: readonly FullCodec[] = FULL_CODECS,
): { codec: FullCodec; data: Buffer; zstd?: Buffer } {
  if (codecs.length === 1) return codecs[0] === 'xz' ? { codec: 'xz', data: compressXz(content) } : { codec: 'zstd', data: encoder.compressFull(content, level) };
  if (content.length > FULL_TRIAL_MAX) {
    const codec = (estimate ?? estimateFull(content, encoder, codecs)).codec;
    return { codec, data: codec === 'xz' ? compressXz(content) : encoder.compressFull(content, level) };
  }
  const zstd = encoder.compressFull(content, level);
  const xz = compressXz(content);
  return xz.length < zstd.length ? { codec: 'xz', data: xz, zstd } : { codec: 'zstd', data: zstd };
}

/** A record-aware incremental, when the file is a text list of records (see records.ts). */
export function createRecordsPatch(base: Uint8Array, target: Uint8Array): Buffer | undefined {
  return createRecordPatch(base, target);
}

export { isRecordPatch };

/**
 * What a byte-level (zstd patch-from) incremental from `base` to `target` would cost, estimated without
 * building it: the share of a sample of the target covered by runs of at least 64 bytes found in the base
 * (an index of the base every 32 bytes, looked up at every byte of the sample, as rsync's rolling
 * checksum does), the rest costed at the file's compression ratio. Memory: 4 bytes per 16 bytes of base
 * (16 MiB for 66 MB), against the 2^26-entry match tables the build needs. Used to skip building an
 * incremental that could not be worth publishing.
 */
export function estimatePatch(base: Uint8Array, target: Uint8Array, ratio: number): number {
  const STRIDE = 32;
  const BLOCK = 32;
  if (base.length < BLOCK || target.length < BLOCK) return Math.ceil(target.length * ratio);
  const positions = Math.floor((base.length - BLOCK) / STRIDE) + 1;
  const bits = Math.max(10, Math.ceil(Math.log2(positions * 2)));
  const mask = (1 << bits) - 1;
  const table = new Int32Array(1 << bits).fill(-1);
  const hashAt = (data: Uint8Array, at: number) => {
    let h = 0;
    for (let k = 0; k < BLOCK; k++) h = (Math.imul(h, 0x01000193) + data[at + k]!) | 0;
    return h;
  };
  for (let p = 0; p + BLOCK <= base.length; p += STRIDE) table[(hashAt(base, p) >>> 0) & mask] = p;
  // h(window) = sum of data[at+k] * M^(BLOCK-1-k) (mod 2^32); rolling it one byte needs M^(BLOCK-1).
  let power = 1;
  for (let k = 1; k < BLOCK; k++) power = Math.imul(power, 0x01000193);
  const slices = target.length <= 4 * 1024 * 1024 ? [[0, target.length]] : Array.from({ length: 32 }, (_, i) => {
    const start = Math.floor(((target.length - 131072) * i) / 31);
    return [start, start + 131072];
  });
  let scanned = 0;
  let covered = 0;
  let matches = 0;
  for (const [start, end] of slices as [number, number][]) {
    scanned += end - start;
    let at = start;
    let h = end - start >= BLOCK ? hashAt(target, at) : 0;
    while (at + BLOCK <= end) {
      const candidate = table[(h >>> 0) & mask]!;
      if (candidate >= 0 && base[candidate] === target[at] && base[candidate + BLOCK - 1] === target[at + BLOCK - 1]) {
        let length = 0;
        while (at + length < end && candidate + length < base.length && base[candidate + length] === target[at + length]) length++;
        if (length >= BLOCK) {
          covered += length;
          matches++;
          at += length;
          if (at + BLOCK <= end) h = hashAt(target, at);
          continue;
        }
      }
      if (at + BLOCK >= end) break;
      h = (Math.imul(h - Math.imul(target[at]!, power), 0x01000193) + target[at + BLOCK]!) | 0;
      at++;
    }
  }
  const uncovered = Math.max(0, scanned - covered) / scanned;
  return Math.ceil(uncovered * target.length * ratio + (matches * 4 * target.length) / scanned);
}
