#!/usr/bin/env node
// `npm run bench:server` (part of `npm run bench`): Bulwark as a server under load, on loopback, with
// the shipped build (out/), and nginx serving the same files in the same run for comparison. Writes its
// section of docs/benchmarks.md (between the server-bench markers) and .bench/server/results.json.
//
//   1. Fan-out: 500, 2,000 and 5,000 simulated agents, each holding its notification stream and, when
//      the release is announced, making an agent's real request sequence (root check, timestamp,
//      snapshot, targets, catalogue, index, policy, incremental, report). Time until all are current,
//      requests per second, latencies, the server's CPU seconds and peak RSS. Then the same file
//      requests, at the same concurrency, against Bulwark and against nginx, from the Node load
//      generator and from wrk: the throughput ratio. `bulwark serve` runs on Node 22 (from the registry
//      when this is Node 20), which lets it answer on every core.
//   2. Memory: `bulwark serve` idle, and across 100 updates; with 5,000 notification streams held.
//   3. Registry: reports from 100,000 agents over HTTP, and `bulwark agents list --json` with them.
//   4. The demo's peak RSS (source, server and two agents) over a minute with a publish every 20 s.
// Machine-dependent: the load generator shares the two cores with the server it measures.
// `--only registry` runs part 3 alone (its data stays in the bench directory, to time `agents list` by hand).
// `--only fanout` runs part 1 alone and prints its results without touching the report; BENCH_THREADS
// sets the server's --agent-threads (default: the server's own, one per core).
// `--only large` runs the large and small files against nginx alone (its own server, file threads from the
// start) and rewrites that section of docs/benchmarks.md.
// `--only memory` runs part 2 alone (BENCH_UPDATES updates, default 100) and prints its RSS series
// without touching the report: for chasing growth.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Pool, WebSocket } from 'undici';
import sqlite3 from 'sqlite3';
import { BENCH_DIR, fmtInt, fmtMs, median, nowMs, ROOT, track } from './bench-lib.js';
import { PatternSeries } from '../out/main/demo/patterns.js';
import { listen, staticHandler } from '../out/main/demo/static-server.js';
import { publish } from '../out/main/publisher/publisher.js';
import { requestUpdate } from '../out/main/engine/control.js';

const AGENTS = (process.env.BENCH_AGENTS ?? '500,2000,5000').split(',').map(Number);
const REGISTRY_AGENTS = Number(process.env.BENCH_REGISTRY_AGENTS ?? 100_000);
const WORK = path.join(BENCH_DIR, 'server');
const REPORT_FILE = path.join(ROOT, 'docs', 'benchmarks.md');
const BULWARK = path.join(ROOT, 'bin', 'bulwark.js');
const CONNECTIONS = 256; // the load generator's connections per server
const HOLD_SETTLE_MS = 10_000; // from the last stream opened to the first RSS sample with the streams held
const TARGETS = { throughputRatio: 0.5, rssWithStreamsMB: 200, reportsPerSecond: 2000, listSeconds: 2, idleMB: 100, demoPeakMB: 300 };

/**
 * The Node that runs `bulwark serve` for the fan-out and throughput: one with SO_REUSEPORT (22.12+ on
 * Linux), so the server answers on every core as it does in the desktop app; on Node 20 it would serve
 * on its main thread alone. Taken from the npm registry's `node` package when this Node lacks it. The
 * other parts run on this Node, as before; the idle memory is measured on both.
 */
const THREADED_NODE = (() => {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major > 22 || (major === 22 && minor >= 12)) return process.execPath;
  const found = spawnSync('npx', ['-y', '-p', 'node@22', '--', 'node', '-p', 'process.execPath'], { encoding: 'utf8' });
  if (found.status !== 0) throw new Error(`cannot get Node 22 from the registry for the server: ${found.stderr}`);
  return found.stdout.trim();
})();
const THREADED_NODE_VERSION = spawnSync(THREADED_NODE, ['-v'], { encoding: 'utf8' }).stdout.trim();

