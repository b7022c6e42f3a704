// Record-aware incrementals: for files that are lists of records (domain lists, signature lines, JSON
// arrays written one entry a line), an incremental that says which records went and which came, with the
// new records' bytes compressed. Signature databases change by records (ClamAV's own incremental format,
// cdiff, is a record script), and a record script spends nothing on the byte positions a general delta
// tool has to encode: measured on npm's disposable-email-domains and mailchecker lists, 0.78-0.81x the
// best of xdelta3 -9, `zstd -19 --patch-from` and bsdiff (docs/benchmarks.md).
//
// A record is the bytes up to and including a separator byte (the last one may have none), so the records
// of a file concatenate back to it byte for byte. The separator is chosen per file ('\n' or ',').
//
// Patch layout:
//   "BWR1"  magic
//   u8      separator
//   brotli( varint target length, varint hunk count, hunk count x (varint removed, varint added,
//           varint kept), then the added records' bytes, in order )
// Rebuilding walks the base's records: per hunk, skip `removed`, take `added` from the added bytes,
// copy `kept`; whatever is left of the base after the last hunk is dropped.
import zlib from 'node:zlib';
import { CorruptDataError } from './errors.js';

const MAGIC = Buffer.from('BWR1', 'latin1');
const HEADER = MAGIC.length + 1;
/** Separators tried, in order: one record a line, or comma-separated (JSON/JS arrays on one line). */
const SEPARATORS = [0x0a, 0x2c];
/** Below this many records a file is not treated as a list. */
const MIN_RECORDS = 64;
/** Above this mean record length a separator does not split the file into records. */
const MAX_MEAN_RECORD = 4096;

/** Whether a file looks like text (records are a text notion; binary files get the byte-level patch). */
export function looksLikeText(data: Uint8Array): boolean {
  if (data.length === 0) return false;
  // Up to 8 spread samples of 8 KiB: control bytes other than tab, LF, CR, FF, ESC mean binary.
  const span = 8192;
  const samples = Math.min(8, Math.ceil(data.length / span));
  let control = 0;
  let seen = 0;
  for (let s = 0; s < samples; s++) {
    const start = samples === 1 ? 0 : Math.floor(((data.length - span) * s) / (samples - 1));
    const end = Math.min(data.length, Math.max(0, start) + span);
    for (let i = Math.max(0, start); i < end; i++) {
      const b = data[i]!;
      if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0c && b !== 0x1b) control++;
    }
    seen += end - Math.max(0, start);
  }
  return control <= seen / 1000;
}

/** Record boundaries of a file: record i is [starts[i], starts[i+1]); a 53-bit hash of each. */
interface Records {
  starts: Uint32Array;
  hashes: Float64Array;
  count: number;
}

function splitRecords(data: Uint8Array, separator: number): Records {
  let count = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === separator) count++;
  if (data.length > 0 && data[data.length - 1] !== separator) count++;
  const starts = new Uint32Array(count + 1);
  const hashes = new Float64Array(count);
  let record = 0;
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    h1 = Math.imul(h1 ^ b, 0x01000193);
    h2 = Math.imul(h2 ^ b, 0x5bd1e995) ^ (h2 >>> 15);
    if (b === separator || i === data.length - 1) {
      hashes[record] = (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
      record++;
      starts[record] = i + 1;
      h1 = 0x811c9dc5;
      h2 = 0x9747b28c;
    }
  }
  return { starts, hashes, count };
}

function sameRecord(a: Uint8Array, ra: Records, i: number, b: Uint8Array, rb: Records, j: number): boolean {
  if (ra.hashes[i] !== rb.hashes[j]) return false;
  const aStart = ra.starts[i]!, aEnd = ra.starts[i + 1]!, bStart = rb.starts[j]!, bEnd = rb.starts[j + 1]!;
  if (aEnd - aStart !== bEnd - bStart) return false;
  return Buffer.compare(a.subarray(aStart, aEnd), b.subarray(bStart, bEnd)) === 0;
}

/**
 * Pairs (i, j) of equal records, increasing in both: a patience diff (records unique on both sides,
 * longest increasing run of them), then equal neighbours taken around each anchor.
 */
