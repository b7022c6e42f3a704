// `npm run bench`: size and speed of Bulwark's codec against the usual tools, the rebuild of a file on
// the client, and a no-change update over HTTP. Writes docs/benchmarks.md (regenerated on every run)
// and the raw numbers to .bench/results.json.
//
//   node --expose-gc scripts/bench.js                 full run (about 25 minutes on an idle 2-core machine,
//                                                      longer when other work shares the cores)
//   node scripts/bench.js --report-only               rewrite docs/benchmarks.md from .bench/results.json
//   BENCH_SIZE=5e6 BENCH_REAL=0 node scripts/bench.js quick smoke run of the script itself (does not
//                                                      write docs/benchmarks.md unless BENCH_WRITE=1)
//
// "Ours" is always the shipped codec (out/main/engine/codec.js): createPatch at its default PATCH_LEVEL
// and compressFull at FULL_LEVEL, plus a few other levels through the same functions for comparison.
// It also runs `bulwark publish` itself (bin/bulwark.js, a child process) for the publisher's peak memory.
// Inputs are cached under .bench/ (generated pattern files, SQLite databases, npm tarballs). Jobs that take more than
// about 30 s (level-16/19 builds, bsdiff, xz -9) run once, two at a time, first; everything that is timed
// for a median (and every target-bearing time) runs afterwards, one process at a time.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import binding from 'zstd-napi/binding.js';
import { FULL_LEVEL, PATCH_LEVEL } from '../out/main/engine/codec.js';
import { INCREMENTAL_HISTORY, INCREMENTAL_WORTH_RATIO } from '../out/main/engine/limits.js';
import { npmSeries, sqliteSeries, syntheticSeries } from './bench-data.js';
import {
  BENCH_DIR,
  checkOk,
  fmtBytes,
  fmtInt,
  fmtMiB,
  fmtMs,
  fmtRatio,
  median,
  nowMs,
  passFail,
  pool,
  ROOT,
  runAsync,
  runNodeJson,
  runSync,
  sha256File,
} from './bench-lib.js';

const SYN_BYTES = Number(process.env.BENCH_SIZE ?? 50e6);
const WITH_REAL = process.env.BENCH_REAL !== '0';
/** The binary database: SQLite, about this size (the publisher's 1 GB memory target is stated for 66 MB). */
const DB_BYTES = Number(process.env.BENCH_DB_SIZE ?? 66e6);
const QUICK = SYN_BYTES !== 50e6 || !WITH_REAL || DB_BYTES !== 66e6;
const WRITE_REPORT = process.env.BENCH_WRITE === '1' || !QUICK;

const RESULTS_FILE = path.join(BENCH_DIR, QUICK ? 'results.quick.json' : 'results.json');
const REPORT_FILE = path.join(ROOT, 'docs', 'benchmarks.md');
const WORK = path.join(BENCH_DIR, QUICK ? 'work-quick' : 'work');
const HOPS = [1, 2, 5];
const REPS = 3; // timing repetitions for anything that is medianed
const REBUILD_REPS = 5;
const UPDATE_RUNS = 7;
const PARALLEL = 2; // slow single-run jobs in flight at once (2-core machine)

const TARGETS = { patchRatio: 1.15, fullRatio: 1.1, rebuildTime: 1.5, rebuildMemory: 3, publishPatternBytes: 250e6, publishDbBytes: 1e9 };
/** Our incrementals: the default level and 9 repeated on every hop; 16 and 19 (slow) once, on the 1-hop. */
const FAST_PATCH_LEVELS = [...new Set([PATCH_LEVEL, 9])];
const SLOW_PATCH_LEVELS = [16, 19].filter((l) => !FAST_PATCH_LEVELS.includes(l));
/** Our full files: the default level, 19 and 16, once each (slow); on the database also the ultra levels 20-22. */
const FULL_LEVELS = [...new Set([FULL_LEVEL, 19, 16])];
const DB_FULL_LEVELS = [...new Set([FULL_LEVEL, 19, 20, 21, 22])];
/** `bulwark publish` peak memory: 15 versions of a ~4 MB pattern (14 incrementals), run PUBLISH_REPS times. */
const PUBLISH_PATTERN = { approxBytes: 4e6, count: 15 };
const PUBLISH_REPS = 3;

/** The real data set: consecutive published releases of @mdn/browser-compat-data (8.1.8 was never published). */
const REAL = {
  key: 'mdn',
  pkg: '@mdn/browser-compat-data',
  member: 'data.json',
  versions: ['8.1.3', '8.1.4', '8.1.5', '8.1.6', '8.1.7', '8.1.9'],
};

