// Full files in the .xz format (LZMA2). LZMA's literal coding beats zstd on binary databases: on
// GeoLite2-City (66 MB) zstd stops at 1.27x `xz -9` at any level, this is 1.01x (docs/benchmarks.md).
// Published files are plain .xz: `xz -d` reads them.
//
// Two builds of the same liblzma, so that every server and agent decodes what a vendor publishes:
//   native  node-liblzma's Node-API binding (an optional dependency: its prebuilt binary on Linux x64,
//           macOS and Windows, built at install elsewhere), at `xz`'s own speed both ways;
//   wasm    liblzma compiled to WebAssembly (vendor/liblzma-wasm, as node-liblzma ships it), used when
//           the native binding is missing: npm removes an optional dependency whose build failed. It
//           decodes GeoLite2-City in about 1.2x `xz -d`'s CPU time and encodes the same bytes.
//
// Both are driven here through liblzma's low-level stream, coding from a buffer into a buffer we hand
// it, so a decoder never writes past the signed length, and its memory limit bounds the dictionary a
// stream may ask for. A hostile file can make neither allocate without bound.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import createLiblzma from '../../vendor/liblzma-wasm/liblzma.js';
import { CorruptDataError } from './errors.js';

/** liblzma's preset 6 (xz's default): an 8 MiB dictionary, about 94 MiB to encode, 9 MiB to decode. */
export const XZ_PRESET = 6;
/**
 * The most a decoder lets a stream's dictionary take: preset 9's 64 MiB and liblzma's own overhead. Streams
 * Bulwark writes need 9 MiB.
 */
const DECODER_MEMLIMIT = 66 * 1024 * 1024;
/** The native binding refuses buffers above 512 MiB; larger files are coded through slices of this size. */
const SLICE = 256 * 1024 * 1024;

// liblzma's numbers (lzma/base.h), the same in both builds.
const LZMA_OK = 0;
const LZMA_STREAM_END = 1;
const LZMA_MEMLIMIT_ERROR = 6;
const LZMA_RUN = 0;
const LZMA_FINISH = 3;
const LZMA_CHECK_CRC32 = 1;

export type XzBuild = 'native' | 'wasm';

/** One liblzma stream: codes from `input` into `output`, returns [status, input left, output left]. */
interface Coder {
  code(action: number, input: Buffer, output: Buffer): [status: number, availIn: number, availOut: number];
  close(): void;
}

interface Build {
  readonly name: XzBuild;
  encoder(preset: number): Coder;
  /** Throws a CorruptDataError-worthy Error when the decoder cannot start. */
  decoder(memlimit: number): Coder;
}

// ---- native: node-liblzma ----

interface NativeStream {
  codeSync(flush: number, input: Buffer | null, inputOffset: number, inputLength: number, output: Buffer, outputOffset: number): [number, number, number];
  close(): void;
}
interface Native {
  LZMA: new (mode: number, options: Record<string, unknown>) => NativeStream;
  STREAM_ENCODE: number;
  STREAM_DECODE: number;
  LZMA_FILTER_LZMA2: number;
}

let native: Build | Error | undefined;

/** The native part of node-liblzma (its JS layer buffers whole outputs; this module bounds them). */
function loadNative(): Build | Error {
  if (!native) {
    try {
      const require = createRequire(import.meta.url);
      const entry = require.resolve('node-liblzma');
      let root = path.dirname(entry);
      while (!fs.existsSync(path.join(root, 'package.json'))) root = path.dirname(root);
      const lzma = createRequire(entry)('node-gyp-build')(root) as Native;
      const coder = (stream: NativeStream): Coder => ({
        code: (action, input, output) => stream.codeSync(action, input, 0, input.length, output, 0),
        close: () => stream.close(),
      });
      native = {
        name: 'native',
        encoder: (preset) => coder(new lzma.LZMA(lzma.STREAM_ENCODE, { check: LZMA_CHECK_CRC32, preset, filters: [lzma.LZMA_FILTER_LZMA2], threads: 1 })),
        decoder: (memlimit) => coder(new lzma.LZMA(lzma.STREAM_DECODE, { check: LZMA_CHECK_CRC32, preset: XZ_PRESET, filters: [lzma.LZMA_FILTER_LZMA2], memlimit })),
      };
    } catch (cause) {
      native = new Error(`node-liblzma could not be loaded: ${(cause as Error).message}`, { cause });
    }
  }
  return native;
}

// ---- wasm: liblzma compiled to WebAssembly ----

interface WasmModule {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _lzma_easy_encoder(stream: number, preset: number, check: number): number;
  _lzma_stream_decoder(stream: number, memlimit: bigint, flags: number): number;
  _lzma_code(stream: number, action: number): number;
  _lzma_end(stream: number): void;
}

/** lzma_stream in wasm32: next_in@0, avail_in@4, total_in@8, next_out@16, avail_out@20, total_out@24, ... 96 bytes. */
const STREAM_SIZE = 96;
/** Input and output go through buffers of this size in the module's memory. */
const WASM_CHUNK = 1024 * 1024;

let wasmCode: WebAssembly.Module | Error | undefined;

