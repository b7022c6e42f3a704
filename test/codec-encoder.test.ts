// The Encoder (one zstd context for a whole publish): each file it builds must be exactly what a fresh
// context builds, so the reset between files really clears the dictionary and the parameters.
import { describe, expect, it } from 'vitest';
import { applyPatch, compressFull, createPatch, decompressFull, Encoder } from '../src-main/engine/codec.js';
import { PatternSeries } from '../src-main/demo/patterns.js';
import { DEFAULT_LIMITS } from '../src-main/engine/limits.js';

describe('Encoder', () => {
  it('builds the same bytes as a fresh context for every file, whatever came before', () => {
    const series = new PatternSeries('virus-pattern', 171, 300_000, 11);
    const v1 = series.content();
    const v2 = series.next();
    const v3 = series.next();
    const encoder = new Encoder();
    const patch1 = encoder.createPatch(v1, v3, 5);
    const full = encoder.compressFull(v3, 3); // after a patch: no dictionary, no patch parameters left over
    const patch2 = encoder.createPatch(v2, v3, 5);
    const full19 = encoder.compressFull(v1); // default level, after a different one

    expect(patch1.equals(createPatch(v1, v3, 5))).toBe(true);
    expect(full.equals(compressFull(v3, 3))).toBe(true);
    expect(patch2.equals(createPatch(v2, v3, 5))).toBe(true);
    expect(full19.equals(compressFull(v1))).toBe(true);
    expect(decompressFull(full, DEFAULT_LIMITS).equals(v3)).toBe(true);
    expect(decompressFull(full19, DEFAULT_LIMITS).equals(v1)).toBe(true);
    expect(applyPatch(v1, patch1, DEFAULT_LIMITS).equals(v3)).toBe(true);
    expect(applyPatch(v2, patch2, DEFAULT_LIMITS).equals(v3)).toBe(true);
  });
});