const started = nowMs();
const log = (line) => process.stderr.write(`[${((nowMs() - started) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Processes and their costs
// ---------------------------------------------------------------------------------------------

function rssKb(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The RSS of a process and its children (nginx's workers, the demo's own). */
function treeRssKb(pid) {
  let total = rssKb(pid);
  for (const child of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (Number(fs.readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) total += treeRssKb(Number(child));
    } catch {
      // gone
    }
  }
  return total;
}

/** CPU seconds (user + system) of a process and its children so far. */
function cpuSeconds(pid) {
  let total = 0;
  const visit = (p) => {
    try {
      const fields = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / 100;
      for (const child of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
        try {
          if (Number(fs.readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === p) visit(Number(child));
        } catch {
          // gone
        }
      }
    } catch {
      // gone
    }
  };
  visit(pid);
  return total;
}

/** Sample a process tree's RSS every 50 ms until stopped; returns the peak in KB. */
function peakSampler(pid) {
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, treeRssKb(pid))), 50);
  return () => {
    clearInterval(timer);
    return Math.max(peak, treeRssKb(pid));
  };
}

function startProcess(args, logFile, nodeFlags = [], node = process.execPath) {
  const out = fs.openSync(logFile, 'a');
  const child = track(spawn(node, [...nodeFlags, BULWARK, ...args], { stdio: ['ignore', out, out] }));
  fs.closeSync(out);
  return child;
}

async function waitForLine(file, pattern, timeoutMs = 60_000) {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const match = pattern.exec(text);
    if (match) return match;
    if (nowMs() > deadline) throw new Error(`no ${pattern} in ${file} within ${timeoutMs} ms:\n${text.slice(-2000)}`);
    await sleep(100);
  }
}

async function stop(child) {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  const deadline = nowMs() + 15_000;
  while (child.exitCode === null && nowMs() < deadline) await sleep(50);
  if (child.exitCode === null) child.kill('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// The source and the server
// ---------------------------------------------------------------------------------------------

function percentile(values, p) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The built-in components besides the virus pattern (a source with `everyComponent` serves them too). */
const LARGE_COMPONENT = 'scan-engine';
const HUGE_COMPONENT = 'outbreak-defense-policy';
/** The agents' listen backlog (AGENT_LISTEN_BACKLOG in agent-http.ts), given to nginx too: like for like. */
const LISTEN_BACKLOG = 4096;
const LARGE_TARGETS = { ratio2MB: 0.8, ratio4kB: 0.9, p99Times: 3, rssDuringMB: 250, rssAfterTimes: 1.2 };
const OTHER_COMPONENTS = ['smart-scan-agent-pattern', 'damage-cleanup-template', 'intellitrap-exception-pattern', 'spyware-pattern', 'scan-engine', 'outbreak-defense-policy'];

class Source {
  constructor(dir, { everyComponent = false, huge = false } = {}) {
    this.dir = dir;
    // As many records removed as added: the file stays about 1 MB, so memory that grows across updates
    // is the server's, not a bigger file's (with the realistic churn it reaches 2.8 MB in 100 versions).
    this.series = new PatternSeries('virus-pattern', 171, 1_000_000, 42, { addedMin: 0.005, addedMax: 0.005, removed: 0.005, changed: 5 });
    fs.mkdirSync(path.join(dir, 'input', 'virus-pattern'), { recursive: true });
    this.write(this.series.content());
    // A 2 MB full-only file (incompressible, so its relayed full file is 2 MB too): the large file agents fetch.
    fs.mkdirSync(path.join(dir, 'input', LARGE_COMPONENT), { recursive: true });
    fs.writeFileSync(path.join(dir, 'input', LARGE_COMPONENT, '100'), crypto.randomBytes(2_000_000));
    // A 20 MB full-only file, over what a thread keeps in memory (8 MiB): held open and read per answer.
    if (huge) {
      fs.mkdirSync(path.join(dir, 'input', HUGE_COMPONENT), { recursive: true });
      fs.writeFileSync(path.join(dir, 'input', HUGE_COMPONENT, '100'), crypto.randomBytes(20_000_000));
    }
    for (const id of everyComponent ? OTHER_COMPONENTS.filter((c) => c !== LARGE_COMPONENT) : []) {
      fs.mkdirSync(path.join(dir, 'input', id), { recursive: true });
      fs.writeFileSync(path.join(dir, 'input', id, '100'), crypto.randomBytes(16_384));
    }
  }
  write(content) {
    fs.writeFileSync(path.join(this.dir, 'input', 'virus-pattern', String(this.series.version)), content);
  }
  next() {
    this.write(this.series.next());
    this.publish();
    return this.series.version;
  }
  publish() {
    publish({ input: path.join(this.dir, 'input'), out: path.join(this.dir, 'out'), keys: path.join(this.dir, 'keys'), level: 9 });
  }
  async serve() {
    this.server = await listen(staticHandler(path.join(this.dir, 'out')), '127.0.0.1', 0);
    return this.server.url;
  }
}

async function freePort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startServer(dataDir, source, extra = [], nodeFlags = [], node = process.execPath) {
  const port = await freePort();
  const logFile = path.join(WORK, `serve-${path.basename(dataDir)}.log`);
  fs.rmSync(logFile, { force: true });
  const child = startProcess(
    ['serve', '--data', dataDir, '--source', source.url, '--trusted-root', path.join(source.dir, 'out', 'root.json'), '--schedule', 'daily 03:00',
      '--agents-listen', `127.0.0.1:${port}`, '--agent-spread', '0', '--agent-poll', '3600', '--rollout', 'off', ...(process.env.BENCH_THREADS ? ['--agent-threads', process.env.BENCH_THREADS] : []), ...extra],
    logFile,
    nodeFlags,
    node,
  );
  await waitForLine(logFile, /next update at /);
  return { child, url: `http://127.0.0.1:${port}/`, dataDir, logFile };
}

// ---------------------------------------------------------------------------------------------
// Simulated agents
// ---------------------------------------------------------------------------------------------

async function inBatches(items, concurrency, work) {
  const results = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i], i);
      }
    }),
  );
  return results;
}

async function enroll(server, count) {
  // The join string is the last line; a simulated agent sends its token part (TOKEN:sha256:HEX).
  const join = spawnSync(process.execPath, [BULWARK, 'agents', 'token', '--data', server.dataDir], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1).trim();
  const token = join.split(':')[0];
  const pool = new Pool(server.url, { connections: 32 });
  const credentials = await inBatches([...Array(count).keys()], 32, async (i) => {
    const { body, statusCode } = await pool.request({ method: 'POST', path: '/agents/v1/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, name: `sim-${i}`, hostname: `sim-${i}` }) });
    const json = await body.json();
    if (statusCode !== 200) throw new Error(`enrollment ${statusCode}: ${JSON.stringify(json)}`);
    return json.credential;
  });
  await pool.close();
  return credentials;
}

/** The paths an agent asks for after the release: read from the server's own release, as a client would resolve them. */
function agentPaths(dataDir) {
  const dist = path.join(dataDir, 'distribution');
  const release = JSON.parse(fs.readFileSync(path.join(dist, 'release.json'), 'utf8'));
  const roots = fs.readdirSync(path.join(dist, 'metadata')).flatMap((n) => /^(\d+)\.root\.json$/.exec(n)?.[1] ?? []).map(Number);
  const targets = JSON.parse(fs.readFileSync(path.join(dist, 'metadata', `${release.index.snapshotVersion}.snapshot.json`), 'utf8')).signed.meta['targets.json'].version;
  const incremental = release.relayed.find((r) => /\.v_\d+\.\d+$/.test(r));
  const catalogue = release.relayed.find((r) => r.endsWith('.catalogue.json'));
  return {
    files: [
      `/metadata/timestamp.json`,
      `/metadata/${release.index.snapshotVersion}.snapshot.json`,
      `/metadata/${targets}.targets.json`,
      `/targets/${catalogue}`,
      `/agents/v1/index.json`,
      `/targets/${incremental}`,
    ],
    rootCheck: `/metadata/${Math.max(...roots) + 1}.root.json`,
  };
}

/** Hold `credentials.length` notification streams; resolves once each has said hello. */
async function openStreams(server, credentials, onRelease) {
  const url = new URL('agents/v1/events', server.url);
  const streams = [];
  await inBatches(credentials, 64, (credential, i) =>
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent: false, headers: { authorization: `Bearer ${credential}`, accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`stream ${res.statusCode}`));
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          buffer += chunk;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (event.startsWith('event: hello')) resolve();
            else if (event.startsWith('event: release')) onRelease(i);
          }
        });
      });
      req.on('error', reject);
      streams.push(req);
    }),
  );
  return { close: () => streams.forEach((req) => req.destroy()) };
}

