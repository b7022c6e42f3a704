// Child process for scripts/bench-limits.js, so each measurement has its own peak RSS and CPU time:
//
//   node scripts/bench-limits-child.js decode <codec> <compressed> <sha256> <length> <data-dir>
//     a full file's rebuild as an update run does it: read, decompressFull, ComponentStore.writeVerified
//   node scripts/bench-limits-child.js update <data-dir> <source-url> <trusted-root> <runs>
//     no-change runs of a one-shot engine (as `bulwark update` makes one), each in a fresh Engine
//
// Prints one JSON line: CPU milliseconds (user + system of this process, from process.cpuUsage) and wall
// milliseconds of the measured part, and the process's peak RSS.
import fs from 'node:fs';
import { decompressFull } from '../out/main/engine/codec.js';
import { Engine } from '../out/main/engine/engine.js';
import { Settings } from '../out/main/engine/settings.js';
import { ComponentStore } from '../out/main/engine/store.js';

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const now = () => Number(process.hrtime.bigint()) / 1e6;
const [mode, ...args] = process.argv.slice(2);

if (mode === 'decode') {
  const [codec, file, sha256, lengthArg, dataDir] = args;
  const length = Number(lengthArg);
  fs.rmSync(dataDir, { recursive: true, force: true });
  const store = new ComponentStore(dataDir);
  const cpu0 = cpuMs();
  const t0 = now();
  const data = decompressFull(fs.readFileSync(file), { maxFileBytes: 1024 * 1024 * 1024, expectedLength: length }, codec);
  await store.writeVerified('geolite2-city', 1, data, { sha256, length }, 'bench');
  console.log(JSON.stringify({ cpuMs: cpuMs() - cpu0, wallMs: now() - t0, maxRssKb: process.resourceUsage().maxRSS }));
} else if (mode === 'update') {
  const [dataDir, url, trustedRoot, runsArg] = args;
  const runs = [];
  for (let i = 0; i < Number(runsArg); i++) {
    const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url, trustedRoot }, verifyStoreAtStart: false });
    const cpu0 = cpuMs();
    const t0 = now();
    const record = await engine.runOnce();
    runs.push({ cpuMs: cpuMs() - cpu0, wallMs: now() - t0, result: record.result, reasons: record.components.map((c) => c.reason) });
    await engine.stop();
  }
  console.log(JSON.stringify({ runs, maxRssKb: process.resourceUsage().maxRSS }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
