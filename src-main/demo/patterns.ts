// Synthetic pattern files for the demo update source and the benchmarks.
//
// A pattern file is a header line and a list of signature records sorted by name, about 90 bytes each.
// Each new version keeps the previous one's records and applies a realistic churn: 0.5–1% of records
// added at scattered places, 0.1% removed and a few changed. Everything is derived from a seed, so the
// same (seed, version) always gives the same bytes.

const FAMILIES = [
  'TROJ', 'WORM', 'BKDR', 'RANSOM', 'PE', 'JS', 'HTML', 'VBS', 'ADW', 'SPYW', 'TSPY', 'HKTL', 'CRYP', 'EXPL',
  'BAT', 'ELF', 'OSX', 'ANDROIDOS', 'MSIL', 'X97M',
];
const KINDS = ['sig', 'hash', 'heur', 'ctx', 'yara'];

/** Small, fast, seedable PRNG (mulberry32); good enough for test data, never for keys. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hex(random: () => number, length: number): string {
  let out = '';
  while (out.length < length) out += Math.floor(random() * 0x100000000).toString(16).padStart(8, '0');
  return out.slice(0, length);
}

function record(random: () => number): string {
  const family = FAMILIES[Math.floor(random() * FAMILIES.length)]!;
  const variant = Math.floor(random() * 36 ** 6).toString(36).toUpperCase().padStart(6, '0');
  const kind = KINDS[Math.floor(random() * KINDS.length)]!;
  return `${family}_${variant}\t${kind}\t${hex(random, 48 + Math.floor(random() * 48))}`;
}

export interface ChurnRates {
  /** Share of records added per version, drawn uniformly between min and max. */
  addedMin: number;
  addedMax: number;
  removed: number;
  changed: number;
}

export const REALISTIC_CHURN: ChurnRates = { addedMin: 0.005, addedMax: 0.01, removed: 0.001, changed: 5 };

/** A series of versions of one pattern file: call next() to get each following version. */
export class PatternSeries {
  private records: string[];
  private random: () => number;
  version: number;

  constructor(
    readonly component: string,
    firstVersion: number,
    approxBytes: number,
    seed: number,
    private readonly churn: ChurnRates = REALISTIC_CHURN,
  ) {
    this.random = prng(seed);
    const count = Math.max(16, Math.round(approxBytes / 90));
    this.records = Array.from({ length: count }, () => record(this.random)).sort();
    this.version = firstVersion;
  }

  /** The current version's bytes. */
  content(): Buffer {
    const header = `#BULWARK-PATTERN ${this.component} v${this.version} records=${this.records.length}\n`;
    return Buffer.from(header + this.records.join('\n') + '\n');
  }

  /** Advance by `step` versions worth of churn (pattern versions often go up by 2, e.g. 171, 173, 175). */
  next(step = 2): Buffer {
    const { random, churn } = this;
    const n = this.records.length;
    const addCount = Math.max(1, Math.round(n * (churn.addedMin + random() * (churn.addedMax - churn.addedMin))));
    const removeCount = Math.max(1, Math.round(n * churn.removed));
    const removed = new Set<number>();
    while (removed.size < removeCount) removed.add(Math.floor(random() * n));
    const changed = new Set<number>();
    while (changed.size < churn.changed) changed.add(Math.floor(random() * n));
    const kept: string[] = [];
    for (let i = 0; i < n; i++) {
      if (removed.has(i)) continue;
      const current = this.records[i]!;
      if (changed.has(i)) {
        const [name, kind] = current.split('\t');
        kept.push(`${name}\t${kind}\t${hex(random, 48 + Math.floor(random() * 48))}`);
      } else kept.push(current);
    }
    const added = Array.from({ length: addCount }, () => record(random)).sort();
    // Merge the sorted new records into the sorted survivors: new signatures land all over the file.
    const merged: string[] = new Array(kept.length + added.length);
    let i = 0, j = 0, k = 0;
    while (i < kept.length || j < added.length) {
      if (j >= added.length || (i < kept.length && kept[i]! <= added[j]!)) merged[k++] = kept[i++]!;
      else merged[k++] = added[j++]!;
    }
    this.records = merged;
    this.version += step;
    return this.content();
  }
}