const started = nowMs();
const log = (line) => process.stderr.write(`[${((nowMs() - started) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);

// ----------------------------------------------------------------------------------------------------
// Measurements
// ----------------------------------------------------------------------------------------------------

/** The publisher's defaults, read from the compiled publisher to check it really uses the codec's constants. */
function publisherDefaults() {
  const source = fs.readFileSync(path.join(ROOT, 'out/main/publisher/publisher.js'), 'utf8');
  return {
    full: /options\.level \?\? FULL_LEVEL/.test(source) ? FULL_LEVEL : NaN,
    patch: /options\.patchLevel \?\? PATCH_LEVEL/.test(source) ? PATCH_LEVEL : NaN,
  };
}

function toolVersions() {
  const pkg = (name) => {
    try {
      return execFileSync('dpkg-query', ['-W', '-f', '${Version}', name], { encoding: 'utf8' });
    } catch {
      return '?';
    }
  };
  return {
    node: process.version,
    zstdNapi: JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules/zstd-napi/package.json'), 'utf8')).version,
    libzstd: binding.versionString(),
    zstd: pkg('zstd'),
    xdelta3: pkg('xdelta3'),
    bsdiff: pkg('bsdiff'),
    xz: pkg('xz-utils'),
  };
}

function machine() {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
  let commit = '?';
  try {
    commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  return {
    cpu,
    nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    memGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    commit,
  };
}

const fileSize = (file) => fs.statSync(file).size;

/** An external delta tool: `xdelta3`, `zstd19` (patch-from, level 19), `zstd3` (same, level 3), `bsdiff`. */
function deltaCommand(tool, base, target, out) {
  switch (tool) {
    case 'xdelta3':
      return ['xdelta3', ['-9', '-e', '-f', '-s', base, target, out]];
    case 'zstd19':
      return ['zstd', ['-19', '--long=31', `--patch-from=${base}`, target, '-o', out, '-f', '-q', '-q']];
    case 'zstd3':
      return ['zstd', ['-3', '--long=31', `--patch-from=${base}`, target, '-o', out, '-f', '-q', '-q']];
    case 'bsdiff':
      return ['bsdiff', [base, target, out]];
    default:
      throw new Error(tool);
  }
}

async function externalDelta(tool, base, target, out, reps, sync) {
  const ms = [];
  let maxRssKB = 0;
  for (let i = 0; i < reps; i++) {
    const [cmd, args] = deltaCommand(tool, base, target, out);
    const result = checkOk(sync ? runSync(cmd, args) : await runAsync(cmd, args), tool);
    ms.push(result.ms);
    maxRssKB = Math.max(maxRssKB, result.maxRssKB);
  }
  return { bytes: fileSize(out), ms, maxRssKB };
}

async function xz(input, out, sync) {
  const args = ['-9', '-k', '-c', input];
  const result = checkOk(sync ? runSync('xz', args, { stdout: out }) : await runAsync('xz', args, { stdout: out }), 'xz');
  return { bytes: fileSize(out), ms: [result.ms], maxRssKB: result.maxRssKB };
}

/** Our incremental: the shipped createPatch at `level` (PATCH_LEVEL is called without a level, as the publisher does). */
async function ourPatch(level, reps, base, target, out, sync) {
  const r = await runNodeJson('bench-codec.js', ['patch', String(level), String(reps), base, target, out], { sync });
  return { bytes: r.bytes, ms: r.ms, maxRssKB: r.maxRssKB };
}

/**
 * The window a decoder needs for a zstd frame (RFC 8878 frame header): a single-segment frame needs its
 * content size, any other the size its window descriptor declares.
 */
function frameWindow(file) {
  const header = Buffer.alloc(18);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, header, 0, header.length, 0);
  fs.closeSync(fd);
  if (header[4] & 0x20) return { singleSegment: true, bytes: binding.getFrameContentSize(header) };
  const base = 2 ** (10 + (header[5] >> 3));
  return { singleSegment: false, bytes: base + (base / 8) * (header[5] & 7) };
}

/** Our full file: the shipped compressFull at `level`. */
async function ourFull(level, reps, input, out, sync) {
  const r = await runNodeJson('bench-codec.js', ['full', String(level), String(reps), input, out], { sync });
  return { bytes: r.bytes, ms: r.ms, maxRssKB: r.maxRssKB, window: frameWindow(out) };
}

/** Result keys: "patch-<level>" / "full-<level>" for ours (always the shipped codec), tool names otherwise. */
function parseKey(key) {
  const m = /^(patch|full)-(\d+)$/.exec(key);
  return m ? { variant: m[1], level: Number(m[2]) } : undefined;
}

/** A data set: versions (oldest first), the latest is the target of every hop. */
function describe(key, title, versions, hops = HOPS) {
  const target = versions.at(-1);
  const dir = path.join(WORK, key);
  fs.mkdirSync(dir, { recursive: true });
  return {
    key,
    title,
    dir,
    versions: versions.map((v) => ({ label: String(v.version), file: v.file, bytes: v.bytes })),
    target: { label: String(target.version), file: target.file, bytes: target.bytes, sha256: sha256File(target.file) },
    hops: Object.fromEntries(
      hops.filter((h) => h < versions.length).map((h) => {
        const base = versions[versions.length - 1 - h];
        return [h, { base: { label: String(base.version), file: base.file, bytes: base.bytes }, tools: {} }];
      }),
    ),
    full: {},
  };
}

/** Slow jobs: run once, PARALLEL at a time. Sizes are deterministic; their times are indicative. */
function slowJobs(ds, { slowPatchLevels, fullLevels }) {
  const jobs = [];
  const target = ds.target.file;
  for (const [hop, h] of Object.entries(ds.hops)) {
    const out = (name) => path.join(ds.dir, `hop${hop}.${name}`);
    jobs.push({ ds, hop, key: 'zstd19', run: () => externalDelta('zstd19', h.base.file, target, out('zstd19.zst'), 1, false) });
    jobs.push({ ds, hop, key: 'bsdiff', run: () => externalDelta('bsdiff', h.base.file, target, out('bsdiff'), 1, false) });
    if (hop === '1') {
      for (const level of slowPatchLevels) {
        jobs.push({ ds, hop, key: `patch-${level}`, run: () => ourPatch(level, 1, h.base.file, target, out(`patch-${level}.zst`), false) });
      }
    }
  }
  jobs.push({ ds, full: true, key: 'xz', run: () => xz(target, path.join(ds.dir, 'full.xz'), false) });
  for (const level of fullLevels) {
    jobs.push({ ds, full: true, key: `full-${level}`, run: () => ourFull(level, 1, target, path.join(ds.dir, `full-${level}.zst`), false) });
  }
  return jobs;
}

/** Fast jobs: repeated REPS times on the 1-hop (once on the others), one process at a time. */
async function fastMeasurements(ds, { fastLevels }) {
  const target = ds.target.file;
  for (const [hop, h] of Object.entries(ds.hops)) {
    const reps = hop === '1' ? REPS : 1;
    const out = (name) => path.join(ds.dir, `hop${hop}.${name}`);
    log(`${ds.key} hop ${hop}: xdelta3, zstd -3 patch-from, shipped createPatch at levels ${fastLevels.join('/')}`);
    h.tools.xdelta3 = await externalDelta('xdelta3', h.base.file, target, out('xdelta3.vcdiff'), REPS, true);
    h.tools.zstd3 = await externalDelta('zstd3', h.base.file, target, out('zstd3.zst'), REPS, true);
    for (const level of fastLevels) {
      h.tools[`patch-${level}`] = await ourPatch(level, reps, h.base.file, target, out(`patch-${level}.zst`), true);
    }
  }
}

/** A positive integer version for the store: 181 stays 181, "8.1.9" becomes 819. */
const storeVersion = (label) => Number(String(label).replace(/\D/g, ''));

/**
 * Rebuild of the target from the 1-hop base, as an update run does it (scripts/bench-rebuild.js in a child
 * node process: applyPatch, ComponentStore.writeVerified, activate), interleaved with `xdelta3 -d`.
 * variants: result keys of 1-hop patches; "<key>+plain" hashes and then writes with fs.writeFileSync (no fsync).
 */
function rebuildMeasurement(ds, variants) {
  const hop = ds.hops[1];
  const out = path.join(ds.dir, 'rebuilt');
  const dataDir = path.join(ds.dir, 'rebuild-data');
  const runs = Object.fromEntries([...variants, 'xdelta3'].map((v) => [v, []]));
  const baseline = [];
  for (let i = 0; i < REBUILD_REPS; i++) {
    baseline.push(checkOk(runSync(process.execPath, ['-e', ''])).maxRssKB);
    for (const variant of variants) {
      const [key, plain] = variant.split('+');
      const patch = path.join(ds.dir, `hop1.${key}.zst`);
      const args = [hop.base.file, patch, ds.target.sha256, String(ds.target.bytes), String(storeVersion(ds.target.label)), dataDir, ...(plain ? ['plain'] : [])];
      const r = runSync(process.execPath, [path.join(ROOT, 'scripts/bench-rebuild.js'), ...args]);
      checkOk(r, `rebuild with ${variant}`);
      const json = JSON.parse(r.stdout.trim().split('\n').at(-1));
      runs[variant].push({ ...json, processMs: r.ms, processMaxRssKB: r.maxRssKB, patchBytes: fileSize(patch) });
    }
    const patch = path.join(ds.dir, 'hop1.xdelta3.vcdiff');
    const r = checkOk(runSync('xdelta3', ['-d', '-f', '-s', hop.base.file, patch, out]), 'xdelta3 -d');
    if (i === 0 && sha256File(out) !== ds.target.sha256) throw new Error('xdelta3 -d did not rebuild the target');
    runs.xdelta3.push({ processMs: r.ms, processMaxRssKB: r.maxRssKB, patchBytes: fileSize(patch) });
  }
  fs.rmSync(out, { force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
  return { dataset: ds.key, base: hop.base.label, target: ds.target.label, fileBytes: ds.target.bytes, baselineRssKB: baseline, runs };
}

const BULWARK = path.join(ROOT, 'bin', 'bulwark.js');

/** A `bulwark publish` input: DIR/<id>/<version> as links to the cached versions, and a component.json if given. */
function publishInput(key, id, versions, declaration) {
  const dir = path.join(WORK, 'publish', key);
  fs.rmSync(dir, { recursive: true, force: true });
  const componentDir = path.join(dir, 'in', id);
  fs.mkdirSync(componentDir, { recursive: true });
  for (const v of versions) fs.symlinkSync(v.file, path.join(componentDir, String(v.version)));
  if (declaration) fs.writeFileSync(path.join(componentDir, 'component.json'), JSON.stringify(declaration));
  return { dir, input: path.join(dir, 'in'), id, versions: versions.map((v) => ({ label: String(v.version), bytes: v.bytes })), declaration };
}

/**
 * One `bulwark publish --json` at the publisher's defaults, from an empty output directory (a re-run would
 * reuse what it built), as a child process under /usr/bin/time for its peak RSS.
 */
async function publishRun(setup, sync) {
  const out = path.join(setup.dir, 'out');
  fs.rmSync(out, { recursive: true, force: true });
  const args = [BULWARK, 'publish', '--input', setup.input, '--out', out, '--keys', path.join(setup.dir, 'keys'), '--json'];
  const r = checkOk(sync ? runSync(process.execPath, args) : await runAsync(process.execPath, args), 'bulwark publish');
  const c = JSON.parse(r.stdout.trim().split('\n').at(-1)).components[0];
  fs.rmSync(out, { recursive: true, force: true });
  return { ms: r.ms, maxRssKB: r.maxRssKB, fullBytes: c.fullBytes, compressedBytes: c.compressedBytes, incrementals: c.incrementals, skipped: c.skipped };
}

async function runAll() {
  const results = {
    startedAt: new Date().toISOString(),
    loadStart: os.loadavg(),
    machine: machine(),
    tools: toolVersions(),
    patchLevel: PATCH_LEVEL,
    fullLevel: FULL_LEVEL,
    publisherDefaults: publisherDefaults(),
    worthRatio: INCREMENTAL_WORTH_RATIO,
    synBytes: SYN_BYTES,
    datasets: {},
  };
  log(`machine: ${results.machine.nproc} cores, load ${results.loadStart.map((l) => l.toFixed(2)).join(' ')}`);

  log(`inputs: synthetic pattern series of ~${SYN_BYTES / 1e6} MB (cached under .bench/synthetic)`);
  const syn = syntheticSeries({ approxBytes: SYN_BYTES });
  const datasets = [describe('synthetic', `Synthetic pattern file, ~${Math.round(SYN_BYTES / 1e6)} MB (PatternSeries, REALISTIC_CHURN, versions step by 2)`, syn)];
  if (WITH_REAL) {
    log(`inputs: ${REAL.pkg} ${REAL.versions.join(', ')} (cached under .bench/npm)`);
    const real = npmSeries(REAL);
    datasets.push(describe(REAL.key, `${REAL.pkg} ${REAL.member}, ${REAL.versions.length} consecutive releases`, real));
  }
  log(`inputs: SQLite database of ~${DB_BYTES / 1e6} MB, 4 versions (cached under .bench/sqlite)`);
  const db = await sqliteSeries({ approxBytes: DB_BYTES });
  const dbDs = describe('sqlite', `SQLite signature database, ~${Math.round(DB_BYTES / 1e6)} MB (signatures with two indexes and per-day detection statistics; per version 0.5% of rows updated, 0.1% deleted, 0.3% added)`, db, [1]);
  datasets.push(dbDs);
  for (const ds of datasets) results.datasets[ds.key] = ds;
  const [synDs, realDs] = datasets.filter((ds) => ds !== dbDs);

  log(`inputs: ${PUBLISH_PATTERN.count} versions of a ~${PUBLISH_PATTERN.approxBytes / 1e6} MB pattern for bulwark publish (cached under .bench/synthetic)`);
  const small = syntheticSeries(PUBLISH_PATTERN);
  const publishSetups = {
    pattern: { ...publishInput('pattern', 'virus-pattern', small), title: `Synthetic pattern file, ~${PUBLISH_PATTERN.approxBytes / 1e6} MB` },
    sqlite: { ...publishInput('sqlite', 'signature-db', db, { name: 'Signature Database', duplication: true }), title: `SQLite signature database, ~${Math.round(DB_BYTES / 1e6)} MB (a component id of its own, declared with duplication)` },
  };
  results.publish = { baselineRssKB: [] };
  for (const [key, setup] of Object.entries(publishSetups)) results.publish[key] = { title: setup.title, id: setup.id, versions: setup.versions, declaration: setup.declaration, runs: [] };

  // Phase 1: the slow jobs, two at a time.
  const slow = { slowPatchLevels: SLOW_PATCH_LEVELS, fullLevels: FULL_LEVELS };
  const jobs = [...slowJobs(synDs, slow), ...(realDs ? slowJobs(realDs, slow) : []), ...slowJobs(dbDs, { slowPatchLevels: [], fullLevels: DB_FULL_LEVELS })];
  // The database's publish takes minutes (its full file at FULL_LEVEL): a slow job; its peak RSS is its own.
  jobs.push({ ds: dbDs, publish: 'sqlite', key: 'publish', run: () => publishRun(publishSetups.sqlite, false) });
  // Longest first, so the two lanes finish together (rough cost: MB x seconds per MB on this kind of data).
  const COST = { 'patch-19': 3, xz: 3, 'full-22': 4, 'full-21': 3.5, 'full-20': 3, publish: 3, 'full-19': 2.2, zstd19: 2, 'patch-16': 1.5, bsdiff: 0.9, 'full-16': 0.8 };
  jobs.sort((a, b) => b.ds.target.bytes * (COST[b.key] ?? 1) - a.ds.target.bytes * (COST[a.key] ?? 1));
  log(`phase 1: ${jobs.length} slow single-run jobs, ${PARALLEL} at a time`);
  const phase1Started = nowMs();
  await pool(jobs, PARALLEL, (job, result, done, total) => {
    if (job.publish) {
      log(`  [${done}/${total}] bulwark publish ${job.publish}: peak RSS ${fmtMiB(result.maxRssKB)} in ${fmtMs(result.ms)}`);
      results.publish[job.publish].runs.push({ ...result, parallel: true });
      return;
    }
    const where = job.full ? `${job.ds.key} full` : `${job.ds.key} hop ${job.hop}`;
    log(`  [${done}/${total}] ${where} ${job.key}: ${fmtInt(result.bytes)} B in ${fmtMs(result.ms[0])}`);
    if (job.full) job.ds.full[job.key] = { ...result, parallel: true };
    else job.ds.hops[job.hop].tools[job.key] = { ...result, parallel: true };
  });
  results.phase1Ms = nowMs() - phase1Started;

  // Phase 2: everything that is medianed, one process at a time.
  log('phase 2: repeated measurements, one process at a time');
  await fastMeasurements(synDs, { fastLevels: FAST_PATCH_LEVELS });
  if (realDs) await fastMeasurements(realDs, { fastLevels: FAST_PATCH_LEVELS });
  await fastMeasurements(dbDs, { fastLevels: [PATCH_LEVEL] });

  log(`bulwark publish: ${PUBLISH_REPS} runs of the ${PUBLISH_PATTERN.count}-version pattern, and the CLI's own baseline`);
  for (let i = 0; i < PUBLISH_REPS; i++) {
    results.publish.baselineRssKB.push(checkOk(runSync(process.execPath, [BULWARK, 'publish', '--help']), 'bulwark publish --help').maxRssKB);
    results.publish.pattern.runs.push(await publishRun(publishSetups.pattern, true));
  }

  const rebuildVariants = [`patch-${PATCH_LEVEL}`, `patch-${PATCH_LEVEL}+plain`, 'patch-19'];
  results.rebuild = [];
  for (const ds of [synDs, realDs].filter(Boolean)) {
    log(`rebuild: ${ds.key} 1-hop, ${REBUILD_REPS} runs each of ${rebuildVariants.join(', ')} and xdelta3 -d`);
    results.rebuild.push(rebuildMeasurement(ds, rebuildVariants));
  }

  log(`no-change update: publish, serve, install, then ${UPDATE_RUNS} no-change runs`);
  results.update = await runNodeJson('bench-update.js', [path.join(WORK, 'update'), String(UPDATE_RUNS)], { sync: true });
  fs.rmSync(path.join(WORK, 'update'), { recursive: true, force: true });

  results.finishedAt = new Date().toISOString();
  results.totalMs = nowMs() - started;
  results.loadEnd = os.loadavg();
  return results;
}

