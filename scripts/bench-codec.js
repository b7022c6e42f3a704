// Child process for scripts/bench.js: builds one incremental or full file with the shipped codec
// (out/main/engine/codec.js), timed and optionally repeated, checks it decodes back to the input, and
// prints one JSON line. Run in its own process so its peak RSS is its own; `maxRssKB` is the peak after
// the first build (later repetitions may overlap with compressors whose native memory has not been
// finalized yet).
//
//   node scripts/bench-codec.js patch <level|default> <reps> <base> <target> <out>
//   node scripts/bench-codec.js full <level|default> <reps> <input> <out>
//
// "default" (or the default level itself) calls createPatch(base, target) / compressFull(input) without a
// level, exactly as the publisher does with its defaults.
import fs from 'node:fs';
import { applyPatch, compressFull, createPatch, decompressFull, FULL_LEVEL, PATCH_LEVEL } from '../out/main/engine/codec.js';
import { nowMs } from './bench-lib.js';

const limits = { maxFileBytes: 1024 * 1024 * 1024 };
const [mode, levelArg, repsArg, ...files] = process.argv.slice(2);
const defaultLevel = mode === 'patch' ? PATCH_LEVEL : FULL_LEVEL;
const level = levelArg === 'default' ? defaultLevel : Number(levelArg);
const isDefault = level === defaultLevel;

const builders = {
  patch: (base, target) => (isDefault ? createPatch(base, target) : createPatch(base, target, level)),
  full: (input) => (isDefault ? compressFull(input) : compressFull(input, level)),
};
const build = builders[mode];
if (!build || !Number.isInteger(level)) throw new Error(`usage: bench-codec.js patch|full <level|default> <reps> <files...>`);

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
console.log(JSON.stringify({ bytes: output.length, ms, maxRssKB, level, isDefault }));
