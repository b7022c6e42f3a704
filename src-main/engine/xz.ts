// Full files in the .xz format (LZMA2), through node-liblzma: a Node-API binding of liblzma (the system's on
// Linux, built in elsewhere), so one binary serves Node and Electron. LZMA's literal coding beats zstd on
// binary databases: on GeoLite2-City (66 MB) zstd stops at 1.27x `xz -9` at any level, this is 1.01x, at
// about xz's own speed both ways (docs/benchmarks.md). Published files are plain .xz: `xz -d` reads them.
//
// The binding's low-level stream is used directly: it codes from a buffer into a buffer we hand it, so a
// decoder never writes past the signed length, and its memory limit bounds the dictionary a stream may
// ask for. A hostile file can make neither allocate without bound.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CorruptDataError } from './errors.js';

/** liblzma's preset 6 (xz's default): an 8 MiB dictionary, about 94 MiB to encode, 9 MiB to decode. */
export const XZ_PRESET = 6;
/**
 * The most a decoder lets a stream's dictionary take: preset 9's 64 MiB and liblzma's own overhead. Streams
 * Bulwark writes need 9 MiB.
 */
const DECODER_MEMLIMIT = 66 * 1024 * 1024;
/** The binding refuses buffers above 512 MiB; larger files are coded through slices of this size. */
const SLICE = 256 * 1024 * 1024;

interface NativeStream {
  codeSync(flush: number, input: Buffer | null, inputOffset: number, inputLength: number, output: Buffer, outputOffset: number): [number, number, number];
  close(): void;
}
interface Native {
  LZMA: new (mode: number, options: Record<string, unknown>) => NativeStream;
  STREAM_ENCODE: number;
  STREAM_DECODE: number;
  LZMA_RUN: number;
  LZMA_FINISH: number;
  LZMA_OK: number;
  LZMA_STREAM_END: number;
  LZMA_MEMLIMIT_ERROR: number;
  LZMA_FILTER_LZMA2: number;
  LZMA_CHECK_CRC32: number;
}

let native: Native | Error | undefined;

/** The native part of node-liblzma (its JS layer buffers whole outputs; this module bounds them). */
function load(): Native | Error {
  if (!native) {
    try {
      const require = createRequire(import.meta.url);
      const entry = require.resolve('node-liblzma');
      let root = path.dirname(entry);
      while (!fs.existsSync(path.join(root, 'package.json'))) root = path.dirname(root);
      native = createRequire(entry)('node-gyp-build')(root) as Native;
    } catch (cause) {
      native = new Error(`the xz codec (node-liblzma) could not be loaded: ${(cause as Error).message}`, { cause });
    }
  }
  return native;
}

function binding(): Native {
  const loaded = load();
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

/** Whether this installation has the xz codec (a publisher without it publishes zstd only). */
export function xzAvailable(): boolean {
  return !(load() instanceof Error);
}

/** Compress a full file to .xz (one stream, one block, CRC32 check). */
export function compressXz(content: Uint8Array, preset = XZ_PRESET): Buffer {
  const lzma = binding();
  const stream = new lzma.LZMA(lzma.STREAM_ENCODE, { check: lzma.LZMA_CHECK_CRC32, preset, filters: [lzma.LZMA_FILTER_LZMA2], threads: 1 });
  const input = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for (let offset = 0; ; ) {
      const length = Math.min(SLICE, input.length - offset);
      const finish = offset + length >= input.length;
      const slice = input.subarray(offset, offset + length);
      let consumed = 0;
      for (;;) {
        const out = Buffer.allocUnsafe(4 * 1024 * 1024);
        const [status, availIn, availOut] = stream.codeSync(finish ? lzma.LZMA_FINISH : lzma.LZMA_RUN, slice, consumed, length - consumed, out, 0);
        if (status !== lzma.LZMA_OK && status !== lzma.LZMA_STREAM_END) throw new Error(`xz encoder failed (liblzma status ${status})`);
        if (out.length - availOut > 0) {
          chunks.push(out.subarray(0, out.length - availOut));
          total += out.length - availOut;
        }
        consumed = length - availIn;
        if (status === lzma.LZMA_STREAM_END) return Buffer.concat(chunks, total);
        if (availIn === 0 && availOut > 0 && !finish) break;
      }
      offset += length;
    }
  } finally {
    stream.close();
  }
}

/**
 * Decompress a .xz file that must hold exactly `expectedLength` bytes. The output buffer is that long and
 * no longer; a stream that would write more, or stops short, is refused.
 */
export function decompressXz(frame: Uint8Array, expectedLength: number): Buffer {
  if (frame.length < 6 || Buffer.compare(Buffer.from(frame.subarray(0, 6)), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) !== 0) {
    throw new CorruptDataError('not an xz file');
  }
  let lzma: Native;
  try {
    lzma = binding();
  } catch (cause) {
    throw new CorruptDataError(`cannot decode an xz file here: ${(cause as Error).message}`, { cause });
  }
  let stream: NativeStream;
  try {
    stream = new lzma.LZMA(lzma.STREAM_DECODE, { check: lzma.LZMA_CHECK_CRC32, preset: XZ_PRESET, filters: [lzma.LZMA_FILTER_LZMA2], memlimit: DECODER_MEMLIMIT });
  } catch (cause) {
    throw new CorruptDataError(`the xz decoder could not start: ${(cause as Error).message}`, { cause });
  }
  const input = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const output = Buffer.allocUnsafe(expectedLength);
  // One byte of room past the end: a stream that fills it is longer than declared.
  const spare = Buffer.allocUnsafe(1);
  let inAt = 0;
  let outAt = 0;
  try {
    for (;;) {
      const inLength = Math.min(SLICE, input.length - inAt);
      const inSlice = input.subarray(inAt, inAt + inLength);
      const target = outAt < expectedLength ? output.subarray(outAt, Math.min(expectedLength, outAt + SLICE)) : spare;
      const [status, availIn, availOut] = stream.codeSync(lzma.LZMA_FINISH, inSlice, 0, inLength, target, 0);
      const produced = target.length - availOut;
      if (target === spare && produced > 0) throw new CorruptDataError(`the xz file holds more than the expected ${expectedLength} bytes`);
      outAt += produced;
      inAt += inLength - availIn;
      if (status === lzma.LZMA_STREAM_END) break;
      if (status === lzma.LZMA_MEMLIMIT_ERROR) throw new CorruptDataError('the xz file asks for a larger dictionary than any Bulwark writes');
      if (status !== lzma.LZMA_OK) throw new CorruptDataError(`the xz file is damaged (liblzma status ${status})`);
      if (produced === 0 && inLength - availIn === 0) throw new CorruptDataError('the xz file ends early');
    }
  } catch (error) {
    if (error instanceof CorruptDataError) throw error;
    throw new CorruptDataError(`xz could not decode the data: ${(error as Error).message}`, { cause: error });
  } finally {
    stream.close();
  }
  if (outAt !== expectedLength) throw new CorruptDataError(`decoded ${outAt} bytes, expected ${expectedLength}`);
  return output;
}