/** One agent's requests after a release, timed; `withAgentCalls` adds the policy and the report. */
async function agentSequence(pool, paths, credential, latencies, withAgentCalls) {
  const get = async (p, expect = 200, headers = {}) => {
    const t = nowMs();
    const { statusCode, body } = await pool.request({ method: 'GET', path: p, headers });
    await body.dump();
    latencies.push(nowMs() - t);
    if (statusCode !== expect) throw new Error(`${p}: HTTP ${statusCode}`);
  };
  await get(paths.rootCheck, 404);
  for (const p of paths.files.slice(0, 5)) await get(p);
  if (withAgentCalls) await get('/agents/v1/policy', 200, { authorization: `Bearer ${credential}` });
  await get(paths.files[5]);
  if (withAgentCalls) {
    const t = nowMs();
    const { statusCode, body } = await pool.request({
      method: 'POST',
      path: '/agents/v1/report',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'sim', hostname: 'sim', addresses: [{ address: '127.0.0.1', family: 4 }], components: [{ id: 'virus-pattern', version: 1 }], lastRun: { result: 'ok', at: new Date().toISOString(), bytes: 1 }, phase: 'idle', pollSeconds: 3600 }),
    });
    await body.dump();
    latencies.push(nowMs() - t);
    if (statusCode !== 200) throw new Error(`report: HTTP ${statusCode}`);
  }
}

/** n agents announced a release at once: the time until all are done, and what it cost the server. */
async function fanOut(server, source, credentials, n) {
  const releases = [];
  let allHeard;
  const heard = new Promise((resolve) => (allHeard = resolve));
  const streams = await openStreams(server, credentials.slice(0, n), (i) => {
    releases.push({ i, at: nowMs() });
    if (releases.length === n) allHeard();
  });
  // Held, not being opened: the RSS of the streams once the reconnect storm's garbage had its usual
  // time to go (V8's memory reducer acts after several seconds of quiet), as the median of 5 samples.
  const openedPeakKb = rssKb(server.child.pid);
  await sleep(HOLD_SETTLE_MS);
  const samples = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssKb(server.child.pid));
    await sleep(1000);
  }
  const rssWithStreams = median(samples);
  source.next();
  const pool = new Pool(server.url, { connections: CONNECTIONS, pipelining: 1 });
  const latencies = [];
  const cpu0 = cpuSeconds(server.child.pid);
  const peak = peakSampler(server.child.pid);
  const update = requestUpdate(server.dataDir);
  await heard;
  const first = Math.min(...releases.map((r) => r.at));
  const paths = agentPaths(server.dataDir);
  const t0 = nowMs();
  let failures = 0;
  await Promise.all(releases.map(({ i }) => agentSequence(pool, paths, credentials[i], latencies, true).catch(() => failures++)));
  const done = nowMs();
  await update;
  const peakKb = peak();
  const cpu = cpuSeconds(server.child.pid) - cpu0;
  await pool.close();
  streams.close();
  await sleep(500);
  return { n, allCurrentMs: done - first, requests: latencies.length, rps: latencies.length / ((done - t0) / 1000), p50: percentile(latencies, 50), p99: percentile(latencies, 99), cpu, peakMB: peakKb / 1024, rssWithStreamsMB: rssWithStreams / 1024, rssJustOpenedMB: openedPeakKb / 1024, failures };
}

/** The same file requests from n agents at once, against any server: requests per second. */
async function filesOnly(url, paths, n) {
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 });
  const latencies = [];
  // Warm up (first reads from disk, connections opened).
  await inBatches([...Array(Math.min(n, 256)).keys()], 256, () => agentSequence(pool, paths, '', [], false));
  const t0 = nowMs();
  await Promise.all([...Array(n).keys()].map(() => agentSequence(pool, paths, '', latencies, false)));
  const seconds = (nowMs() - t0) / 1000;
  await pool.close();
  return { rps: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), seconds };
}

/** nginx serving a server's release directory, and its timestamp and index as files (what Bulwark answers from memory). */
async function startNginx(dataDir) {
  const root = path.join(dataDir, 'distribution');
  const dir = path.join(WORK, 'nginx');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off; worker_processes ${os.cpus().length}; user root; pid ${dir}/nginx.pid; error_log ${dir}/logs/error.log;
events { worker_connections 16384; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; open_file_cache max=1000;
  client_body_temp_path ${dir}/cb; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  server { listen 127.0.0.1:${port} backlog=${LISTEN_BACKLOG}; root ${root};
    location = /metadata/timestamp.json { alias ${dir}/timestamp.json; }
    location = /agents/v1/index.json { alias ${dir}/index.json; } } }\n`,
  );
  const child = track(spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' }));
  await sleep(500);
  /** Give nginx the current release's timestamp and index, as files. */
  const refresh = () => {
    const release = JSON.parse(fs.readFileSync(path.join(root, 'release.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'timestamp.json'), release.timestamp);
    fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify(release.index));
  };
  return { child, url: `http://127.0.0.1:${port}/`, refresh };
}

/**
 * wrk (C, keep-alive, its own threads) against a server, cycling through the file paths: a client
 * that can saturate nginx, which the Node load generator above cannot on two shared cores.
 */