// ----------------------------------------------------------------------------------------------------
// Report
// ----------------------------------------------------------------------------------------------------

const COMPETITORS = ['xdelta3', 'zstd19', 'bsdiff'];

function label(key, results) {
  const names = {
    xdelta3: '`xdelta3 -9 -e -s`',
    zstd19: '`zstd -19 --long=31 --patch-from`',
    zstd3: '`zstd -3 --long=31 --patch-from` (reference)',
    bsdiff: '`bsdiff`',
    xz: '`xz -9 -k`',
  };
  if (names[key]) return names[key];
  const [base, plain] = key.split('+');
  const k = parseKey(base);
  if (!k) return key;
  const isDefault = results && k.level === (k.variant === 'patch' ? results.patchLevel : results.fullLevel);
  const text = {
    patch: isDefault ? `ours, createPatch level ${k.level} (shipped default)` : `ours, createPatch level ${k.level}`,
    full: isDefault ? `ours, compressFull level ${k.level} (shipped default)` : `ours, compressFull level ${k.level}`,
  }[k.variant];
  return plain ? `${text}, hash then plain write without fsync (reference)` : text;
}

function timeCell(r) {
  if (!r) return '–';
  const t = fmtMs(median(r.ms));
  return r.parallel ? `${t} (n=1, 2 jobs in parallel)` : `${t} (median of ${r.ms.length})`;
}

