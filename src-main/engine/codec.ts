// Compression of full files and incremental patterns, both Zstandard (the official library through
// zstd-napi). An incremental pattern is a zstd frame compressed with the base version as a raw-content
// dictionary: the same "patch-from" technique as `zstd --patch-from`, chosen by measurement against
// xdelta3 and bsdiff (docs/benchmarks.md). Full files are zstd frames with long-distance matching.
import binding from 'zstd-napi/binding.js';
import { CorruptDataError } from './errors.js';

export interface CodecLimits {
  /** Largest decompressed component file we accept; guards against decompression bombs. */
  maxFileBytes: number;
}

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
 * The match-finder tables of an incremental cost memory twice while zstd compresses: in the CDict built
 * from the base and in the context's copy of it (5 bytes per entry for the row match finder of levels
 * 5-12). About one entry per byte of base and target is enough: measured on the benchmark's data,
 * 2^(W-1) entries make level-12 patches 0.0-0.3% larger than 2^W on 4 and 20 MB files, at half the
 * memory. Above 2^26 entries (320 MiB per copy) a 66 MB file could not be published in 1 GB; at 2^26 the
 * 50 MB pattern's patch is 1% larger than at 2^27.
 */
const MAX_TABLE_LOG = 26;

type Parameters = Partial<Record<keyof typeof binding.CParameter, number>>;

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
 * zstd-napi offers loadDictionary (a prepared dictionary) but not the prefix that `zstd --patch-from`
 * uses. With a prepared dictionary the match finder reaches far back into a large base only when
 * its tables are sized to the window, and long-distance matching never indexes the dictionary (it
 * only made patches worse), so both are set here rather than left to the level's defaults.
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
 * the CDict built from it) at once, and its workspace is reused by the next file.
 */
export class Encoder {
  private readonly cctx = new binding.CCtx();
  /** Output buffer for patches, reused: a new bound-sized buffer per patch would wait for a garbage collection. */
  private patchOutput = Buffer.alloc(0);

  /** Compress a full component file for publishing. */
  compressFull(content: Uint8Array, level = FULL_LEVEL): Buffer {
    // Its own buffer, handed to the caller: about half of it is the result, the rest never touched.
    const output = Buffer.allocUnsafe(binding.compressBound(content.length));
    return output.subarray(0, this.compress(fullParameters(content.length, level), content, output));
  }

  /** Build the incremental pattern that turns `base` into `target`. */
  createPatch(base: Uint8Array, target: Uint8Array, level = PATCH_LEVEL): Buffer {
    const bound = binding.compressBound(target.length);
    if (this.patchOutput.length < bound) this.patchOutput = Buffer.allocUnsafe(bound);
    const length = this.compress(patchParameters(base.length, target.length, level), target, this.patchOutput, base);
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
    // Raw-content dictionaries are used by reference here, so the base is not copied.
    written = dictionary ? dctx.decompressUsingDict(output, frame, dictionary) : dctx.decompress(output, frame);
  } catch (cause) {
    throw new CorruptDataError(`zstd could not decode the data: ${(cause as Error).message}`, { cause });
  }
  if (written !== size) throw new CorruptDataError(`decoded ${written} bytes, frame declared ${size}`);
  return output;
}

/** Decompress a downloaded full file. */
export function decompressFull(frame: Uint8Array, limits: CodecLimits): Buffer {
  return decompressInto(frame, limits);
}

/** Rebuild the full file from the installed base and an incremental pattern. */
export function applyPatch(base: Uint8Array, patch: Uint8Array, limits: CodecLimits): Buffer {
  return decompressInto(patch, limits, base);
}