function wrkRun(url, paths, connections, seconds = 10) {
  const script = path.join(WORK, 'paths.lua');
  fs.writeFileSync(
    script,
    `local paths = { ${paths.map((p) => JSON.stringify(p)).join(', ')} }\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format("GET", paths[(i % #paths) + 1])\nend\n` +
      `done = function(summary, latency, requests)\n  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\nend\n`,
  );
  const before = tcpCounters();
  const run = spawnSync('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, url], { encoding: 'utf8' });
  const after = tcpCounters();
  const [overflows, retransmits, pressureMs] = after.map((n, i) => n - before[i]);
  if (run.error) throw new Error(`cannot run wrk (Debian's wrk package): ${run.error.message}`);
  const m = /BENCH (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(run.stdout);
  if (!m) throw new Error(`wrk: ${run.stderr || run.stdout}`);
  const [requests, durationUs, p50Us, p99Us, errors] = m.slice(1).map(Number);
  return { rps: requests / (durationUs / 1e6), p50: p50Us / 1000, p99: p99Us / 1000, errors, overflows, retransmits, pressureMs };
}

const WRK_RUNS = 3;
const WRK_SECONDS = 5;
/** The large and small files alone: their ratios move by ±0.1 from run to run on this shared machine, so more pairs. */
const LARGE_WRK_RUNS = 5;

/** wrk against Bulwark and nginx in turn, WRK_RUNS times each: the run with the median rate of each (a shared machine's noise hits both alike). */
function wrkAlternating(bulwarkUrl, nginxUrl, paths, connections, times = WRK_RUNS) {
  const runs = { bulwark: [], nginx: [] };
  for (let i = 0; i < times; i++) {
    runs.bulwark.push(wrkRun(bulwarkUrl, paths, connections, WRK_SECONDS));
    runs.nginx.push(wrkRun(nginxUrl, paths, connections, WRK_SECONDS));
  }
  const medianRun = (list) => [...list].sort((a, b) => a.rps - b.rps)[Math.floor(list.length / 2)];
  const errors = (list) => list.reduce((sum, r) => sum + r.errors, 0);
  return { bulwark: { ...medianRun(runs.bulwark), errors: errors(runs.bulwark) }, nginx: { ...medianRun(runs.nginx), errors: errors(runs.nginx) } };
}

/**
 * A 2 MB relayed file and the ~4 kB incremental, each alone, at 500 and 2,000 connections, wrk against
 * Bulwark and nginx in turn; the server's RSS (its threads included) at its peak during the floods, and
 * 10 s after the last, against its RSS before them.
 */
/** Why the server's file threads served without the native front (native/agent_front.c), as its log says; undefined: they had it. */
function withoutFront(server) {
  return /file threads serve without the native front \((.*)\)/.exec(fs.readFileSync(server.logFile, 'utf8'))?.[1];
}

async function largeFilesBench(server, nginx) {
  const release = JSON.parse(fs.readFileSync(path.join(server.dataDir, 'distribution', 'release.json'), 'utf8'));
  const files = {
    '2 MB': `/targets/${release.relayed.find((r) => r.startsWith(`${LARGE_COMPONENT}/`) && /\.(zst|xz)$/.test(r))}`,
    '4 kB': `/targets/${release.relayed.find((r) => /\.v_\d+\.\d+$/.test(r))}`,
  };
  const huge = release.relayed.find((r) => r.startsWith(`${HUGE_COMPONENT}/`) && /\.(zst|xz)$/.test(r));
  if (huge) files['20 MB'] = `/targets/${huge}`;
  const bytes = Object.fromEntries(Object.entries(files).map(([k, url]) => [k, fs.statSync(path.join(server.dataDir, 'distribution', url)).size]));
  await sleep(3000);
  const idleMB = treeRssKb(server.child.pid) / 1024;
  const runs = [];
  const peak = peakSampler(server.child.pid);
  for (const [name, url] of Object.entries(files)) {
    // The 20 MB file at 100 connections: at 500 (10 GB asked at once, ~1 GB/s here) a fair server
    // completes no answer within a 5 s run, and nginx only those it favoured.
    for (const n of name === '20 MB' ? [100] : [500, 2000]) {
      wrkRun(server.url, [url], n, 2); // each thread reads it once and keeps it
      const { bulwark, nginx: x } = wrkAlternating(server.url, nginx.url, [url], n, LARGE_WRK_RUNS);
      runs.push({ name, bytes: bytes[name], n, bulwark, nginx: x });
      log(`  ${name} file, ${n} connections: wrk ${fmtInt(bulwark.rps)} vs nginx ${fmtInt(x.rps)} (${(bulwark.rps / x.rps).toFixed(2)}x); p99 ${fmtMs(bulwark.p99)} vs ${fmtMs(x.p99)}`);
    }
  }
  const peakMB = peak() / 1024;
  await sleep(10_000);
  const afterMB = treeRssKb(server.child.pid) / 1024;
  return { idleMB, peakMB, afterMB, runs };
}

// ---------------------------------------------------------------------------------------------
// Registry, memory, demo
// ---------------------------------------------------------------------------------------------

/**
 * The server's JavaScript heap in use right after a full garbage collection (MB), through the
 * inspector it was started with: RSS alone moves with when the collector last ran.
 */
async function heapAfterGc(logFile) {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(fs.readFileSync(logFile, 'utf8'))?.[1];
  if (!url) throw new Error(`no inspector address in ${logFile}`);
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot reach the server's inspector at ${url}`));
  });
  let id = 0;
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const mine = ++id;
      socket.addEventListener('message', function answer(event) {
        const message = JSON.parse(String(event.data));
        if (message.id !== mine) return;
        socket.removeEventListener('message', answer);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result);
      });
      socket.send(JSON.stringify({ id: mine, method, params }));
    });
  await call('HeapProfiler.collectGarbage');
  const { result } = await call('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true });
  socket.close();
  return result.value / 1024 / 1024;
}