function smallestCompetitor(hop) {
  const entries = COMPETITORS.filter((k) => hop.tools[k]).map((k) => [k, hop.tools[k].bytes]);
  entries.sort((a, b) => a[1] - b[1]);
  return { key: entries[0][0], bytes: entries[0][1] };
}

function sortKeys(keys) {
  const rank = (key) => {
    if (COMPETITORS.includes(key)) return [0, COMPETITORS.indexOf(key)];
    if (key === 'zstd3') return [1, 0];
    return [2, -parseKey(key).level];
  };
  return keys.sort((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    return ra[0] - rb[0] || ra[1] - rb[1];
  });
}

/** Worst ratio to the smallest competitor over the hops that have `key`. */
function worstRatio(ds, key) {
  const ratios = Object.values(ds.hops).filter((h) => h.tools[key]).map((h) => h.tools[key].bytes / smallestCompetitor(h).bytes);
  return ratios.length ? Math.max(...ratios) : NaN;
}

const mark = (ok) => (ok ? '✅' : '❌');

function patchTable(ds, results) {
  const hops = Object.keys(ds.hops);
  const keys = sortKeys([...new Set(hops.flatMap((h) => Object.keys(ds.hops[h].tools)))]);
  const compressedFull = ds.full[`full-${results.fullLevel}`]?.bytes;
  const lines = [];
  lines.push(`| Tool / variant | ${hops.map((h) => `${h}-hop (${ds.hops[h].base.label} → ${ds.target.label})`).join(' | ')} | Create time, 1-hop | Peak RSS, 1-hop |`);
  lines.push(`|---|${hops.map(() => '---:').join('|')}|---:|---:|`);
  for (const key of keys) {
    const ours = parseKey(key);
    const isDefault = ours?.level === results.patchLevel;
    const cells = hops.map((h) => {
      const r = ds.hops[h].tools[key];
      if (!r) return '–';
      const smallest = smallestCompetitor(ds.hops[h]);
      const ratio = r.bytes / smallest.bytes;
      let cell = fmtBytes(r.bytes);
      cell += key === smallest.key ? ' · smallest' : ` · ${fmtRatio(ratio)}`;
      if (ours) {
        cell += ` ${isDefault ? passFail(ratio <= TARGETS.patchRatio) : mark(ratio <= TARGETS.patchRatio)}`;
        if (compressedFull && r.bytes > compressedFull * results.worthRatio) cell += ' †';
      }
      return cell;
    });
    const one = ds.hops[1]?.tools[key];
    const name = isDefault ? `**${label(key, results)}**` : label(key, results);
    lines.push(`| ${name} | ${cells.join(' | ')} | ${timeCell(one)} | ${one ? fmtMiB(one.maxRssKB) : '–'} |`);
  }
  const smallestRow = hops.map((h) => {
    const s = smallestCompetitor(ds.hops[h]);
    return `${fmtBytes(s.bytes)} (${s.key})`;
  });
  lines.push(`| **smallest of the three** | ${smallestRow.join(' | ')} | | |`);
  return lines.join('\n');
}

function fullTable(ds, results) {
  const xzBytes = ds.full.xz.bytes;
  const keys = Object.keys(ds.full)
    .filter((k) => k !== 'xz')
    .sort((a, b) => parseKey(b).level - parseKey(a).level);
  const lines = [
    `| Tool / variant | Size | Ratio to xz -9 (target ≤ ${TARGETS.fullRatio.toFixed(2)}×) | Compress time | Peak RSS |`,
    '|---|---:|---:|---:|---:|',
    `| ${label('xz')} | ${fmtBytes(xzBytes)} | 1.000× | ${timeCell(ds.full.xz)} | ${fmtMiB(ds.full.xz.maxRssKB)} |`,
  ];
  for (const key of keys) {
    const r = ds.full[key];
    const ratio = r.bytes / xzBytes;
    const isDefault = key === `full-${results.fullLevel}`;
    const verdict = isDefault ? passFail(ratio <= TARGETS.fullRatio) : mark(ratio <= TARGETS.fullRatio);
    lines.push(`| ${isDefault ? `**${label(key, results)}**` : label(key, results)} | ${fmtBytes(r.bytes)} | ${fmtRatio(ratio)} ${verdict} | ${timeCell(r)} | ${fmtMiB(r.maxRssKB)} |`);
  }
  lines.push(`| uncompressed | ${fmtBytes(ds.target.bytes)} | | | |`);
  return lines.join('\n');
}

/** The memory target is stated for the ~50 MB pattern file; on other data sets the ratio is information. */
const memoryTargetApplies = (rb) => rb.dataset === 'synthetic';

function rebuildSummary(rb) {
  const xdeltaMs = median(rb.runs.xdelta3.map((r) => r.processMs));
  const baseline = median(rb.baselineRssKB);
  return Object.keys(rb.runs)
    .filter((k) => k !== 'xdelta3')
    .map((variant) => {
      const runs = rb.runs[variant];
      const totalMs = median(runs.map((r) => r.totalMs));
      const peakKB = Math.max(...runs.map((r) => r.processMaxRssKB));
      return {
        variant,
        reference: variant.includes('+'),
        patchBytes: runs[0].patchBytes,
        readMs: median(runs.map((r) => r.readMs)),
        applyMs: median(runs.map((r) => r.applyMs)),
        writeVerifyMs: median(runs.map((r) => r.writeVerifyMs)),
        activateMs: median(runs.map((r) => r.activateMs)),
        totalMs,
        processMs: median(runs.map((r) => r.processMs)),
        peakKB,
        netKB: peakKB - baseline,
        timeRatio: totalMs / xdeltaMs,
        memRatio: (peakKB * 1024) / rb.fileBytes,
        netRatio: ((peakKB - baseline) * 1024) / rb.fileBytes,
        timePass: totalMs / xdeltaMs <= TARGETS.rebuildTime,
        memPass: (peakKB * 1024) / rb.fileBytes < TARGETS.rebuildMemory,
      };
    });
}

function rebuildTable(rb, results) {
  const xdeltaMs = median(rb.runs.xdelta3.map((r) => r.processMs));
  const xdeltaPeak = Math.max(...rb.runs.xdelta3.map((r) => r.processMaxRssKB));
  const baseline = median(rb.baselineRssKB);
  const applies = memoryTargetApplies(rb);
  const lines = [
    `| Rebuild ${rb.base} → ${rb.target} | Patch | Read inputs | applyPatch | writeVerified (write+fsync ∥ SHA-256, rename) | **Total** | (activate, not in total) | Whole process | Time ÷ xdelta3 (target ≤ ${TARGETS.rebuildTime}×) | Peak RSS (total) | Peak ÷ file (${applies ? `target < ${TARGETS.rebuildMemory}×` : 'information'}) | Peak − Node baseline | ÷ file |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of rebuildSummary(rb)) {
    const isDefault = s.variant === `patch-${results.patchLevel}`;
    const verdict = (ok, target = true) => (!target ? '' : isDefault ? passFail(ok) : mark(ok));
    const writeCell = s.reference ? `${fmtMs(s.writeVerifyMs)} (SHA-256, then writeFileSync)` : fmtMs(s.writeVerifyMs);
    lines.push(
      `| ${isDefault ? `**${label(s.variant, results)}**` : label(s.variant, results)} | ${fmtBytes(s.patchBytes)} | ${fmtMs(s.readMs)} | ${fmtMs(s.applyMs)} | ${writeCell} | **${fmtMs(s.totalMs)}** | ${s.reference ? '–' : fmtMs(s.activateMs)} | ${fmtMs(s.processMs)} | ${fmtRatio(s.timeRatio)} ${verdict(s.timePass)} | ${fmtMiB(s.peakKB)} | ${s.memRatio.toFixed(3)}× ${verdict(s.memPass, applies)} | ${fmtMiB(s.netKB)} | ${s.netRatio.toFixed(2)}× |`,
    );
  }
  lines.push(
    `| \`xdelta3 -d -s BASE PATCH OUT\` | ${fmtBytes(rb.runs.xdelta3[0].patchBytes)} | | | | **${fmtMs(xdeltaMs)}** | | ${fmtMs(xdeltaMs)} | 1.000× | ${fmtMiB(xdeltaPeak)} | ${((xdeltaPeak * 1024) / rb.fileBytes).toFixed(2)}× | | |`,
  );
  lines.push(`| \`node -e ''\` (Node baseline, median) | | | | | | | | | ${fmtMiB(baseline)} | | | |`);
  return lines.join('\n');
}

