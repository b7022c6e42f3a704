// Child process for scripts/bench.js: rebuild a file from its base and an incremental exactly the way an
// update run does now: read base and patch, applyPatch (out/main/engine/codec.js), then
// ComponentStore.writeVerified (out/main/engine/store.js: durable write on libuv's thread pool and
// SHA-256 on the main thread side by side, rename into place only if the hash matched), then activate.
// Prints the time of each step and the process's peak RSS as one JSON line. totalMs is read + apply +
// write+verify; activateMs (writing active.json durably) is reported on its own.
//
//   node scripts/bench-rebuild.js <base> <patch> <sha256> <length> <version> <data-dir> [plain]
//
// With "plain" the result is hashed and then written with a plain fs.writeFileSync (no temp file, no
// fsync, nothing side by side), for comparison with tools that do not make their writes durable.
import fs from 'node:fs';
import path from 'node:path';
import { applyPatch } from '../out/main/engine/codec.js';
import { sha256 } from '../out/main/engine/files.js';
import { ComponentStore } from '../out/main/engine/store.js';

const [baseFile, patchFile, expectedSha256, lengthArg, versionArg, dataDir, mode] = process.argv.slice(2);
const expected = { sha256: expectedSha256, length: Number(lengthArg) };
const version = Number(versionArg);
const now = () => Number(process.hrtime.bigint()) / 1e6;
fs.rmSync(dataDir, { recursive: true, force: true });
const store = new ComponentStore(dataDir);

const t0 = now();
const base = fs.readFileSync(baseFile);
const patch = fs.readFileSync(patchFile);
const t1 = now();
const rebuilt = applyPatch(base, patch, { maxFileBytes: 1024 * 1024 * 1024 });
const t2 = now();
if (mode === 'plain') {
  if (sha256(rebuilt) !== expected.sha256 || rebuilt.length !== expected.length) throw new Error('rebuilt file does not match the expected SHA-256');
  const file = store.pathOf('virus-pattern', version);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, rebuilt);
} else {
  await store.writeVerified('virus-pattern', version, rebuilt, expected, 'bench');
}
const t3 = now();
if (mode !== 'plain') {
  store.activate('virus-pattern', version, { sha256: expected.sha256, length: expected.length, installedAt: new Date().toISOString(), method: 'incremental' });
}
const t4 = now();
const written = fs.statSync(store.pathOf('virus-pattern', version)).size;
if (written !== expected.length) throw new Error(`wrote ${written} bytes, expected ${expected.length}`);
console.log(JSON.stringify({
  readMs: t1 - t0,
  applyMs: t2 - t1,
  writeVerifyMs: t3 - t2,
  activateMs: t4 - t3,
  totalMs: t3 - t0, // the rebuild: read, apply, write+verify (activation is reported on its own)
  bytes: rebuilt.length,
  maxRssKB: process.resourceUsage().maxRSS,
}));
fs.rmSync(dataDir, { recursive: true, force: true });
