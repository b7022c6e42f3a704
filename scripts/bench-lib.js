// Shared helpers for the benchmark (scripts/bench.js): timing, child processes, statistics, formatting.
// The codec itself is always the shipped one (out/main/engine/codec.js); nothing here re-implements it.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH_DIR = path.join(ROOT, '.bench');
export const TIME = '/usr/bin/time';

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function sha256File(file) {
  return sha256(fs.readFileSync(file));
}

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** 12,345,678 */
export function fmtInt(n) {
  return Math.round(n).toLocaleString('en-US');
}

/** Bytes as "12,345 B (12.3 KB)" style: exact count plus a readable unit. */
export function fmtBytes(n) {
  const unit = n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} KB` : `${n} B`;
  return `${fmtInt(n)} (${unit})`;
}

export function fmtMs(ms) {
  if (ms >= 300_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
}

export function fmtRatio(r) {
  return `${r.toFixed(r >= 10 ? 1 : 3)}×`;
}

export function fmtMiB(kb) {
  return `${(kb / 1024).toFixed(0)} MiB`;
}

export const passFail = (ok) => (ok ? '**PASS**' : '**FAIL**');

/** Run a command under /usr/bin/time (for peak RSS) and time it with hrtime; synchronous. */
export function runSync(cmd, args, { stdout } = {}) {
  const timeFile = path.join(os.tmpdir(), `bench-time-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const outFd = stdout ? fs.openSync(stdout, 'w') : 'pipe';
  const started = nowMs();
  const result = spawnSync(TIME, ['-o', timeFile, '-f', '%e %M', cmd, ...args], {
    stdio: ['ignore', outFd, 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
    encoding: 'utf8',
  });
  const ms = nowMs() - started;
  if (typeof outFd === 'number') fs.closeSync(outFd);
  return finish(cmd, args, result.status, result.stdout ?? '', result.stderr ?? '', ms, timeFile);
}

/**
 * The processes a bench started and that still run, ended by PID (SIGTERM: nginx's master then stops its
 * workers, a server its own children) when the bench exits for any reason: done, failed, or stopped with
 * Ctrl+C or SIGTERM. Never a process the bench did not start.
 */
const started = new Set();
export function track(child) {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}
function endStarted() {
  for (const child of started) {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  started.clear();
}
process.once('exit', endStarted);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    process.stderr.write(`${signal}: ending the ${started.size} process(es) this bench started\n`);
    process.exit(130);
  });
}

/** Same as runSync, asynchronous (for the pool of slow jobs). */
export function runAsync(cmd, args, { stdout } = {}) {
  const timeFile = path.join(os.tmpdir(), `bench-time-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  return new Promise((resolve) => {
    const outFd = stdout ? fs.openSync(stdout, 'w') : 'pipe';
    const started = nowMs();
    const child = track(spawn(TIME, ['-o', timeFile, '-f', '%e %M', cmd, ...args], { stdio: ['ignore', outFd, 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const ms = nowMs() - started;
      if (typeof outFd === 'number') fs.closeSync(outFd);
      resolve(finish(cmd, args, code, out, err, ms, timeFile));
    });
  });
}

function finish(cmd, args, code, stdout, stderr, ms, timeFile) {
  let maxRssKB = NaN;
  try {
    const lines = fs.readFileSync(timeFile, 'utf8').trim().split('\n');
    maxRssKB = Number(lines.at(-1).split(' ')[1]);
    fs.rmSync(timeFile, { force: true });
  } catch {
    // /usr/bin/time did not write its report (the command could not start)
  }
  return { cmd, args, code, stdout, stderr, ms, maxRssKB };
}

export function checkOk(result, what) {
  if (result.code !== 0) {
    throw new Error(`${what ?? result.cmd} failed (exit ${result.code}): ${result.cmd} ${result.args.join(' ')}\n${result.stderr.slice(-2000)}`);
  }
  return result;
}

/**
 * Run a node helper (scripts/bench-*.js) that prints one JSON line; retried a few times because the
 * native zstd-napi binding or out/main may be rebuilt by a concurrent `npm run build`/electron-builder.
 */
export async function runNodeJson(script, args, { sync = false, retries = 4 } = {}) {
  for (let attempt = 0; ; attempt++) {
    const nodeArgs = ['--expose-gc', path.join(ROOT, 'scripts', script), ...args];
    const result = sync ? runSync(process.execPath, nodeArgs) : await runAsync(process.execPath, nodeArgs);
    if (result.code === 0) {
      const json = JSON.parse(result.stdout.trim().split('\n').at(-1));
      return { ...json, processMs: result.ms, processMaxRssKB: result.maxRssKB };
    }
    const transient = /Cannot find module|binding\.node|SyntaxError|ERR_MODULE_NOT_FOUND/.test(result.stderr);
    if (!transient || attempt >= retries) checkOk(result, script);
    process.stderr.write(`  (retrying ${script} after a transient failure: ${result.stderr.split('\n').find((l) => /Error/.test(l)) ?? ''})\n`);
    await new Promise((r) => setTimeout(r, 20_000));
  }
}

/** Run async jobs with at most `concurrency` in flight; results in input order. */
export async function pool(jobs, concurrency, onDone) {
  const results = new Array(jobs.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const index = next++;
      results[index] = await jobs[index].run();
      done++;
      onDone?.(jobs[index], results[index], done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
  return results;
}