function versionsLine(ds) {
  return ds.versions.map((v) => `${v.label} (${fmtBytes(v.bytes)})`).join(', ');
}

/** Peak RSS as "209 MiB (219 MB)": the targets are stated in MB. */
const fmtPeak = (kb) => `${fmtMiB(kb)} (${((kb * 1024) / 1e6).toFixed(0)} MB)`;

function publishSummary(pub, baselineRssKB) {
  const peaks = pub.runs.map((r) => r.maxRssKB);
  const last = pub.runs.at(-1);
  return {
    peakKB: median(peaks),
    minKB: Math.min(...peaks),
    maxKB: Math.max(...peaks),
    ms: median(pub.runs.map((r) => r.ms)),
    n: pub.runs.length,
    parallel: pub.runs.some((r) => r.parallel),
    baselineKB: median(baselineRssKB),
    last,
  };
}

function report(results) {
  const { machine: m, tools: t } = results;
  const syn = results.datasets.synthetic;
  const real = results.datasets.mdn;
  const db = results.datasets.sqlite;
  const pl = results.patchLevel;
  const fl = results.fullLevel;
  const dsList = [syn, real, db].filter(Boolean);
  const out = [];
  const p = (s = '') => out.push(s);

  // Summary: each target for the shipped defaults.
  const summary = [];
  const ratioCell = (a, b, limit) => {
    const r = a / b;
    return [`${fmtInt(a)} / ${fmtInt(b)} = ${fmtRatio(r)}`, passFail(r <= limit)];
  };
  for (const ds of dsList) {
    for (const [h, hop] of Object.entries(ds.hops)) {
      const s = smallestCompetitor(hop);
      summary.push([`1. Incremental, ${ds.key}, ${h}-hop: createPatch ÷ smallest (${s.key})`, `≤ ${TARGETS.patchRatio}×`, ...ratioCell(hop.tools[`patch-${pl}`].bytes, s.bytes, TARGETS.patchRatio)]);
    }
  }
  for (const ds of dsList) {
    summary.push([`2. Full file, ${ds.key}: compressFull ÷ xz -9`, `≤ ${TARGETS.fullRatio}×`, ...ratioCell(ds.full[`full-${fl}`].bytes, ds.full.xz.bytes, TARGETS.fullRatio)]);
  }
  for (const rb of results.rebuild) {
    const xdeltaMs = median(rb.runs.xdelta3.map((r) => r.processMs));
    const s = rebuildSummary(rb).find((x) => x.variant === `patch-${pl}`);
    summary.push([`3. Rebuild time, ${rb.dataset}: read + applyPatch + writeVerified ÷ \`xdelta3 -d\``, `≤ ${TARGETS.rebuildTime}×`, `${fmtMs(s.totalMs)} / ${fmtMs(xdeltaMs)} = ${fmtRatio(s.timeRatio)}`, passFail(s.timePass)]);
    const mem = `${fmtMiB(s.peakKB)} / ${(rb.fileBytes / 2 ** 20).toFixed(1)} MiB = ${s.memRatio.toFixed(3)}× (without Node's ${fmtMiB(median(rb.baselineRssKB))} baseline: ${fmtMiB(s.netKB)} = ${s.netRatio.toFixed(2)}×)`;
    if (memoryTargetApplies(rb)) summary.push([`3. Rebuild peak RSS (total, Node included), ${rb.dataset} ÷ file size`, `< ${TARGETS.rebuildMemory}×`, mem, passFail(s.memPass)]);
    else summary.push([`3. Rebuild peak RSS, ${rb.dataset} ÷ file size (the target is stated for the ~50 MB file)`, 'information', mem, s.memPass ? 'info (< 3×)' : 'info (≥ 3×)']);
  }
  const nc = results.update.noChange;
  summary.push(['4. No-change update: bytes / duration (median)', 'none set', `${fmtInt(median(nc.map((r) => r.bytes)))} B / ${fmtMs(median(nc.map((r) => r.wallMs)))}`, 'info']);
  for (const [key, limit] of [['pattern', TARGETS.publishPatternBytes], ['sqlite', TARGETS.publishDbBytes]]) {
    const pub = results.publish[key];
    const s = publishSummary(pub, results.publish.baselineRssKB);
    const what = `${pub.versions.length} versions, ${s.last.incrementals.length} incrementals`;
    const cell = `${fmtPeak(s.peakKB)}${s.n > 1 ? ` (median of ${s.n}; ${fmtMiB(s.minKB)}–${fmtMiB(s.maxKB)})` : ' (n=1)'}`;
    summary.push([`5. \`bulwark publish\` peak RSS, ${pub.title.replace(/ \(.*/, '')} (${what})`, `≤ ${limit / 1e6 >= 1000 ? `${limit / 1e9} GB` : `${limit / 1e6} MB`}`, cell, passFail(s.peakKB * 1024 <= limit)]);
  }

  p('# Benchmarks');
  p();
  p(`Generated by \`npm run bench\` (scripts/bench.js) on ${results.finishedAt.slice(0, 16).replace('T', ' ')} UTC, in one run of ${fmtMs(results.totalMs)}. Raw numbers are in \`.bench/results.json\`. This file is regenerated by the benchmark; do not edit it by hand.`);
  p();
  p('## Machine');
  p();
  p('| | |');
  p('|---|---|');
  p(`| CPU | ${m.cpu}, \`nproc\` = ${m.nproc} |`);
  p(`| Memory | ${m.memGiB.toFixed(1)} GiB |`);
  p(`| OS | Linux ${m.kernel} |`);
  p(`| Node | ${t.node} |`);
  p(`| zstd-napi | ${t.zstdNapi} (libzstd ${t.libzstd}) |`);
  p(`| Tools (Debian packages) | zstd ${t.zstd}, xdelta3 ${t.xdelta3}, bsdiff ${t.bsdiff}, xz-utils ${t.xz} |`);
  p(`| Code | commit ${m.commit} plus the working tree, compiled into \`out/main\` |`);
  p(`| Load average (1/5/15 min) | ${results.loadStart.map((l) => l.toFixed(2)).join(' / ')} at start, ${results.loadEnd.map((l) => l.toFixed(2)).join(' / ')} at end |`);
  p();
  if (Math.max(...results.loadStart, ...results.loadEnd) > m.nproc) {
    p(`Other work was running on this machine during the benchmark (the load average was above the ${m.nproc} cores), so absolute times are inflated and noisy. The slow single-run jobs are affected most. Sizes are deterministic and unaffected. The most reliable time figures are the ones measured back to back and interleaved (rebuild versus \`xdelta3 -d\`).`);
    p();
  }
  p('## Summary of targets');
  p();
  p(`All rows are for the codec as shipped, at its defaults: incrementals from \`createPatch(base, target)\` at \`PATCH_LEVEL\` = ${pl}, full files from \`compressFull(content)\` at \`FULL_LEVEL\` = ${fl} (the publisher's defaults: \`publish({ level = FULL_LEVEL, patchLevel = PATCH_LEVEL })\`), and on the client \`applyPatch\` followed by \`ComponentStore.writeVerified\`. The memory target ("peak memory under ${TARGETS.rebuildMemory}× the file's size") is judged on the **total** peak RSS of the rebuilding process, Node's own baseline included, for the ~${Math.round(results.synBytes / 1e6)} MB file; the figure without Node's baseline is given next to it.`);
  p();
  p('| Measurement | Target | Shipped defaults | |');
  p('|---|---|---|:---:|');
  for (const row of summary) p(`| ${row.join(' | ')} |`);
  p();
  p('## Method');
  p();
  p(`- **Inputs.** ${syn.title}: versions ${versionsLine(syn)}. They are generated once from a fixed seed and cached under \`.bench/synthetic/\`.` + (real ? ` Real data: ${real.title}, fetched with \`npm pack\` and cached under \`.bench/npm/\`: ${versionsLine(real)}.` : '') + (db ? ` A binary database: ${db.title}, a real SQLite file (4 KiB pages) built with the sqlite3 package from a fixed seed and cached under \`.bench/sqlite/\`: ${versionsLine(db)}; only its 1-hop incremental is measured.` : ''));
  p('- **Hops.** The target is always the latest version. An *n*-hop incremental goes from the version *n* releases earlier to the latest (1, 2 and 5 hops), all measured in this one run.');
  p(`- **Ours.** Always the shipped \`createPatch\` and \`compressFull\` from \`out/main/engine/codec.js\`, run in a child Node process (\`scripts/bench-codec.js\`), which also checks that the output decodes back to the input. The default levels are called without a level argument, as the publisher calls them. Other levels go through the same functions, for comparison: createPatch at ${[...new Set([pl, ...Object.keys(syn.hops[1].tools).map(parseKey).filter(Boolean).map((k) => k.level)])].sort((a, b) => b - a).join(', ')}, compressFull at ${Object.keys(syn.full).map(parseKey).filter(Boolean).map((k) => k.level).join(', ')}. What createPatch sets: window W = ⌈log2(base + target)⌉; levels ≤ 12 hashLog = chainLog = min(W − 1, 26); levels ≥ 13 hashLog = min(W − 1, 26), chainLog = min(W + 1, 30); long-distance matching off; the base is referenced as a raw-content prefix (\`ZSTD_CCtx_refPrefix\`, through Bulwark's own native/zstd_prefix.node; where that is not built, loaded as a raw-content dictionary through zstd-napi, which makes the same bytes with the match tables held twice). compressFull sets the window to ⌈log2(file size)⌉ and enables long-distance matching at levels ≥ 16. The publisher builds every file of a publish with one zstd context (\`Encoder\`), reset after each file.`);
  p('- **Competitors.** `xdelta3 -9 -e -s BASE TARGET OUT`, `zstd -19 --long=31 --patch-from=BASE TARGET` and `bsdiff BASE TARGET OUT` for incrementals; `xz -9 -k` for full files. `zstd -3 --long=31 --patch-from` is listed for reference only and is not one of the three.');
  p(`- **Timing.** Wall clock (\`process.hrtime\`). Everything timed for a median ran ${REPS} times on the 1-hop (once on the 2- and 5-hop; rebuilds ${REBUILD_REPS} times), one process at a time, after the slow jobs. Jobs that take more than about 30 s ran **once** (createPatch at levels ≥ 16, compressFull, \`zstd -19\`, \`bsdiff\`, \`xz -9\`, the database's \`bulwark publish\`), two at a time on the two cores, to keep the run short. Their sizes are exact, but their times are only indicative (marked *n=1*). Peak RSS of the tools comes from \`/usr/bin/time -f %M\`. For our builds it is the child's \`maxRSS\` after its first build, which includes about 40 MiB of Node itself.`);
  p(`- **Ratios.** Patch size ÷ the smallest of xdelta3, zstd -19 and bsdiff for the same hop: ✅/**PASS** means ≤ ${TARGETS.patchRatio}×, ❌/**FAIL** means above (PASS/FAIL is used for the shipped default). † marks an incremental larger than ${results.worthRatio} × the compressed full file (\`INCREMENTAL_WORTH_RATIO\`); the publisher would not publish it.`);
  p();

  p(`## 1. Incremental size: ${syn.title}`);
  p();
  p(patchTable(syn, results));
  p();
  const fullSyn = syn.full[`full-${fl}`]?.bytes;
  if (fullSyn) p(`For scale, the compressed full file (compressFull level ${fl}) is ${fmtBytes(fullSyn)}. The publisher keeps an incremental only if it is at most ${fmtInt(fullSyn * results.worthRatio)} B.`);
  p();
  p('## 2. Full download size');
  p();
  for (const ds of dsList) {
    p(`**${ds.title}**, latest version ${ds.target.label}:`);
    p();
    p(fullTable(ds, results));
    p();
    const shipped = ds.full[`full-${fl}`];
    if (shipped?.window) {
      p(`Window: the level-${fl} frame ${shipped.window.singleSegment ? `is single-segment, so a decoder's window is the file itself (${fmtBytes(shipped.window.bytes)})` : `declares a ${fmtBytes(shipped.window.bytes)} window`}. The client decodes a full file in one call into a buffer of the file's size, so the window costs nothing beyond that buffer; a streaming decoder such as \`zstd -d\` needs ${(shipped.window.bytes / 2 ** 20).toFixed(0)} MiB for it (its default limit is 128 MiB).`);
      p();
    }
  }
  p('## 3. Rebuild and verification on the client');
  p();
  p(`\`scripts/bench-rebuild.js\` runs in a child Node process and does what an update run does now: read the base and the patch, \`applyPatch\` (\`out/main/engine/codec.js\`), then \`new ComponentStore(dataDir).writeVerified('virus-pattern', version, rebuilt, { sha256, length }, 'bench')\` (\`out/main/engine/store.js\`): the durable write (temp file, write, fsync) runs on libuv's thread pool while SHA-256 runs on the main thread, and the file is renamed into place only if the hash matched. The base is not re-hashed. **Total** is read + applyPatch + writeVerified; \`activate\` (writing \`active.json\` durably) is shown separately and is not in the total. *Whole process* adds Node start-up and module loading. \`xdelta3 -d\` is timed as a process: it reads, decodes, checks its Adler-32 and writes without fsync. The reference row hashes and then writes with \`fs.writeFileSync\` (no temp file, no fsync), to show the cost of durability. The level-19 row rebuilds from a level-19 patch, for comparison. Times are the median of ${REBUILD_REPS} interleaved runs. Peak RSS is the maximum over those runs (\`/usr/bin/time -f %M\`), shown in total and minus the median RSS of \`node -e ''\`.`);
  p();
  for (const rb of results.rebuild) {
    p(`**${results.datasets[rb.dataset].title}**, 1-hop, file of ${fmtBytes(rb.fileBytes)} (${(rb.fileBytes / 2 ** 20).toFixed(1)} MiB):`);
    p();
    p(rebuildTable(rb, results));
    p();
  }
  p('## 4. `bulwark update` with nothing new');
  p();
  const u = results.update;
  p(`A small source is published with \`publish()\` at its defaults (${u.source.map((c) => `${c.id} ${c.latest}: ${fmtBytes(c.fullBytes)}, ${c.incrementals} incremental(s) published, ${c.skipped} skipped as not worth it`).join('; ')}) and served by \`listen(staticHandler(dir))\` on 127.0.0.1. One \`Engine.update\` installs it (${fmtBytes(u.install.bytes)} received). Then ${nc.length} more runs find nothing new:`);
  p();
  p('| No-change run | Bytes on the wire (`record.bytes`) | Duration (`finishedAt − startedAt`) | Wall time of `engine.update()` | Requests |');
  p('|---|---:|---:|---:|---|');
  nc.forEach((r, i) => p(`| ${i + 1} | ${fmtInt(r.bytes)} | ${r.recordMs} ms | ${fmtMs(r.wallMs)} | ${r.requests.map((q) => `\`${q}\``).join(', ')} |`));
  p(`| **median** | **${fmtInt(median(nc.map((r) => r.bytes)))}** | **${median(nc.map((r) => r.recordMs))} ms** | **${fmtMs(median(nc.map((r) => r.wallMs)))}** | |`);
  p();
  p(`A run with nothing new costs two small requests: a probe for the next root version (404) and \`timestamp.json\`. The snapshot, targets metadata and catalogue are not fetched again.`);
  p();
  if (real) {
    p(`## 5. Real data: ${real.title}`);
    p();
    p(`MDN's compiled browser-compat data (one JSON file), releases ${real.versions.map((v) => v.label).join(', ')}. Version 8.1.8 was never published, so 8.1.7 → 8.1.9 is one release.`);
    p();
    p(patchTable(real, results));
    p();
    const fullReal = real.full[`full-${fl}`]?.bytes;
    if (fullReal) p(`For scale, the compressed full file (compressFull level ${fl}) is ${fmtBytes(fullReal)}, so the publishing threshold is ${fmtInt(fullReal * results.worthRatio)} B. The full-size comparison is in section 2.`);
    p();
  }
  if (db) {
    p(`## 6. Binary database: ${db.title}`);
    p();
    p(`A real SQLite file, ${db.versions.map((v) => v.label).join(', ')}; each version changes rows all over the file (index pages in particular), as a vendor's database update would. Only the shipped level and the 1-hop are measured (at level 19 the chain table of a 66 MB file's patch alone would have 2^28 entries, 1 GiB, held twice through zstd-napi's loadDictionary, once as a prefix).`);
    p();
    p(patchTable(db, results));
    p();
    const fullDb = db.full[`full-${fl}`]?.bytes;
    if (fullDb) p(`For scale, the compressed full file (compressFull level ${fl}) is ${fmtBytes(fullDb)}. The full-size comparison, with the ultra levels 20–22, is in section 2.`);
    p();
  }
  p('## 7. `bulwark publish` memory');
  p();
  p(`\`node bin/bulwark.js publish --input DIR --out OUT --keys KEYS --json\` at the publisher's defaults (full files at level ${fl}, incrementals at level ${pl}), from an empty output directory each time, as a child process; peak RSS from \`/usr/bin/time -f %M\` (whole process: Node, the CLI's modules, the files, zstd). \`bulwark publish --help\` alone peaks at ${fmtMiB(median(results.publish.baselineRssKB))}. The database is published as a component id Bulwark does not know, declared in \`component.json\` as ${JSON.stringify(results.publish.sqlite.declaration)}, so it gets incrementals.`);
  p();
  p('| Input | Versions | Incrementals published (bytes) | Compressed full | Peak RSS | Target | Time |');
  p('|---|---|---|---:|---:|---|---:|');
  for (const [key, limit] of [['pattern', TARGETS.publishPatternBytes], ['sqlite', TARGETS.publishDbBytes]]) {
    const pub = results.publish[key];
    const s = publishSummary(pub, results.publish.baselineRssKB);
    const incs = s.last.incrementals.map((i) => fmtInt(i.bytes));
    const incCell = `${s.last.incrementals.length}${incs.length ? `: ${incs.length > 4 ? `${incs.slice(0, 2).join(', ')} … ${incs.slice(-2).join(', ')}` : incs.join(', ')}` : ''}${s.last.skipped.length ? `; ${s.last.skipped.length} not worth it` : ''}`;
    const peakCell = `${fmtPeak(s.peakKB)}${s.n > 1 ? ` (median of ${s.n}; ${fmtMiB(s.minKB)}–${fmtMiB(s.maxKB)})` : ''}`;
    const targetCell = `≤ ${limit >= 1e9 ? `${limit / 1e9} GB` : `${limit / 1e6} MB`} ${passFail(s.peakKB * 1024 <= limit)}`;
    const timeCell = `${fmtMs(s.ms)} (${s.parallel ? 'n=1, 2 jobs in parallel' : `median of ${s.n}`})`;
    const [first, last] = [pub.versions[0], pub.versions.at(-1)];
    const versionsCell = `${pub.versions.length}: ${first.label} (${(first.bytes / 1e6).toFixed(2)} MB) … ${last.label} (${(last.bytes / 1e6).toFixed(2)} MB)`;
    p(`| ${pub.title} | ${versionsCell} | ${incCell} | ${fmtBytes(s.last.compressedBytes)} | ${peakCell} | ${targetCell} | ${timeCell} |`);
  }
  p();
  p(`Why it is bounded: the publisher builds every file with one zstd context (\`Encoder\` in codec.ts) and resets it after each file, which frees zstd's copy of the base and the CDict at once (incrementals built with native/zstd_prefix.node have a context of their own, freed as each is made); the context's workspace is reused, and since it keeps the largest one it has needed, every incremental is built before the (larger-tabled) full files. zstd-napi frees a context only after a garbage collection and a turn of the event loop, so the earlier one-context-per-file publisher held every context of a publish at once. An incremental's peak is the base, the target and the match-finder tables once, the base referenced as a prefix: 2^(W−1) entries of 5 bytes, at most 2^26 (through loadDictionary, where native/zstd_prefix.node is not built: also the base's copy inside zstd, and the tables twice, in the CDict and the context's copy).`);
  p();
  p(findings(results));
  return out.join('\n') + '\n';
}

