// The harness of the fault suite (test/faults.test.ts): one signed source on 127.0.0.1 and a
// baseline data directory where the previous version of every component is installed, its
// settings filled in and two runs in its history. The source has since published a new version of
// two of the three components. Each scenario copies the baseline, does its damage, runs Bulwark
// (the CLI as a child process, or the engine in this process) and hands back an Outcome, which
// assertOutcome() checks the same three ways every time:
//   1. every component is still at its previous version and its file matches the signed hash — or,
//      where the scenario says the fault is survivable, took a verified way to the new version and
//      matches the published file;
//   2. nothing is lost: settings, earlier history records, every version file the store held;
//   3. the messages (run record, exit code, status reminders, HTTP answers) say what happened.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { expect } from 'vitest';
import type { Catalogue } from '../../src-main/engine/catalogue.js';
import { Engine, type EngineOptions } from '../../src-main/engine/engine.js';
import { sha256 } from '../../src-main/engine/files.js';
import { History, type RunRecord } from '../../src-main/engine/history.js';
import { Settings } from '../../src-main/engine/settings.js';
import { BIN, ROOT, type CliResult } from './cli.js';
import { tempDir, TestSource } from './fixtures.js';
import { readPublished } from './sign.js';

/** The components of the baseline, in catalogue order. */
export const COMPONENTS = ['outbreak-defense-policy', 'scan-engine', 'virus-pattern'] as const;
export type ComponentId = (typeof COMPONENTS)[number];

/** A version as the signed catalogue gives it. */
export interface Signed {
  version: number;
  sha256: string;
  length: number;
}

/** What a data directory held before Bulwark ran (taken once the fault is in place). */
export interface DirSnapshot {
  settings: unknown;
  /** Each earlier run, by when it started. */
  history: string[];
  /** Every version file in the store, as "id/version". */
  storeFiles: string[];
}

/** A message Bulwark gave, where it gave it, and the words it must contain. */
export interface Said {
  where: string;
  text: string | undefined;
  says: RegExp;
}

export interface Outcome {
  dataDir: string;
  before: DirSnapshot;
  /** Components that took a verified way to the new version; every other one must be at its previous version. */
  updated?: readonly ComponentId[];
  said: Said[];
  /** Replaces the settings check where the scenario damaged the settings on purpose (and checks what became of them). */
  settings?: (now: unknown) => void;
  /** Replaces the history check where the scenario damaged the history on purpose. */
  history?: (now: RunRecord[]) => void;
}

/** The runs recorded in a data directory, newest first (torn lines skipped, as Bulwark reads them). */
export function runsOf(dataDir: string): RunRecord[] {
  return new History(dataDir).recent(10_000);
}

export function lastRun(dataDir: string): RunRecord {
  const run = runsOf(dataDir)[0];
  if (!run) throw new Error(`no run recorded in ${dataDir}`);
  return run;
}

function readSettingsFile(dataDir: string): unknown {
  const file = path.join(dataDir, 'settings.json');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  } catch {
    return fs.existsSync(file) ? `(unreadable) ${fs.statSync(file).isFile() ? fs.readFileSync(file, 'utf8') : 'not a file'}` : undefined;
  }
}

function storeFiles(dataDir: string): string[] {
  const store = path.join(dataDir, 'store');
  if (!fs.existsSync(store)) return [];
  return fs
    .readdirSync(store)
    .flatMap((id) => (fs.statSync(path.join(store, id)).isDirectory() ? fs.readdirSync(path.join(store, id)).filter((n) => /^\d+$/.test(n)).map((n) => `${id}/${n}`) : []))
    .sort();
}

export function snapshot(dataDir: string): DirSnapshot {
  return { settings: readSettingsFile(dataDir), history: runsOf(dataDir).map((r) => r.startedAt), storeFiles: storeFiles(dataDir) };
}

/** Every file under `dir`, relative, sorted. */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** A response that starts and never finishes, or never starts, kept to be cut at the end of the scenario. */
const hanging = new Set<http.ServerResponse>();

export function neverAnswer(res: http.ServerResponse): void {
  hanging.add(res);
}

/** A 200 answer that never ends (until the client goes away). */
export function endless(res: http.ServerResponse): void {
  hanging.add(res);
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  const chunk = Buffer.alloc(64 * 1024, 0x7b);
  const pump = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  pump();
}

