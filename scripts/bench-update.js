// Child process for scripts/bench.js: publish a small source (publisher defaults), serve it on loopback, install it
// with Engine.update, then run Engine.update again several times with nothing new and print the
// no-change runs' bytes on the wire and durations as one JSON line.
//
//   node scripts/bench-update.js <work-dir> <no-change-runs>
import fs from 'node:fs';
import path from 'node:path';
import { PatternSeries } from '../out/main/demo/patterns.js';
import { listen, staticHandler } from '../out/main/demo/static-server.js';
import { Engine } from '../out/main/engine/engine.js';
import { publish } from '../out/main/publisher/publisher.js';
import { Settings } from '../out/main/engine/settings.js';

const [work, runsArg] = process.argv.slice(2);
const runs = Number(runsArg);
fs.rmSync(work, { recursive: true, force: true });
const input = path.join(work, 'in');
const out = path.join(work, 'out');
const keys = path.join(work, 'keys');
const dataDir = path.join(work, 'data');

const series = new PatternSeries('virus-pattern', 171, 2e6, 7);
fs.mkdirSync(path.join(input, 'virus-pattern'), { recursive: true });
fs.writeFileSync(path.join(input, 'virus-pattern', '171'), series.content());
for (let i = 0; i < 2; i++) {
  const content = series.next();
  fs.writeFileSync(path.join(input, 'virus-pattern', String(series.version)), content);
}
fs.mkdirSync(path.join(input, 'scan-engine'), { recursive: true });
fs.writeFileSync(path.join(input, 'scan-engine', '10'), Buffer.alloc(64 * 1024, 'engine '));
const published = publish({ input, out, keys });

const server = await listen(staticHandler(out), '127.0.0.1');
const requests = [];
server.server.on('request', (req) => requests.push(req.url));
try {
  const settings = Settings.open(path.join(dataDir, 'settings'));
  const engine = new Engine({ dataDir, settings, source: { url: server.url, trustedRoot: path.join(out, 'root.json') } });
  const first = await engine.update('manual');
  if (first.result !== 'ok') throw new Error(`first update failed: ${first.error}`);
  const noChange = [];
  for (let i = 0; i < runs; i++) {
    requests.length = 0;
    const started = Number(process.hrtime.bigint()) / 1e6;
    const record = await engine.update('manual');
    const wallMs = Number(process.hrtime.bigint()) / 1e6 - started;
    if (record.result !== 'ok') throw new Error(`no-change update failed: ${record.error}`);
    if (record.components.some((c) => c.method !== 'none')) throw new Error('a no-change update installed something');
    noChange.push({
      bytes: record.bytes,
      recordMs: Date.parse(record.finishedAt) - Date.parse(record.startedAt),
      wallMs,
      requests: [...requests],
    });
  }
  console.log(JSON.stringify({
    source: published.components.map((c) => ({ id: c.id, latest: c.latest, fullBytes: c.fullBytes, compressedBytes: c.compressedBytes, incrementals: c.incrementals.length, skipped: c.skipped.length })),
    install: { bytes: first.bytes, recordMs: Date.parse(first.finishedAt) - Date.parse(first.startedAt) },
    noChange,
  }));
} finally {
  await server.close();
}
