// Child process for scripts/bench.js: rebuild a file from its base and an incremental the way an
// update run does (applyPatch, SHA-256 check against the expected hash, durable write into place) and
// print the time of each step and the process's peak RSS as one JSON line.
//
//   node scripts/bench-rebuild.js <base> <patch> <expected-sha256> <out> [plain]
//
// With "plain" the result is written with a plain fs.writeFileSync (no temp file, no fsync), for
// comparison with tools that do not make their writes durable.
import fs from 'node:fs';
import { applyPatch } from '../out/main/engine/codec.js';
import { sha256, writeFileAtomic } from '../out/main/engine/files.js';

const [baseFile, patchFile, expected, outFile, mode] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const t0 = now();
const base = fs.readFileSync(baseFile);
const patch = fs.readFileSync(patchFile);
const t1 = now();
const rebuilt = applyPatch(base, patch, { maxFileBytes: 1024 * 1024 * 1024 });
const t2 = now();
if (sha256(rebuilt) !== expected) throw new Error('rebuilt file does not match the expected SHA-256');
const t3 = now();
if (mode === 'plain') fs.writeFileSync(outFile, rebuilt);
else writeFileAtomic(outFile, rebuilt);
const t4 = now();
console.log(JSON.stringify({
  readMs: t1 - t0,
  applyMs: t2 - t1,
  shaMs: t3 - t2,
  writeMs: t4 - t3,
  totalMs: t4 - t0,
  bytes: rebuilt.length,
  maxRssKB: process.resourceUsage().maxRSS,
}));