/** Serve `file` honouring a `Range: bytes=N-` request (206), as a CDN does. */
export function serveWithRange(req: http.IncomingMessage, res: http.ServerResponse, bytes: Buffer): void {
  const from = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1];
  if (from !== undefined && Number(from) < bytes.length) {
    const start = Number(from);
    res.writeHead(206, { 'content-length': bytes.length - start, 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` }).end(bytes.subarray(start));
    return;
  }
  if (from !== undefined) {
    // As nginx answers a range that starts at the end (RFC 9110 §15.5.17): nothing to send, and the length.
    const page = Buffer.from('<html><body>416 Requested Range Not Satisfiable</body></html>');
    res.writeHead(416, { 'content-range': `bytes */${bytes.length}`, 'content-length': page.length, 'content-type': 'text/html' }).end(page);
    return;
  }
  res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
}

export class FaultLab {
  readonly dir = tempDir('bulwark-faults-');
  readonly source = new TestSource(path.join(this.dir, 'source'));
  /** The data directory every scenario starts from: the previous versions installed, never run against itself. */
  readonly baseline = path.join(this.dir, 'baseline');
  /** The source's root.json, imported once (as an operator would). */
  readonly trustedRoot = path.join(this.dir, 'imported-root.json');
  /** Installed in the baseline, as the signed catalogue then gave them. */
  previous = {} as Record<ComponentId, Signed>;
  /** Published since. */
  latest = {} as Record<ComponentId, Signed>;
  /** The source's first timestamp.json: validly signed, but older than the one the baseline trusts. */
  oldTimestamp!: Buffer;
  private readonly children = new Set<ChildProcess>();
  private scenarioCount = 0;

  async start(): Promise<this> {
    const { source } = this;
    await source.start();
    source.addPattern('virus-pattern', { bytes: 200_000 }); // 171
    source.writeVersion('scan-engine', 1, crypto.randomBytes(150_000));
    source.writeVersion('outbreak-defense-policy', 3, '{"policy":3,"rules":["block-smb-v1"]}\n');
    source.publish();
    this.oldTimestamp = fs.readFileSync(path.join(source.out, 'metadata', 'timestamp.json'));
    fs.copyFileSync(source.rootFile, this.trustedRoot);
    this.previous = this.catalogue();

    const settings = Settings.open(this.baseline);
    settings.set('source', { url: source.url, trustedRoot: this.trustedRoot });
    settings.set('schedule', { kind: 'interval', every: 15, unit: 'minutes' });
    settings.set('agents', ['agent-1.example', '10.0.0.7']);
    settings.set('notifications', { updateFailed: true, componentsInstalled: false });
    settings.set('proxy', { enabled: false, host: 'proxy.example', port: 3128, username: 'ops', password: '' });
    const install = await new Engine({ dataDir: this.baseline, settings }).runOnce('install');
    if (install.result !== 'ok') throw new Error(`baseline install failed: ${install.error}`);
    source.publish(); // re-signed, nothing new: the baseline now trusts timestamp version 2
    const check = await new Engine({ dataDir: this.baseline, settings }).runOnce('schedule');
    if (check.result !== 'ok') throw new Error(`baseline check failed: ${check.error}`);

    source.addPattern('virus-pattern'); // 173, with the incremental v_171.173
    source.writeVersion('scan-engine', 2, crypto.randomBytes(150_000));
    source.publish();
    this.latest = this.catalogue();
    source.requests.length = 0;
    return this;
  }

  /** The signed versions of the source's current catalogue. */
  catalogue(): Record<ComponentId, Signed> {
    const catalogue = this.publishedCatalogue();
    return Object.fromEntries(catalogue.components.map((c) => [c.id, { version: c.latest, sha256: c.full.sha256, length: c.full.length }])) as Record<ComponentId, Signed>;
  }

  publishedCatalogue(): Catalogue {
    return JSON.parse(readPublished(this.source.out).catalogue.toString('utf8')) as Catalogue;
  }

  /** A fresh copy of the baseline for one scenario. */
  dataDir(name: string): string {
    const dir = path.join(this.dir, 'data', `${++this.scenarioCount}-${name}`);
    fs.cpSync(this.baseline, dir, { recursive: true });
    return dir;
  }

  /** A scratch directory inside the lab. */
  scratch(name: string): string {
    const dir = path.join(this.dir, 'scratch', `${++this.scenarioCount}-${name}`);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** An engine in this process on `dataDir`, with the source its settings name. */
  engine(dataDir: string, options: Partial<EngineOptions> = {}): Engine {
    return new Engine({ dataDir, settings: Settings.open(dataDir), ...options });
  }

  /** The published bytes of a target, e.g. "scan-engine/2.zst". */
  target(name: string): Buffer {
    return fs.readFileSync(this.source.targetFile(name));
  }

  /** An intercept that serves the files under `dir` (metadata/, targets/) in front of the source. */
  serveFrom(dir: string): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
    return (req, res) => {
      const pathname = new URL(req.url ?? '/', 'http://x').pathname;
      const file = path.join(dir, pathname);
      if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) return false;
      const bytes = fs.readFileSync(file);
      res.writeHead(200, { 'content-length': bytes.length, 'content-type': 'application/json' }).end(bytes);
      return true;
    };
  }

  /** `bulwark ARGS` as a child process (the compiled CLI), with extra environment. */
  cli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
    const child = this.spawn(args, options.env);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`bulwark ${args.join(' ')} did not finish within ${options.timeoutMs ?? 30_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      }, options.timeoutMs ?? 30_000);
      child.once('error', reject);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  }

  /** A `bulwark` child left running (serve, or an update to be killed). */
  spawn(args: string[], env: Record<string, string> = {}): ChildProcess {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Any other child process a scenario starts, to be killed (by PID) if it is still running at the end. */
  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** `bulwark status --data DIR --json`, parsed, with its exit code and stderr. */
  async status(dataDir: string): Promise<{ code: number | null; stderr: string; json: StatusJson }> {
    const result = await this.cli(['status', '--data', dataDir, '--json']);
    return { code: result.code, stderr: result.stderr, json: JSON.parse(result.stdout || '{}') as StatusJson };
  }

  /** After each scenario: the source honest again, hanging answers cut, its children gone. */
  reset(): void {
    this.source.intercept = undefined;
    this.source.requests.length = 0;
    for (const res of hanging) res.destroy();
    hanging.clear();
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    this.children.clear();
  }

  async stop(): Promise<void> {
    this.reset();
    await this.source.stop();
    // A child killed a moment ago may still be finishing a write.
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

export interface StatusJson {
  state: { type: string };
  components: { id: string; version: number; sha256: string }[];
  lastUpdate: { result: string; error?: string } | null;
  cooldownUntil: string | null;
  problems: { id: string; problem: string; message: string }[];
  reminders: { id: string; severity: string; title: string; body: string; action: string; detail?: string }[];
}

/** The reminders of a status, one line each, for matching. */
export function reminderText(status: StatusJson): string {
  return status.reminders.map((r) => `[${r.id}] ${r.title}. ${r.body} ${r.action}`).join('\n');
}

/** The three assertions of every scenario. */
export function assertOutcome(lab: FaultLab, outcome: Outcome): void {
  const { dataDir, before } = outcome;
  const updated = new Set(outcome.updated ?? []);

  // 1. The previous version is still active and matches its signed hash; or the new one came a verified way.
  for (const id of COMPONENTS) {
    const expected = updated.has(id) ? lab.latest[id] : lab.previous[id];
    const record = JSON.parse(fs.readFileSync(path.join(dataDir, 'store', id, 'active.json'), 'utf8')) as { version: number; sha256: string };
    expect(record.version, `${id}: the ${updated.has(id) ? 'new' : 'previous'} version is active`).toBe(expected.version);
    expect(record.sha256, `${id}: active.json records the signed hash`).toBe(expected.sha256);
    const file = fs.readFileSync(path.join(dataDir, 'store', id, String(expected.version)));
    expect({ length: file.length, sha256: sha256(file) }, `${id} ${expected.version}: the active file matches its signed length and hash`).toEqual({ length: expected.length, sha256: expected.sha256 });
  }

  // 2. Nothing is lost.
  const settings = readSettingsFile(dataDir);
  if (outcome.settings) outcome.settings(settings);
  else expect(settings, 'settings.json is as it was').toEqual(before.settings);
  const runs = runsOf(dataDir);
  if (outcome.history) outcome.history(runs);
  else expect(runs.map((r) => r.startedAt), 'every earlier run is still in the history').toEqual(expect.arrayContaining(before.history));
  const files = storeFiles(dataDir);
  expect(files, 'every version the store held is still there').toEqual(expect.arrayContaining(before.storeFiles));

  // 3. The messages say what happened, in words.
  expect(outcome.said.length, 'the scenario checks at least one message').toBeGreaterThan(0);
  for (const said of outcome.said) expect(said.text, `${said.where} says what happened`).toMatch(said.says);
}

/** What a child prints (stdout and stderr together), and a wait for a line of it. */
export function outputOf(child: ChildProcess): { text(): string; waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> } {
  let text = '';
  const waiters = new Set<() => void>();
  const poke = () => {
    for (const waiter of waiters) waiter();
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => ((text += d), poke()));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => ((text += d), poke()));
  child.once('exit', poke);
  return {
    text: () => text,
    waitFor: (pattern, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => settle(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${text}`))), timeoutMs);
        const settle = (done: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          done();
        };
        const check = () => {
          const match = pattern.exec(text);
          if (match) settle(() => resolve(match));
          else if (child.exitCode !== null || child.signalCode !== null) settle(() => reject(new Error(`exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; output:\n${text}`)));
        };
        waiters.add(check);
        check();
      }),
  };
}