/** Notes on failed targets and on the other levels, from the numbers. */
function findings(results) {
  const pl = results.patchLevel;
  const fl = results.fullLevel;
  const syn = results.datasets.synthetic;
  const real = results.datasets.mdn;
  const db = results.datasets.sqlite;
  const dsList = [syn, real, db].filter(Boolean);
  /** The data sets every createPatch level and compressFull 16 ran on. */
  const codecList = [syn, real].filter(Boolean);
  const out = [];
  const p = (s = '') => out.push(s);
  const t1 = (ds, key) => ds.hops[1]?.tools[key];
  const r1 = (ds, key) => t1(ds, key).bytes / smallestCompetitor(ds.hops[1]).bytes;
  p('## Notes on failed targets');
  p();
  let failures = 0;
  for (const ds of dsList) {
    const w = worstRatio(ds, `patch-${pl}`);
    if (w > TARGETS.patchRatio) {
      failures++;
      const others = Object.keys(ds.hops[1].tools).map(parseKey).filter((k) => k && k.level !== pl).map((k) => `level ${k.level} ${fmtRatio(r1(ds, `patch-${k.level}`))}`);
      p(`- **Incrementals (target 1), ${ds.key}.** createPatch at level ${pl} is up to ${fmtRatio(w)} the smallest competitor. Other levels through the same createPatch, 1-hop: ${others.join(', ')}.`);
    }
  }
  for (const ds of dsList) {
    const r = ds.full[`full-${fl}`].bytes / ds.full.xz.bytes;
    if (r > TARGETS.fullRatio) {
      failures++;
      p(`- **Full file (target 2), ${ds.key}.** compressFull level ${fl} is ${fmtRatio(r)} the size of xz -9's output.`);
    }
  }
  for (const rb of results.rebuild) {
    const rows = rebuildSummary(rb);
    const s = rows.find((x) => x.variant === `patch-${pl}`);
    const plain = rows.find((x) => x.reference);
    if (!s.timePass) {
      failures++;
      p(`- **Rebuild time (target 3), ${rb.dataset}.** ${fmtRatio(s.timeRatio)} the time of \`xdelta3 -d\`. The ${fmtMs(s.totalMs)} break down into read ${fmtMs(s.readMs)}, applyPatch ${fmtMs(s.applyMs)} and writeVerified ${fmtMs(s.writeVerifyMs)} (durable write with fsync, SHA-256 alongside). xdelta3 does not fsync and checks only an Adler-32.` + (plain ? ` With the hash followed by a plain write, the total is ${fmtMs(plain.totalMs)} (${fmtRatio(plain.timeRatio)}).` : ''));
    }
    if (memoryTargetApplies(rb) && !s.memPass) {
      failures++;
      p(`- **Rebuild memory (target 3), ${rb.dataset}.** The total peak is ${fmtMiB(s.peakKB)}, ${s.memRatio.toFixed(2)}× the file. Base and result are whole Buffers (2× the file), the patch is in memory too, and Node itself takes ${fmtMiB(median(rb.baselineRssKB))} (\`node -e ''\`). Without Node's baseline the peak is ${fmtMiB(s.netKB)} (${s.netRatio.toFixed(2)}×).`);
    }
  }
  if (!failures) p('All targets pass for the shipped defaults.');
  // Passes within 5% of the limit: a noisy run or a slightly different file could flip them.
  const close = [];
  for (const ds of dsList) {
    const w = worstRatio(ds, `patch-${pl}`);
    if (w <= TARGETS.patchRatio && w > TARGETS.patchRatio * 0.95) close.push(`incrementals on ${ds.key} (worst ${fmtRatio(w)} against ${TARGETS.patchRatio}×; sizes are deterministic, so this margin is real but small)`);
  }
  for (const rb of results.rebuild) {
    const s = rebuildSummary(rb).find((x) => x.variant === `patch-${pl}`);
    const xd = rb.runs.xdelta3.map((r) => r.processMs);
    if (s.timePass && s.timeRatio > TARGETS.rebuildTime * 0.95) close.push(`rebuild time on ${rb.dataset} (${fmtRatio(s.timeRatio)} against ${TARGETS.rebuildTime}×; \`xdelta3 -d\` itself ranged ${fmtMs(Math.min(...xd))}–${fmtMs(Math.max(...xd))} over the ${xd.length} runs, so this can flip with load)`);
    if (memoryTargetApplies(rb) && s.memPass && s.memRatio > TARGETS.rebuildMemory * 0.95) close.push(`rebuild memory on ${rb.dataset} (total peak ${s.memRatio.toFixed(3)}× against < ${TARGETS.rebuildMemory}×; peak RSS is stable from run to run, but Node's ${fmtMiB(median(rb.baselineRssKB))} baseline is most of the margin, and a larger file or a Node upgrade could cross it; without the baseline it is ${s.netRatio.toFixed(2)}×)`);
  }
  if (close.length) {
    p();
    p(`**Close calls** (passing, but within 5% of the limit): ${close.join('; ')}.`);
  }
  const smallMem = results.rebuild.filter((rb) => !memoryTargetApplies(rb));
  for (const rb of smallMem) {
    const s = rebuildSummary(rb).find((x) => x.variant === `patch-${pl}`);
    p();
    p(`On ${rb.dataset} (${(rb.fileBytes / 2 ** 20).toFixed(1)} MiB), the rebuild's total peak is ${s.memRatio.toFixed(2)}× the file and ${s.netRatio.toFixed(2)}× without Node's ${fmtMiB(median(rb.baselineRssKB))} baseline. The memory target is stated for the ~${Math.round(results.synBytes / 1e6)} MB file; for smaller files Node's fixed baseline dominates the total.`);
  }
  p();
  p('## Levels compared (shipped createPatch)');
  p();
  p(`All rows go through the shipped \`createPatch\`; only the level differs. "Worst ratio" is the worst over the hops measured for that level (levels other than ${pl} and 9 were built on the 1-hop only).`);
  p();
  p('| Data | Level | 1-hop size | Worst ratio to smallest | Create time, 1-hop | Peak RSS |');
  p('|---|---|---:|---:|---:|---:|');
  for (const ds of dsList) {
    for (const key of sortKeys(Object.keys(ds.hops[1].tools).filter((k) => parseKey(k)))) {
      const r = ds.hops[1].tools[key];
      const w = worstRatio(ds, key);
      const hops = Object.values(ds.hops).filter((h) => h.tools[key]).length;
      const name = parseKey(key).level === pl ? `**${parseKey(key).level} (default)**` : String(parseKey(key).level);
      p(`| ${ds.key} | ${name} | ${fmtBytes(r.bytes)} | ${fmtRatio(w)} ${mark(w <= TARGETS.patchRatio)} (${hops} hop${hops > 1 ? 's' : ''}) | ${timeCell(r)} | ${fmtMiB(r.maxRssKB)} |`);
    }
  }
  p();
  const def = t1(syn, `patch-${pl}`);
  p(`- Per release, the publisher builds up to ${INCREMENTAL_HISTORY} incrementals for each component (\`INCREMENTAL_HISTORY\`). At level ${pl} that is about ${fmtMs(INCREMENTAL_HISTORY * median(def.ms))} for the ~${Math.round(results.synBytes / 1e6)} MB pattern` + (t1(syn, 'patch-19') ? `; at level 19 about ${fmtMs(INCREMENTAL_HISTORY * median(t1(syn, 'patch-19').ms))}, going by the single run above.` : '.'));
  for (const l of [16, 19]) {
    if (!codecList.every((ds) => t1(ds, `patch-${l}`))) continue;
    const s = t1(syn, `patch-${l}`);
    p(`- Level ${l}: ${codecList.map((ds) => `${ds.key} ${fmtBytes(t1(ds, `patch-${l}`).bytes)} (${fmtRatio(r1(ds, `patch-${l}`))})`).join(', ')}. On ${syn.key} that is ${(((def.bytes - s.bytes) / def.bytes) * 100).toFixed(1)}% smaller than level ${pl}, at ${(median(s.ms) / median(def.ms)).toFixed(0)}× the time (n=1, in parallel with another job) and ${fmtMiB(s.maxRssKB)} peak RSS.`);
  }
  p(`- Memory of one level-${pl} build: peak RSS ${fmtMiB(def.maxRssKB)} for the ~${Math.round(results.synBytes / 1e6)} MB pattern (this process holds base, target and output; the match-finder tables, 2^(W−1) entries capped at 2^26, are held by both the CDict and the compression context). A whole publish is in section 7.`);
  const others = (ds) => Object.keys(ds.full).map(parseKey).filter((k) => k && k.level !== fl).sort((a, b) => a.level - b.level);
  p(`- Full files: compressFull level ${fl} ${dsList.map((ds) => `${ds.key} ${fmtRatio(ds.full[`full-${fl}`].bytes / ds.full.xz.bytes)} of xz -9 in ${timeCell(ds.full[`full-${fl}`])}`).join(', ')}. Other levels: ${dsList.map((ds) => `${ds.key} ${others(ds).map((k) => `${k.level} ${fmtRatio(ds.full[`full-${k.level}`].bytes / ds.full.xz.bytes)} (${fmtMiB(ds.full[`full-${k.level}`].maxRssKB)}, ${timeCell(ds.full[`full-${k.level}`])})`).join(', ')}`).join('; ')}. A full file is compressed once per release and the publisher caches it. The publisher builds the full files after every incremental, each in a zstd context freed as it is made (native/zstd_prefix.c; where that addon is missing, one context that keeps the largest workspace it has needed), so a level's compression memory adds to what the publisher holds then rather than staying under the incrementals (section 7).`);
  return out.join('\n');
}

