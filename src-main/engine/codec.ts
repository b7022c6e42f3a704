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

/** Compress a full component file for publishing. */
export function compressFull(content: Uint8Array, level = 19): Buffer {
  const compressor = new Compressor();
  compressor.setParameters({
    compressionLevel: level,
    windowLog: windowLogFor(content.length),
    enableLongDistanceMatching: true,
    checksumFlag: true,
  });
  return compressor.compress(content);
}

/** Build the incremental pattern that turns `base` into `target`. */
export function createPatch(base: Uint8Array, target: Uint8Array, level = 19): Buffer {
  const compressor = new Compressor();
  compressor.setParameters({
    compressionLevel: level,
    // The window must span the base and the target so matches can reach back into the base.
    windowLog: windowLogFor(base.length + target.length),
    enableLongDistanceMatching: true,
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
