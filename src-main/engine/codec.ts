// Compression of full files and incremental patterns, both Zstandard (the official library through
// zstd-napi). An incremental pattern is a zstd frame compressed with the base version as a raw-content
// dictionary: the same "patch-from" technique as `zstd --patch-from`, chosen by measurement against
// xdelta3 and bsdiff (docs/benchmarks.md). Full files are zstd frames with long-distance matching.
import { Compressor } from 'zstd-napi';
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

/** Default zstd levels, chosen by measurement (docs/benchmarks.md): level 19 full files come within
 * xz -9's size; level-12 patches come within 1.15x of the best delta tool at a fraction of level 19's time. */
export const FULL_LEVEL = 19;
export const PATCH_LEVEL = 12;

/** Compress a full component file for publishing. */
export function compressFull(content: Uint8Array, level = FULL_LEVEL): Buffer {
  const compressor = new Compressor();
  compressor.setParameters({
    compressionLevel: level,
    windowLog: windowLogFor(content.length),
    // Long-distance matching pays off at the high levels and costs size below 16 (measured on JSON).
    enableLongDistanceMatching: level >= 16,
    checksumFlag: true,
  });
  return compressor.compress(content);
}

/**
 * Build the incremental pattern that turns `base` into `target`.
 *
 * zstd-napi offers loadDictionary (a prepared dictionary) but not the prefix that `zstd --patch-from`
 * uses. With a prepared dictionary the match finder reaches far back into a large base only when
 * its tables are sized to the window, and long-distance matching never indexes the dictionary (it
 * only made patches worse), so both are set here rather than left to the level's defaults.
 */
export function createPatch(base: Uint8Array, target: Uint8Array, level = PATCH_LEVEL): Buffer {
  // The window must span the base and the target so matches can reach back into the base.
  const windowLog = windowLogFor(base.length + target.length);
  const tables =
    level >= 13
      ? { hashLog: Math.min(windowLog - 1, 26), chainLog: Math.min(windowLog + 1, 30) }
      : { hashLog: Math.min(windowLog, 27), chainLog: Math.min(windowLog, 27) };
  const compressor = new Compressor();
  compressor.setParameters({
    compressionLevel: level,
    windowLog,
    ...tables,
    enableLongDistanceMatching: false,
    checksumFlag: true,
  });
  compressor.loadDictionary(base);
  return compressor.compress(target);
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