async function registryBench() {
  // A fleet as it stands most days: every agent holds every built-in component at the served version.
  const source = new Source(path.join(WORK, 'registry-source'), { everyComponent: true });
  source.publish();
  source.url = await source.serve();
  const server = await startServer(path.join(WORK, 'registry'), source);
  await enroll(server, 1); // the registry makes its credential key at the first enrollment
  const release = JSON.parse(fs.readFileSync(path.join(server.dataDir, 'distribution', 'release.json'), 'utf8'));
  const held = release.index.components.map(({ id, version }) => ({ id, version, method: 'incremental' }));
  if (held.length !== OTHER_COMPONENTS.length + 1) throw new Error(`the registry's release serves ${held.length} components, not every built-in one`);
  // 100,000 agents written straight into the registry (setting up is not what is measured)...
  await stop(server.child);
  const db = new sqlite3.Database(path.join(server.dataDir, 'agents.sqlite'));
  const run = (sql, params = []) => new Promise((resolve, reject) => db.run(sql, params, (error) => (error ? reject(error) : resolve())));
  // Credentials as the registry makes them: an HMAC of the id under its key.
  const key = await new Promise((resolve, reject) => db.get(`SELECT value FROM meta WHERE key = 'credential_key'`, (error, row) => (error ? reject(error) : resolve(Buffer.from(row.value, 'base64')))));
  const credentials = [];
  await run('BEGIN');
  const now = Date.now();
  for (let i = 0; i < REGISTRY_AGENTS; i++) {
    const id = crypto.randomUUID();
    const secret = crypto.createHmac('sha256', key).update(id).digest('base64url');
    credentials.push({ credential: `${id}.${secret}`, name: `fleet-${i}` });
    await run(`INSERT INTO agents (id, secret_hash, name, hostname, enrolled_at, last_seen, address, poll_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [id, crypto.createHash('sha256').update(secret).digest('hex'), `fleet-${i}`, `fleet-${i}`, now, now, '127.0.0.1', 3600]);
  }
  await run('COMMIT');
  await new Promise((resolve) => db.close(resolve));
  // ...then each reports once, over HTTP, as agents do.
  // With the inspector on loopback, so that the heap can be measured after a full collection.
  const restarted = await startServer(server.dataDir, source, [], ['--inspect=127.0.0.1:0']);
  const pool = new Pool(restarted.url, { connections: 64 });
  const lastRun = { result: 'ok', at: new Date().toISOString(), bytes: 4000 };
  const t0 = nowMs();
  let failures = 0;
  const reportAll = (some) =>
    inBatches(some, 64, async ({ credential, name }) => {
      const report = JSON.stringify({ name, hostname: `${name}.example`, addresses: [{ address: '10.0.0.1', family: 4 }], components: held, lastRun, phase: 'idle', pollSeconds: 3600 });
      const { statusCode, body } = await pool.request({ method: 'POST', path: '/agents/v1/report', headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body: report });
      await body.dump();
      if (statusCode !== 200) failures++;
    });
  // RSS once half the fleet has reported and once all of it has: the server keeps counts, not agents,
  // so the second half must not cost what the first did.
  const half = Math.floor(credentials.length / 2);
  await reportAll(credentials.slice(0, half));
  const rssHalf = rssKb(restarted.child.pid) / 1024;
  const heapHalf = await heapAfterGc(restarted.logFile);
  await reportAll(credentials.slice(half));
  const reportsPerSecond = REGISTRY_AGENTS / ((nowMs() - t0) / 1000);
  await pool.close();
  const rssAfter = rssKb(restarted.child.pid) / 1024;
  const heapAfter = await heapAfterGc(restarted.logFile);
  // Listed into a file, as `bulwark agents list --json > agents.json` does (reading it through a pipe
  // would time this script's reading as well).
  const listTimes = [];
  const listFile = path.join(WORK, 'agents.json');
  for (let i = 0; i < 3; i++) {
    const fd = fs.openSync(listFile, 'w');
    const t = nowMs();
    const result = spawnSync(process.execPath, [BULWARK, 'agents', 'list', '--data', server.dataDir, '--json'], { stdio: ['ignore', fd, 'pipe'] });
    listTimes.push(nowMs() - t);
    fs.closeSync(fd);
    if (result.status !== 0) throw new Error(`agents list failed: ${result.stderr}`);
    if (i === 0 && JSON.parse(fs.readFileSync(listFile, 'utf8')).agents.length < REGISTRY_AGENTS) throw new Error('agents list did not list every agent');
  }
  fs.rmSync(listFile);
  await stop(restarted.child);
  await source.server.close();
  return { agents: REGISTRY_AGENTS, components: held.length, reportsPerSecond, failures, listMs: median(listTimes), rssHalfMB: rssHalf, rssAfterMB: rssAfter, heapHalfMB: heapHalf, heapAfterMB: heapAfter };
}

async function memoryBench(source, { node = process.execPath, idleOnly = false } = {}) {
  const server = await startServer(path.join(WORK, idleOnly ? 'memory-idle' : 'memory'), source, [], [], node);
  const idle = [];
  for (let i = 0; i < 10; i++) {
    await sleep(1000);
    idle.push(rssKb(server.child.pid) / 1024);
  }
  if (idleOnly) {
    await stop(server.child);
    return { idleMB: median(idle) };
  }
  const after = [];
  const updates = Number(process.env.BENCH_UPDATES ?? 100);
  for (let i = 0; i < updates; i++) {
    if (i % 10 === 0) log(`memory: update ${i + 1} of ${updates}, RSS ${(rssKb(server.child.pid) / 1024).toFixed(1)} MB`);
    source.next();
    const record = await requestUpdate(server.dataDir);
    if (record?.result !== 'ok') throw new Error(`update ${i + 1}: ${record?.error}`);
    after.push(rssKb(server.child.pid) / 1024);
  }
  await sleep(5000);
  const settled = rssKb(server.child.pid) / 1024;
  await stop(server.child);
  return { idleMB: median(idle), afterFirst10MB: median(after.slice(0, 10)), afterLast10MB: median(after.slice(-10)), maxMB: Math.max(...after), settledMB: settled };
}

async function demoBench() {
  const dir = path.join(WORK, 'demo');
  fs.rmSync(dir, { recursive: true, force: true });
  const logFile = path.join(WORK, 'demo.log');
  fs.rmSync(logFile, { force: true });
  const child = startProcess(['demo', '--dir', dir, '--every', '20'], logFile);
  const peak = peakSampler(child.pid);
  await sleep(60_000);
  const peakKb = peak();
  const published = (fs.readFileSync(logFile, 'utf8').match(/demo source published/g) ?? []).length;
  const agentUpdates = (fs.readFileSync(logFile, 'utf8').match(/\[demo-agent-\d\] (notification|schedule|startup|install|manual) update done/g) ?? []).length;
  await stop(child);
  return { peakMB: peakKb / 1024, published, agentUpdates };
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const mark = (ok) => (ok ? '✅' : '❌');

function report(results) {
  const lines = [];
  const p = (line = '') => lines.push(line);
  const { fanout, throughput, memory, registry, demo } = results;
  p('<!-- server-bench:start -->');
  p('## Server: agents, fan-out against nginx, memory, registry');
  p();
  p(`Measured by \`scripts/bench-server.js\` on ${results.machine}, ${results.date}, in one run of ${fmtMs(results.durationMs)}; \`bulwark serve\` ran on Node ${results.threadedNode} for the fan-out and the throughput (file threads need 22.12+), on the Node above for the rest. Everything on loopback: the load generators share the two cores with the server they measure, so absolute rates are this machine's; ratios compare like with like in the same run.`);
  p();
  p('### Fan-out: a release announced to every agent at once (spread 0, the worst case)');
  p();
  p('Each simulated agent holds its notification stream; on the announcement it makes an agent\'s request sequence (root check, timestamp, snapshot, targets, catalogue, index, policy, the 3 kB incremental, report).');
  p();
  p('| Agents | All current after | Requests | Requests/s | p50 | p99 | Server CPU | Server peak RSS | RSS as the last stream opened | RSS with the streams held | Failed |');
  p('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of fanout) p(`| ${fmtInt(r.n)} | ${fmtMs(r.allCurrentMs)} | ${fmtInt(r.requests)} | ${fmtInt(r.rps)} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${r.cpu.toFixed(1)} s | ${r.peakMB.toFixed(0)} MB | ${r.rssJustOpenedMB ? `${r.rssJustOpenedMB.toFixed(0)} MB` : '–'} | ${r.rssWithStreamsMB.toFixed(0)} MB ${mark(r.rssWithStreamsMB <= TARGETS.rssWithStreamsMB)} | ${r.failures} |`);
  p();
  const alone = results.mainThreadAlone;
  p(`Goal: server RSS at most ${TARGETS.rssWithStreamsMB} MB with 5,000 notification streams held: measured from ${HOLD_SETTLE_MS / 1000} s after the last stream opened, the median of 5 samples a second apart (the streams are held for hours; the column before it is the moment the last one opened, with the garbage of opening them all at once). The server ran with ${results.threads ? `${results.threads} file thread${results.threads === 1 ? '' : 's'}, which took the agents' connections off the main thread as the 1,000th agent enrolled` : 'its main thread alone'}${alone?.rssWithStreamsMB ? `; the same server on its main thread alone (\`--agent-threads 0\`), restarted after the floods below, held ${fmtInt(alone.streams)} streams in ${alone.rssWithStreamsMB.toFixed(0)} MB ${mark(alone.rssWithStreamsMB <= TARGETS.rssWithStreamsMB)}` : ''}. A file thread costs about 12 MB of its own (a Node worker's start-up), and the connections' memory is shared out between the threads; each thread gives its grown heap back two seconds after a burst of requests ends.`);
  if (results.rssAfterFloodsMB) p(`After the throughput floods below (millions of requests over up to 5,000 connections), 5 s later, the server held ${results.rssAfterFloodsMB.toFixed(0)} MB.`);
  p();
  p('### Throughput against nginx (the same file requests, same concurrency, same run)');
  p();
  p(`The file part of the sequence (timestamp, snapshot, targets, catalogue, index, incremental), over as many connections as there are agents, against Bulwark's agent port and against nginx (as many worker processes as cores, sendfile, open_file_cache, the agents' listen backlog) serving the same release directory. Two load generators: the Node one above (undici, ${CONNECTIONS} connections, the agents' sequences, which also begin with the root check, a 404 by design) and wrk (C, 2 threads, cycling through the same paths; ${WRK_RUNS} runs of ${WRK_SECONDS} s against each server in turn, the median run of each shown), which can push nginx several times harder; the goal is judged on wrk. Both share the two cores with the server they measure. While nginx runs, Bulwark's threads are quiet and collect their garbage (after 2 s without a request), so each of Bulwark's runs starts from a collected heap, as a real fan-out does. Bulwark ran with ${results.threads ? `${results.threads} file thread${results.threads === 1 ? "" : "s"} (one per core) taking the connections, the main thread keeping the registry and the release` : 'its main thread alone'}; every thread answers the cached files on its fast path, before node:http parses the request ([agents.md](agents.md#at-scale)).`);
  p();
  p('| Agents (connections) | Load generator | Bulwark requests/s | nginx requests/s | Ratio to nginx | Bulwark p50 / p99 | nginx p50 / p99 |');
  p('|---:|---|---:|---:|---:|---:|---:|');
  const row = (n, generator, b, x, judged) => p(`| ${fmtInt(n)} | ${generator} | ${fmtInt(b.rps)} | ${fmtInt(x.rps)} | ${(b.rps / x.rps).toFixed(2)}× nginx${judged ? ` ${mark(b.rps / x.rps >= TARGETS.throughputRatio)}` : ''} | ${fmtMs(b.p50)} / ${fmtMs(b.p99)} | ${fmtMs(x.p50)} / ${fmtMs(x.p99)} |`);
  for (const t of throughput) {
    row(t.n, 'undici (Node)', t.bulwark, t.nginx, false);
    row(t.n, 'wrk', t.bulwarkWrk, t.nginxWrk, true);
  }
  if (alone) row(alone.n, 'wrk, Bulwark on its main thread alone (`--agent-threads 0`, as under Node 20)', alone.bulwarkWrk, alone.nginxWrk, false);
  p();
  const errors = throughput.reduce((sum, t) => sum + t.bulwarkWrk.errors + t.nginxWrk.errors, 0);
  p(`Goal: at least ${TARGETS.throughputRatio}× nginx's throughput. wrk counted ${fmtInt(errors)} errors (connection, read, write, timeout or a status other than 2xx/3xx) over all its runs.`);
  p();
  if (results.large) for (const line of largeSection(results.large, results)) p(line);
  p('### Memory of `bulwark serve`');
  p();
  p('| Measure | RSS | Goal |');
  p('|---|---:|---|');
  p(`| Idle after start (median of 10 s) | ${memory.idleMB.toFixed(0)} MB | ≤ ${TARGETS.idleMB} MB ${mark(memory.idleMB <= TARGETS.idleMB)} |`);
  if (results.idleThreadedNode !== undefined) p(`| The same on Node ${results.threadedNode} (for information: its own baseline is larger) | ${results.idleThreadedNode.toFixed(0)} MB | |`);
  p(`| After updates 1–10 (median) | ${memory.afterFirst10MB.toFixed(0)} MB | |`);
  p(`| After updates 91–100 (median) | ${memory.afterLast10MB.toFixed(0)} MB | |`);
  p(`| Highest after any of the 100 updates | ${memory.maxMB.toFixed(0)} MB | flat: within 10 MB of idle ${mark(memory.maxMB - memory.idleMB <= 10)} |`);
  p(`| 5 s after the last | ${memory.settledMB.toFixed(0)} MB | |`);
  p();
  p('Each of the 100 updates installs a new version (an incremental) of a 1 MB pattern that stays 1 MB (as many records removed as added), so growth would be the server\'s own. The first updates\' garbage collection takes RSS below idle; it climbs back to about idle and stays there (once measured over 300 updates with a pattern growing to 6.6 MB: at most 106 MB, back to 89–101 MB after collections; `--only memory` with BENCH_UPDATES=300 repeats it).');
  p();
  p(`### Registry: ${fmtInt(registry.agents)} agents`);
  p();
  p(`Each agent reports every built-in component (${registry.components}) at the served version, under its own name: the fleet as it stands most days.`);
  p();
  p('| Measure | Result | Goal |');
  p('|---|---:|---|');
  p(`| Reports over HTTP (one per agent, 64 at a time) | ${fmtInt(registry.reportsPerSecond)} per second (${registry.failures} failed) | ≥ ${fmtInt(TARGETS.reportsPerSecond)}/s ${mark(registry.reportsPerSecond >= TARGETS.reportsPerSecond)} |`);
  p(`| \`bulwark agents list --json\` with ${fmtInt(registry.agents)} agents (median of 3) | ${fmtMs(registry.listMs)} | < ${TARGETS.listSeconds} s ${mark(registry.listMs < TARGETS.listSeconds * 1000)} |`);
  const half = fmtInt(Math.floor(registry.agents / 2));
  p(`| Server heap after a full collection, once ${half} agents reported and once all ${fmtInt(registry.agents)} had | ${registry.heapHalfMB.toFixed(1)} MB → ${registry.heapAfterMB.toFixed(1)} MB | does not grow with agents (≤ +1 MB, i.e. under 20 bytes an agent) ${mark(registry.heapAfterMB - registry.heapHalfMB <= 1)} |`);
  p(`| Server RSS at the same two moments | ${registry.rssHalfMB.toFixed(0)} MB → ${registry.rssAfterMB.toFixed(0)} MB | (for orientation: RSS moves with when the collector last ran) |`);
  p();
  p('### The demo');
  p();
  p(`\`bulwark demo --every 20\` (the demo source, the server and its two agents in one process) for 60 s: peak RSS ${demo.peakMB.toFixed(0)} MB (goal ≤ ${TARGETS.demoPeakMB} MB ${mark(demo.peakMB <= TARGETS.demoPeakMB)}), over ${demo.published} publishes and ${demo.agentUpdates} agent updates.`);
  p('<!-- server-bench:end -->');
  return lines.join('\n') + '\n';
}

const tcpCells = (run) => [run.overflows, run.retransmits, run.pressureMs].map((n) => (n === undefined ? '?' : fmtInt(n))).join(' / ');

/** The section on one large and one small file against nginx (`results`: load averages; `alone`: its own run). */
function largeSection(l, results, alone = false) {
  const lines = [];
  const p = (line = '') => lines.push(line);
  const b = l.backlog ? ` Both listen with a backlog of ${l.backlog} (Bulwark's agents' port; nginx's set to the same); nginx runs ${l.threads} worker processes, Bulwark ${l.threads} file threads (the main thread keeps the registry and the release and takes no agent connection).` : '';
  p('### Large and small files against nginx');
  p();
  p(`One file alone, requested over and over by every connection (wrk, ${LARGE_WRK_RUNS} alternating runs of ${WRK_SECONDS} s against each server, the median run of each): a 2 MB relayed full file and the ~4 kB incremental${l.runs.some((r) => r.name === '20 MB') ? ', and a 20 MB one' : ''}. Bulwark's threads answer the first two from the file read once into their response cache${l.runs.some((r) => r.name === '20 MB') ? ' and the 20 MB one from the file they hold open (positioned reads as each socket drains)' : ''}, ${l.withoutFront ? `on the fast path (without the native front: ${l.withoutFront})` : `the first two on each thread's native front (native/agent_front.c: a head it has answered before is answered again without JavaScript, one read and one write per request)${l.runs.some((r) => r.name === '20 MB') ? ', the 20 MB one handed to the fast path' : ''}`}; nginx with sendfile.${b}${alone ? ` Measured on its own (\`node scripts/bench-server.js --only large\`, ${results.date}), Node ${results.threadedNode} for the server.` : ''}`);
  p();
  p('| File | Connections | Bulwark requests/s | nginx requests/s | Ratio (goal) | Bulwark p50 / p99 | nginx p50 / p99 | p99 ÷ nginx (goal at 2,000) |' + (l.runs[0]?.bulwark.overflows !== undefined ? ' Listen overflows / retransmitted segments / ms under TCP memory pressure (Bulwark; nginx) |' : ''));
  p('|---|---:|---:|---:|---:|---:|---:|---:|' + (l.runs[0]?.bulwark.overflows !== undefined ? '---:|' : ''));
  for (const r of l.runs) {
    const goal = r.name === '2 MB' ? LARGE_TARGETS.ratio2MB : r.name === '4 kB' ? LARGE_TARGETS.ratio4kB : undefined;
    const ratio = r.bulwark.rps / r.nginx.rps;
    const p99 = r.bulwark.p99 / r.nginx.p99;
    p(`| ${r.name} (${fmtInt(r.bytes)} B) | ${fmtInt(r.n)} | ${fmtInt(r.bulwark.rps)} | ${fmtInt(r.nginx.rps)} | ${ratio.toFixed(2)}×${goal === undefined ? ' (no goal; held open)' : ` (≥ ${goal}) ${ratio >= goal ? '**PASS**' : '**FAIL**'}`} | ${fmtMs(r.bulwark.p50)} / ${fmtMs(r.bulwark.p99)} | ${fmtMs(r.nginx.p50)} / ${fmtMs(r.nginx.p99)} | ${p99.toFixed(1)}×${r.n === 2000 ? ` (≤ ${LARGE_TARGETS.p99Times}) ${p99 <= LARGE_TARGETS.p99Times ? '**PASS**' : '**FAIL**'}` : ''} |` + (r.bulwark.overflows !== undefined ? ` ${tcpCells(r.bulwark)}; ${tcpCells(r.nginx)} |` : ''));
  }
  p();
  p(`Server RSS (its threads included): ${l.idleMB.toFixed(0)} MB before the floods, at most ${l.peakMB.toFixed(0)} MB during them (goal ≤ ${LARGE_TARGETS.rssDuringMB} MB: ${l.peakMB <= LARGE_TARGETS.rssDuringMB ? '**PASS**' : '**FAIL**'}), ${l.afterMB.toFixed(0)} MB 10 s after the last (${(l.afterMB / l.idleMB).toFixed(2)}× the RSS before; goal ≤ ${LARGE_TARGETS.rssAfterTimes}×: ${l.afterMB / l.idleMB <= LARGE_TARGETS.rssAfterTimes ? '**PASS**' : '**FAIL**'}). Load average ${results.loadStart ?? '?'} at the start of this script, ${results.loadEnd ?? '?'} at its end, on ${os.cpus().length} cores.`);
  if (l.overflowNote) p(l.overflowNote);
  p();
  return lines;
}

/**
 * The system's TCP counters so far (nstat; every process's, this machine is shared): listen-queue
 * overflows (handshakes dropped, retried by the client after 1 s, 3 s...), segments retransmitted and
 * the milliseconds spent under TCP memory pressure (tcp_mem reached: the kernel drops and prunes).
 */
const TCP_COUNTERS = ['TcpExtListenOverflows', 'TcpRetransSegs', 'TcpExtTCPMemoryPressuresChrono'];
function tcpCounters() {
  const run = spawnSync('nstat', ['-az', ...TCP_COUNTERS], { encoding: 'utf8' });
  return TCP_COUNTERS.map((name) => Number(new RegExp(`${name}\\s+(\\d+)`).exec(run.stdout ?? '')?.[1] ?? NaN));
}

function writeReport(section) {
  const previous = fs.existsSync(REPORT_FILE) ? fs.readFileSync(REPORT_FILE, 'utf8') : '# Benchmarks\n';
  const kept = previous.replace(/<!-- server-bench:start -->[\s\S]*<!-- server-bench:end -->\n?/, '').trimEnd();
  fs.writeFileSync(REPORT_FILE, `${kept}\n\n${section}`);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if (process.argv.includes('--report-only')) {
    writeReport(report(JSON.parse(fs.readFileSync(path.join(WORK, 'results.json'), 'utf8'))));
    return;
  }
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(WORK, { recursive: true });
  const loadStart = os.loadavg().map((l) => l.toFixed(2)).join(' / ');
  const source = new Source(path.join(WORK, 'source'), { huge: process.argv.includes('--only') && process.argv.includes('large') });
  source.next();
  source.url = await source.serve();
  if (process.argv.includes('--only') && process.argv.includes('memory')) {
    log(JSON.stringify(await memoryBench(source)));
    await source.server.close();
    return;
  }
  if (process.argv.includes('--only') && process.argv.includes('large')) {
    // Goal 5 of issue 23 alone: its own server (file threads from the start), nginx with as many workers.
    const server = await startServer(path.join(WORK, 'large'), source, process.env.BENCH_THREADS ? [] : ['--agent-threads', String(os.cpus().length)], [], THREADED_NODE);
    await waitForLine(path.join(server.logFile), /serving agents at \S+ \((\d+) file thread/, 20_000);
    // A second version, which the server takes as an incremental: the ~4 kB file it then relays.
    source.next();
    await requestUpdate(server.dataDir);
    const nginx = await startNginx(server.dataDir);
    const large = await largeFilesBench(server, nginx);
    large.withoutFront = withoutFront(server);
    large.backlog = LISTEN_BACKLOG;
    large.threads = Number(process.env.BENCH_THREADS ?? os.cpus().length);
    await stop(server.child);
    nginx.child.kill('SIGTERM');
    await source.server.close();
    const results = { date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC', threadedNode: THREADED_NODE_VERSION, loadStart, loadEnd: os.loadavg().map((l) => l.toFixed(2)).join(' / ') };
    fs.writeFileSync(path.join(WORK, 'large.json'), JSON.stringify({ ...results, large }, null, 1));
    const report = fs.readFileSync(REPORT_FILE, 'utf8');
    const from = report.indexOf('### Large and small files against nginx');
    const to = report.indexOf('\n### ', from + 1);
    if (from < 0 || to < 0) throw new Error('docs/benchmarks.md has no large-files section to replace: run the whole bench');
    fs.writeFileSync(REPORT_FILE, report.slice(0, from) + largeSection(large, results, true).join('\n') + report.slice(to));
    log(`wrote the large-files section of ${path.relative(ROOT, REPORT_FILE)}`);
    return;
  }
  if (process.argv.includes('--only') && process.argv.includes('registry')) {
    log(JSON.stringify(await registryBench()));
    await source.server.close();
    return;
  }

  log('fan-out: starting the server and enrolling agents');
  const server = await startServer(path.join(WORK, 'fanout'), source, [], [], THREADED_NODE);
  const credentials = await enroll(server, Math.max(...AGENTS));
  const fanout = [];
  const throughput = [];
  const nginx = await startNginx(server.dataDir);
  // With this many agents enrolled the file threads have joined (or the server says why not).
  const threads = Number((await waitForLine(server.logFile, /(?:serving agents at \S+ \(|agents enrolled: )(\d+) file thread|main thread alone\)/, 10_000))[1] ?? 0);
  // The fan-outs first, back to back, as a server sees its releases; then the synthetic floods.
  for (const n of AGENTS) {
    log(`fan-out: ${n} agents`);
    fanout.push(await fanOut(server, source, credentials, n));
  }
  const paths = agentPaths(server.dataDir);
  nginx.refresh();
  for (const n of AGENTS) {
    const bulwarkRun = await filesOnly(server.url, paths, n);
    const nginxRun = await filesOnly(nginx.url, paths, n);
    const { bulwark: bulwarkWrk, nginx: nginxWrk } = wrkAlternating(server.url, nginx.url, paths.files, n);
    throughput.push({ n, bulwark: bulwarkRun, nginx: nginxRun, bulwarkWrk, nginxWrk });
    log(`throughput, ${n} connections: undici ${fmtInt(bulwarkRun.rps)} vs nginx ${fmtInt(nginxRun.rps)} requests/s; wrk ${fmtInt(bulwarkWrk.rps)} vs nginx ${fmtInt(nginxWrk.rps)}`);
  }
  const large = await largeFilesBench(server, nginx);
  large.withoutFront = withoutFront(server);
  await sleep(5000);
  const rssAfterFloodsMB = rssKb(server.child.pid) / 1024;
  // For comparison: the main thread alone (what Node 20 gets), against the same nginx.
  await stop(server.child);
  const alone = await startServer(server.dataDir, source, ['--agent-threads', '0'], [], THREADED_NODE);
  const alonePaths = agentPaths(alone.dataDir);
  wrkRun(alone.url, alonePaths.files, AGENTS[0], 2); // warm its cache
  const aloneWrk = wrkAlternating(alone.url, nginx.url, alonePaths.files, AGENTS[0]);
  const mainThreadAlone = { n: AGENTS[0], bulwarkWrk: aloneWrk.bulwark, nginxWrk: aloneWrk.nginx };
  // And its memory with the most streams held, as in the fan-out.
  const most = Math.max(...AGENTS);
  const aloneStreams = await openStreams(alone, credentials.slice(0, most), () => {});
  await sleep(HOLD_SETTLE_MS);
  const aloneSamples = [];
  for (let i = 0; i < 5; i++) {
    aloneSamples.push(rssKb(alone.child.pid));
    await sleep(1000);
  }
  mainThreadAlone.streams = most;
  mainThreadAlone.rssWithStreamsMB = median(aloneSamples) / 1024;
  aloneStreams.close();
  log(`  main thread alone, wrk: ${fmtInt(mainThreadAlone.bulwarkWrk.rps)} vs nginx ${fmtInt(mainThreadAlone.nginxWrk.rps)}; RSS with ${most} streams ${mainThreadAlone.rssWithStreamsMB.toFixed(0)} MB`);
  await stop(alone.child);
  nginx.child.kill('SIGTERM');
  if (process.argv.includes('--only') && process.argv.includes('fanout')) {
    log(JSON.stringify({ fanout, throughput, large, mainThreadAlone, rssAfterFloodsMB }));
    await source.server.close();
    return;
  }

  log('registry: 100,000 agents');
  const registry = await registryBench();
  log('memory: serve idle and across 100 updates');
  const memory = await memoryBench(source);
  const idleThreadedNode = THREADED_NODE === process.execPath ? undefined : (await memoryBench(source, { node: THREADED_NODE, idleOnly: true })).idleMB;
  log('demo: 60 s');
  const demo = await demoBench();
  await source.server.close();

  const results = { date: new Date().toISOString().slice(0, 10), machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}`, threadedNode: THREADED_NODE_VERSION, idleThreadedNode, threads, durationMs: nowMs() - started, fanout, throughput, large, mainThreadAlone, rssAfterFloodsMB, memory, registry, demo, loadStart, loadEnd: os.loadavg().map((l) => l.toFixed(2)).join(' / ') };
  fs.writeFileSync(path.join(WORK, 'results.json'), JSON.stringify(results, null, 1));
  writeReport(report(results));
  log(`wrote ${path.relative(ROOT, REPORT_FILE)}`);
}

await main();