function loadWasm(): Build | Error {
  if (!wasmCode) {
    try {
      wasmCode = new WebAssembly.Module(fs.readFileSync(new URL('../../vendor/liblzma-wasm/liblzma.wasm', import.meta.url)));
    } catch (cause) {
      wasmCode = new Error(`liblzma's WebAssembly build could not be loaded: ${(cause as Error).message}`, { cause });
    }
  }
  if (wasmCode instanceof Error) return wasmCode;
  const compiled = wasmCode;
  // A new instance per stream: its memory (up to 95 MiB to encode) goes with it, not kept by the process.
  const instance = (): WasmModule => {
    const module = {} as WasmModule;
    createLiblzma(
      Object.assign(module, {
        instantiateWasm(imports: WebAssembly.Imports, receive: (instance: WebAssembly.Instance) => void) {
          const created = new WebAssembly.Instance(compiled, imports);
          receive(created);
          return created.exports;
        },
      }),
    );
    return module;
  };
  const coder = (init: (m: WasmModule, stream: number) => number, what: string): Coder => {
    const m = instance();
    const stream = m._malloc(STREAM_SIZE);
    const inBuf = m._malloc(WASM_CHUNK);
    const outBuf = m._malloc(WASM_CHUNK);
    if (!stream || !inBuf || !outBuf) throw new Error(`liblzma's WebAssembly build has no memory for the ${what}`);
    m.HEAPU8.fill(0, stream, stream + STREAM_SIZE);
    const status = init(m, stream);
    if (status !== LZMA_OK) throw new Error(`the ${what} could not start (liblzma status ${status})`);
    return {
      code(action, input, output) {
        const inLength = Math.min(input.length, WASM_CHUNK);
        const outLength = Math.min(output.length, WASM_CHUNK);
        m.HEAPU8.set(input.subarray(0, inLength), inBuf);
        // The heap views may be replaced as memory grows: read them after each call into the module.
        let u32 = m.HEAPU32;
        u32[stream / 4] = inBuf;
        u32[stream / 4 + 1] = inLength;
        u32[stream / 4 + 4] = outBuf;
        u32[stream / 4 + 5] = outLength;
        // LZMA_FINISH promises that all the input is given: only once the rest fits in the chunk.
        const status = m._lzma_code(stream, action === LZMA_FINISH && inLength < input.length ? LZMA_RUN : action);
        u32 = m.HEAPU32;
        const consumed = inLength - u32[stream / 4 + 1]!;
        const produced = outLength - u32[stream / 4 + 5]!;
        output.set(m.HEAPU8.subarray(outBuf, outBuf + produced), 0);
        return [status, input.length - consumed, output.length - produced];
      },
      close() {
        m._lzma_end(stream);
      },
    };
  };
  return {
    name: 'wasm',
    encoder: (preset) => coder((m, s) => m._lzma_easy_encoder(s, preset, LZMA_CHECK_CRC32), 'xz encoder'),
    decoder: (memlimit) => coder((m, s) => m._lzma_stream_decoder(s, BigInt(memlimit), 0), 'xz decoder'),
  };
}

/** The build this process codes xz with: native when node-liblzma loads, else WebAssembly. */
function build(which?: XzBuild): Build {
  const loaded = which === 'wasm' ? loadWasm() : loadNative();
  if (!(loaded instanceof Error)) return loaded;
  if (which === 'native') throw loaded;
  const wasm = loadWasm();
  if (wasm instanceof Error) throw new Error(`the xz codec is not available here: ${loaded.message}; ${wasm.message}`, { cause: wasm });
  return wasm;
}

/** Which build xz goes through here ('native' or 'wasm'), or undefined when neither loads. */
export function xzBuild(): XzBuild | undefined {
  try {
    return build().name;
  } catch {
    return undefined;
  }
}

/** Whether this installation has the xz codec (a publisher without it publishes zstd only). */
export function xzAvailable(): boolean {
  return xzBuild() !== undefined;
}

/** Compress a full file to .xz (one stream, one block, CRC32 check); `which` picks a build (tests, bench). */
export function compressXz(content: Uint8Array, preset = XZ_PRESET, which?: XzBuild): Buffer {
  const stream = build(which).encoder(preset);
  const input = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for (let offset = 0; ; ) {
      const length = Math.min(SLICE, input.length - offset);
      const finish = offset + length >= input.length;
      let slice = input.subarray(offset, offset + length);
      for (;;) {
        const out = Buffer.allocUnsafe(4 * 1024 * 1024);
        const [status, availIn, availOut] = stream.code(finish ? LZMA_FINISH : LZMA_RUN, slice, out);
        if (status !== LZMA_OK && status !== LZMA_STREAM_END) throw new Error(`xz encoder failed (liblzma status ${status})`);
        if (out.length - availOut > 0) {
          chunks.push(out.subarray(0, out.length - availOut));
          total += out.length - availOut;
        }
        slice = slice.subarray(slice.length - availIn);
        if (status === LZMA_STREAM_END) return Buffer.concat(chunks, total);
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
 * no longer; a stream that would write more, or stops short, is refused. `which` picks a build (tests, bench).
 */
export function decompressXz(frame: Uint8Array, expectedLength: number, which?: XzBuild): Buffer {
  if (frame.length < 6 || Buffer.compare(Buffer.from(frame.subarray(0, 6)), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) !== 0) {
    throw new CorruptDataError('not an xz file');
  }
  let stream: Coder;
  try {
    stream = build(which).decoder(DECODER_MEMLIMIT);
  } catch (cause) {
    throw new CorruptDataError(`cannot decode an xz file here: ${(cause as Error).message}`, { cause });
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
      const [status, availIn, availOut] = stream.code(LZMA_FINISH, inSlice, target);
      const produced = target.length - availOut;
      if (target === spare && produced > 0) throw new CorruptDataError(`the xz file holds more than the expected ${expectedLength} bytes`);
      outAt += produced;
      inAt += inLength - availIn;
      if (status === LZMA_STREAM_END) break;
      if (status === LZMA_MEMLIMIT_ERROR) throw new CorruptDataError('the xz file asks for a larger dictionary than any Bulwark writes');
      if (status !== LZMA_OK) throw new CorruptDataError(`the xz file is damaged (liblzma status ${status})`);
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
