// Loads native/zstd_prefix.node: zstd compression with the base referenced as a raw-content prefix
// (ZSTD_CCtx_refPrefix, as `zstd --patch-from`), which zstd-napi does not expose. The base's match tables
// are then held once, where zstd-napi's loadDictionary holds them twice (see native/zstd_prefix.c).
// `npm install` builds it (native/build.js); where it could not be built, codec.ts builds incrementals
// through loadDictionary, and the publisher says so.
import { loadAddon } from './native-addon.js';

export interface ZstdPrefix {
  /**
   * Compress `target` into `output` with `prefix` as raw content, `parameters` being zstd's
   * [ZSTD_cParameter, value, ...] pairs; returns the frame's length. Throws an Error named by zstd.
   */
  compress(output: Uint8Array, target: Uint8Array, prefix: Uint8Array, parameters: number[]): number;
}

/** BULWARK_ZSTD_PREFIX=off builds incrementals as where the addon is missing (for tests of that path). */
export const TURN_OFF = 'BULWARK_ZSTD_PREFIX';

/** The addon, or why it cannot be used here. */
export function zstdPrefix(): ZstdPrefix | Error {
  if (process.env[TURN_OFF] === 'off') return new Error(`turned off by ${TURN_OFF}=off`);
  return loadAddon<ZstdPrefix>('zstd_prefix');
}
