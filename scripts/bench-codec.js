// Child process for scripts/bench.js: builds one incremental or full file (timed, optionally repeated),
// checks it decodes back to the input, and prints one JSON line. Run in its own process so its peak RSS
// is its own; `maxRssKB` is the peak after the first build (later repetitions may overlap with
// compressors whose native memory has not been finalized yet).
//
//   node scripts/bench-codec.js patch <current|tuned|tuned-ldm> <level> <reps> <base> <target> <out>
//   node scripts/bench-codec.js full <current|noldm> <level> <reps> <input> <out>
import fs from 'node:fs';
import { applyPatch, compressFull, createPatch, decompressFull } from '../out/main/engine/codec.js';
import { compressFullNoLdm, createPatchTuned, nowMs, tunedTables, windowLogFor } from './bench-lib.js';

const limits = { maxFileBytes: 1024 * 1024 * 1024 };
const [mode, variant, levelArg, repsArg, ...files] = process.argv.slice(2);
const level = Number(levelArg);

const builders = {
  patch: {
    current: (base, target) => createPatch(base, target, level),
    tuned: (base, target) => createPatchTuned(base, target, level),
    'tuned-ldm': (base, target) => createPatchTuned(base, target, level, { ldm: true }),
  },
  full: {
    current: (input) => compressFull(input, level),
    noldm: (input) => compressFullNoLdm(input, level),
  },
};
const build = builders[mode]?.[variant];
if (!build) throw new Error(`unknown mode/variant ${mode} ${variant}`);

const inputs = (mode === 'patch' ? files.slice(0, 2) : files.slice(0, 1)).map((f) => fs.readFileSync(f));
const outFile = files.at(-1);
const ms = [];
let output;
let maxRssKB;
for (let i = 0; i < Number(repsArg); i++) {
  if (i > 0) {
    // Let the previous compressor's native context be finalized before the next build.
    output = undefined;
    for (let k = 0; k < 3; k++) {
      globalThis.gc?.();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  const started = nowMs();
  output = build(...inputs);
  ms.push(nowMs() - started);
  maxRssKB ??= process.resourceUsage().maxRSS;
}
const decoded = mode === 'patch' ? applyPatch(inputs[0], output, limits) : decompressFull(output, limits);
if (!decoded.equals(inputs.at(-1))) throw new Error(`${mode} output does not decode back to the input`);
fs.writeFileSync(outFile, output);
const extra = {};
if (mode === 'patch' && variant !== 'current') {
  const windowLog = windowLogFor(inputs[0].length + inputs[1].length);
  Object.assign(extra, { windowLog, ...tunedTables(level, windowLog) });
}
console.log(JSON.stringify({ bytes: output.length, ms, maxRssKB, ...extra }));