function matchRecords(a: Uint8Array, ra: Records, b: Uint8Array, rb: Records): { ia: Uint32Array; jb: Uint32Array; length: number } {
  const countA = new Map<number, number>();
  const countB = new Map<number, number>();
  const positionA = new Map<number, number>();
  for (let i = 0; i < ra.count; i++) {
    const h = ra.hashes[i]!;
    countA.set(h, (countA.get(h) ?? 0) + 1);
    positionA.set(h, i);
  }
  for (let j = 0; j < rb.count; j++) {
    const h = rb.hashes[j]!;
    countB.set(h, (countB.get(h) ?? 0) + 1);
  }
  // Anchors: records once in each file (and truly equal, not just equal hashes), in the target's order.
  const anchorA: number[] = [];
  const anchorB: number[] = [];
  for (let j = 0; j < rb.count; j++) {
    const h = rb.hashes[j]!;
    if (countA.get(h) !== 1 || countB.get(h) !== 1) continue;
    const i = positionA.get(h)!;
    if (sameRecord(a, ra, i, b, rb, j)) {
      anchorA.push(i);
      anchorB.push(j);
    }
  }
  // Longest increasing subsequence of the anchors' base positions (patience sorting).
  const tails: number[] = [];
  const tailIndex: number[] = [];
  const previous = new Int32Array(anchorA.length);
  for (let k = 0; k < anchorA.length; k++) {
    const x = anchorA[k]!;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tails[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    tails[lo] = x;
    tailIndex[lo] = k;
    previous[k] = lo > 0 ? tailIndex[lo - 1]! : -1;
  }
  const chain: number[] = [];
  for (let k = tails.length ? tailIndex[tails.length - 1]! : -1; k >= 0; k = previous[k]!) chain.push(k);
  chain.reverse();

  const ia = new Uint32Array(Math.min(ra.count, rb.count));
  const jb = new Uint32Array(ia.length);
  let length = 0;
  const push = (i: number, j: number) => {
    ia[length] = i;
    jb[length] = j;
    length++;
  };
  let i = 0;
  let j = 0;
  for (let c = 0; c <= chain.length; c++) {
    const x = c < chain.length ? anchorA[chain[c]!]! : ra.count;
    const y = c < chain.length ? anchorB[chain[c]!]! : rb.count;
    while (i < x && j < y && sameRecord(a, ra, i, b, rb, j)) push(i++, j++);
    // Equal records just before the anchor, found backwards, pushed in order.
    let xa = x;
    let yb = y;
    while (xa > i && yb > j && sameRecord(a, ra, xa - 1, b, rb, yb - 1)) {
      xa--;
      yb--;
    }
    for (let k = 0; k < x - xa; k++) push(xa + k, yb + k);
    if (c < chain.length) push(x, y);
    i = x + 1;
    j = y + 1;
  }
  return { ia, jb, length };
}

class VarintWriter {
  private buffer = Buffer.allocUnsafe(1024);
  length = 0;

  write(value: number): void {
    if (this.length + 10 > this.buffer.length) {
      const grown = Buffer.allocUnsafe(this.buffer.length * 2);
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.length++] = value;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function brotli(data: Buffer): Buffer {
  return zlib.brotliCompressSync(data, {
    params: {
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      // Quality 11 on the few new records of a list; the largest changes (several MB of new records) at 9,
      // which is about 10x faster for a few per cent more.
      [zlib.constants.BROTLI_PARAM_QUALITY]: data.length > 4 * 1024 * 1024 ? 9 : 11,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
}

function encodeWith(base: Uint8Array, target: Uint8Array, separator: number): Buffer | undefined {
  const rb = splitRecords(target, separator);
  if (rb.count < MIN_RECORDS || target.length / rb.count > MAX_MEAN_RECORD) return undefined;
  const ra = splitRecords(base, separator);
  const { ia, jb, length } = matchRecords(base, ra, target, rb);
  const ops = new VarintWriter();
  const added: Uint8Array[] = [];
  let addedBytes = 0;
  let hunks = 0;
  const hunkOps = new VarintWriter();
  let i = 0;
  let j = 0;
  // Hunk by hunk up to each run of kept records; the last hunk (kept 0) takes the rest of both files.
  for (let m = 0; ; ) {
    const last = m >= length;
    const nextI = last ? ra.count : ia[m]!;
    const nextJ = last ? rb.count : jb[m]!;
    let kept = 0;
    if (!last) while (m + kept < length && ia[m + kept] === nextI + kept && jb[m + kept] === nextJ + kept) kept++;
    if (nextJ > j) {
      added.push(target.subarray(rb.starts[j]!, rb.starts[nextJ]!));
      addedBytes += rb.starts[nextJ]! - rb.starts[j]!;
    }
    hunkOps.write(nextI - i);
    hunkOps.write(nextJ - j);
    hunkOps.write(kept);
    hunks++;
    i = nextI + kept;
    j = nextJ + kept;
    m += kept;
    if (last) break;
  }
  // Mostly new content: not a list that changed by records (a byte-level patch or the full file serves).
  if (addedBytes > target.length * 0.9) return undefined;
  ops.write(target.length);
  ops.write(hunks);
  const body = Buffer.concat([ops.bytes(), hunkOps.bytes(), ...added]);
  return Buffer.concat([MAGIC, Buffer.from([separator]), brotli(body)]);
}

/**
 * The record-aware incremental from `base` to `target`, or undefined when `target` is not a text list of
 * records or changed mostly by new content. The smallest over the separators tried; checked by rebuilding.
 */
export function createRecordPatch(base: Uint8Array, target: Uint8Array): Buffer | undefined {
  if (!looksLikeText(target)) return undefined;
  let best: Buffer | undefined;
  for (const separator of SEPARATORS) {
    const patch = encodeWith(base, target, separator);
    if (patch && (!best || patch.length < best.length)) best = patch;
  }
  if (best && !applyRecordPatch(base, best, target.length).equals(target)) {
    throw new Error('record patch does not rebuild its target (a bug in records.ts)');
  }
  return best;
}

/** Whether `patch` is in this format (its magic). */
export function isRecordPatch(patch: Uint8Array): boolean {
  return patch.length >= HEADER && Buffer.compare(patch.subarray(0, MAGIC.length), MAGIC) === 0;
}

/**
 * Rebuild the target from `base` and a record patch. Never writes more than `expectedLength` bytes, and
 * decompresses at most what a valid patch of such files can hold, so a hostile patch cannot make it
 * allocate without limit.
 */
export function applyRecordPatch(base: Uint8Array, patch: Uint8Array, expectedLength: number): Buffer {
  if (!isRecordPatch(patch)) throw new CorruptDataError('not a record patch');
  const separator = patch[MAGIC.length]!;
  if (!SEPARATORS.includes(separator)) throw new CorruptDataError(`record patch with an unknown separator ${separator}`);
  // A valid patch holds 3 varints per hunk (a hunk per base or target record at most) and the new bytes.
  const maxBody = 32 + expectedLength + 3 * 5 * (base.length + expectedLength + 2);
  let body: Buffer;
  try {
    body = zlib.brotliDecompressSync(patch.subarray(HEADER), { maxOutputLength: Math.min(maxBody, 2 ** 31 - 1) });
  } catch (cause) {
    throw new CorruptDataError(`record patch could not be decompressed: ${(cause as Error).message}`, { cause });
  }
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= body.length) throw new CorruptDataError('record patch ends inside its hunks');
      const byte = body[at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
      if (scale > 2 ** 49) throw new CorruptDataError('record patch holds a number out of range');
    }
  };
  const length = varint();
  if (length !== expectedLength) throw new CorruptDataError(`record patch builds ${length} bytes, expected ${expectedLength}`);
  const hunks = varint();
  const hunkStart = at;
  // Skip over the hunks once to find where the added bytes begin.
  for (let h = 0; h < hunks * 3; h++) varint();
  const added = body.subarray(at);
  at = hunkStart;
  const output = Buffer.allocUnsafe(expectedLength);
  let written = 0;
  let baseAt = 0;
  let addedAt = 0;
  /** End of `count` records of `data` from `from`. */
  const skipRecords = (data: Uint8Array, from: number, count: number, what: string): number => {
    let end = from;
    for (let r = 0; r < count; r++) {
      if (end >= data.length) throw new CorruptDataError(`record patch refers past the end of the ${what}`);
      const next = data.indexOf(separator, end);
      end = next < 0 ? data.length : next + 1;
    }
    return end;
  };
  const copy = (data: Uint8Array, from: number, to: number) => {
    if (written + (to - from) > expectedLength) throw new CorruptDataError(`record patch builds more than the expected ${expectedLength} bytes`);
    output.set(data.subarray(from, to), written);
    written += to - from;
  };
  for (let h = 0; h < hunks; h++) {
    const removed = varint();
    const addedCount = varint();
    const kept = varint();
    baseAt = skipRecords(base, baseAt, removed, 'base');
    const addedEnd = skipRecords(added, addedAt, addedCount, 'new records');
    copy(added, addedAt, addedEnd);
    addedAt = addedEnd;
    const keptEnd = skipRecords(base, baseAt, kept, 'base');
    copy(base, baseAt, keptEnd);
    baseAt = keptEnd;
  }
  if (written !== expectedLength || addedAt !== added.length) throw new CorruptDataError(`record patch built ${written} of ${expectedLength} bytes`);
  return output;
}