// ----------------------------------------------------------------------------------------------------

async function main() {
  let results;
  if (process.argv.includes('--report-only')) {
    results = JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8'));
  } else {
    fs.mkdirSync(WORK, { recursive: true });
    results = await runAll();
    fs.writeFileSync(RESULTS_FILE, JSON.stringify(results, null, 1));
    log(`raw results in ${path.relative(ROOT, RESULTS_FILE)}`);
  }
  const markdown = report(results);
  if (WRITE_REPORT) {
    fs.mkdirSync(path.dirname(REPORT_FILE), { recursive: true });
    // The server benchmark (scripts/bench-server.js) keeps its own section in the same report.
    const previous = fs.existsSync(REPORT_FILE) ? fs.readFileSync(REPORT_FILE, 'utf8') : '';
    // The other scripts' sections (scripts/bench-server.js, scripts/bench-limits.js) and the notes written
    // by hand between the notes markers are kept as they are.
    const kept = ['server-bench', 'limits-bench', 'notes'].map((name) => new RegExp(`<!-- ${name}:start -->[\\s\\S]*<!-- ${name}:end -->\\n?`).exec(previous)?.[0] ?? '').filter(Boolean);
    fs.writeFileSync(REPORT_FILE, [markdown.trimEnd(), ...kept.map((k) => k.trimEnd())].join('\n\n') + '\n');
    log(`wrote ${path.relative(ROOT, REPORT_FILE)}`);
  } else {
    const preview = path.join(BENCH_DIR, 'benchmarks.preview.md');
    fs.writeFileSync(preview, markdown);
    log(`quick run: report written to ${path.relative(ROOT, preview)} (docs/benchmarks.md untouched)`);
  }
  log(`done in ${fmtMs(nowMs() - started)}`);
}

await main();
