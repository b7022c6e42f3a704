// A process killed at any moment of an update leaves the previous version active and the store
// usable; the next run completes the job.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { sha256 } from '../src-main/engine/files.js';
import { Settings } from '../src-main/engine/settings.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

const CHILD = path.join(import.meta.dirname, 'helpers', 'crash-update.mjs');
const COMPONENTS = ['virus-pattern', 'scan-engine'];
let source: TestSource;
let baseline: string;
let trustedRoot: string;
const oldVersions: Record<string, number> = {};
const newVersions: Record<string, number> = {};

function runChild(args: string[]): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, args, { encoding: 'utf8', timeout: 30_000 }, (_error, stdout, stderr) =>
      resolve({ status: child.exitCode, signal: child.signalCode, stdout, stderr }),
    );
  });
}

function engineFor(dataDir: string): Engine {
  return new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot } });
}

/** Every component's active record points at a file on disk whose hash matches the record. */
function assertStoreConsistent(dataDir: string): Record<string, number> {
  const active: Record<string, number> = {};
  for (const id of COMPONENTS) {
    const record = JSON.parse(fs.readFileSync(path.join(dataDir, 'store', id, 'active.json'), 'utf8')) as { version: number; sha256: string };
    const file = path.join(dataDir, 'store', id, String(record.version));
    expect(sha256(fs.readFileSync(file))).toBe(record.sha256);
    active[id] = record.version;
  }
  return active;
}

beforeAll(async () => {
  source = await new TestSource().start();
  trustedRoot = path.join(source.dir, 'imported-root.json');
  source.addPattern('virus-pattern', { bytes: 400_000 });
  source.writeVersion('scan-engine', 1, Buffer.alloc(100_000, 1));
  source.publish();
  fs.copyFileSync(source.rootFile, trustedRoot);
  baseline = tempDir('bulwark-crash-base-');
  expect((await engineFor(baseline).runOnce()).result).toBe('ok');
  Object.assign(oldVersions, assertStoreConsistent(baseline));
  newVersions['virus-pattern'] = source.addPattern('virus-pattern');
  source.writeVersion('scan-engine', 2, Buffer.alloc(100_000, 2));
  newVersions['scan-engine'] = 2;
  source.publish();
});

afterAll(async () => {
  await source.stop();
  fs.rmSync(source.dir, { recursive: true, force: true });
  fs.rmSync(baseline, { recursive: true, force: true });
});

describe('killed mid-install', () => {
  it('at every file-system commit point: previous or new version active, store usable, next run completes', async () => {
    let killedAt = 0;
    for (const when of ['before', 'after'] as const) {
      for (let nth = 1; nth < 60; nth++) {
        const dataDir = tempDir('bulwark-crash-');
        try {
          fs.cpSync(baseline, dataDir, { recursive: true });
          // Asynchronously: the source's server runs in this process and must keep answering.
          const child = await runChild([CHILD, dataDir, source.url, trustedRoot, String(nth), when]);
          if (child.signal !== 'SIGKILL') {
            // The run finished before reaching the nth commit point: every point has been covered.
            expect(child.status, `child (${when} ${nth}) failed: ${child.signal} ${child.stderr}`).toBe(0);
            expect(JSON.parse(child.stdout.trim()).result).toBe('ok');
            break;
          }
          killedAt++;
          const active = assertStoreConsistent(dataDir);
          for (const id of COMPONENTS) expect([oldVersions[id], newVersions[id]]).toContain(active[id]);
          const run = await engineFor(dataDir).runOnce();
          expect(run.result, `after a kill ${when} commit point ${nth}: ${run.error}`).toBe('ok');
          expect(assertStoreConsistent(dataDir)).toEqual(newVersions);
          expect(fs.readdirSync(path.join(dataDir, 'store', 'virus-pattern')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
        } finally {
          fs.rmSync(dataDir, { recursive: true, force: true });
        }
      }
    }
    // The run has many commit points (metadata, store files, active records, history): all were hit.
    expect(killedAt).toBeGreaterThan(10);
  }, 300_000);

  it('killed by SIGKILL mid-download: previous version active, next run completes', async () => {
    const dataDir = tempDir('bulwark-crash-');
    fs.cpSync(baseline, dataDir, { recursive: true });
    let sawDownload!: () => void;
    const downloading = new Promise<void>((resolve) => (sawDownload = resolve));
    // Stall the full file of the scan engine halfway through its body.
    source.intercept = (req, res) => {
      if (!req.url?.endsWith('.2.zst')) return false;
      const file = source.targetFile('scan-engine/2.zst');
      const bytes = fs.readFileSync(file);
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(bytes.subarray(0, bytes.length >> 1));
      sawDownload();
      return true;
    };
    const cli = path.join(import.meta.dirname, '..', 'bin', 'bulwark.js');
    const child = spawn(process.execPath, [cli, 'update', '--data', dataDir, '--source', source.url, '--trusted-root', trustedRoot], { stdio: 'ignore' });
    try {
      await downloading;
      const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
      process.kill(child.pid!, 'SIGKILL');
      expect(await exited).toBe('SIGKILL');
      source.intercept = undefined;
      const active = assertStoreConsistent(dataDir);
      expect(active['scan-engine']).toBe(oldVersions['scan-engine']);
      const run = await engineFor(dataDir).runOnce();
      expect(run.result).toBe('ok');
      expect(assertStoreConsistent(dataDir)).toEqual(newVersions);
    } finally {
      source.intercept = undefined;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
