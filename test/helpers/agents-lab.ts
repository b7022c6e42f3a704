// A server and its agents as real processes on loopback, for the agent tests: a TestSource (signed
// source served by this process), a `bulwark serve` child serving agents on 127.0.0.1, and
// `bulwark agent` children, each with its own data directory. Everything it starts is ended by PID
// in stop().
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { ComponentStore, type InstalledComponent } from '../../src-main/engine/store.js';
import type { RunRecord } from '../../src-main/engine/history.js';
import { requestUpdate } from '../../src-main/engine/control.js';
import { CliProcess, runCli, until } from './cli.js';
import { tempDir, TestSource } from './fixtures.js';

/** The last line of a command's output that is not blank (where `bulwark agents token` prints the join string). */
export function lastLine(text: string): string {
  return text.split('\n').filter((line) => line.trim()).at(-1)!.trim();
}

/** A daily schedule 11–12 hours away: no scheduled server update starts during a test. */
export function farSchedule(): string {
  return `daily ${String((new Date().getHours() + 12) % 24).padStart(2, '0')}:00`;
}

export class AgentsLab {
  readonly dir = tempDir('bulwark-agents-lab-');
  readonly serverDir = path.join(this.dir, 'server');
  source!: TestSource;
  server: CliProcess | undefined;
  /** Where agents connect (the server's first agent URL). */
  agentsUrl = '';
  /** The latest published version of the virus pattern (the series steps by 2: 171, 173, 175...). */
  latest = 0;
  private readonly processes: CliProcess[] = [];

  async start(options: { versions?: number; bytes?: number } = {}): Promise<this> {
    this.source = await new TestSource(path.join(this.dir, 'source')).start();
    for (let i = 0; i < (options.versions ?? 3); i++) this.latest = this.source.addPattern('virus-pattern', { bytes: options.bytes ?? 120_000 });
    this.source.publish();
    return this;
  }

  /** Start `bulwark serve` (agents on loopback; by default any free port) and wait for its start-up update. */
  async startServer(extra: string[] = [], listen = '127.0.0.1:0'): Promise<CliProcess> {
    const server = this.spawn([
      'serve', '--data', this.serverDir, '--source', this.source.url, '--trusted-root', this.source.rootFile,
      '--schedule', farSchedule(), '--agents-listen', listen, '--agent-spread', '0', '--agent-poll', '60', ...extra,
    ]);
    const [, url] = await server.waitFor(/serving agents at (http:\/\/\S+?)[,\s]/, 30_000);
    await server.waitFor(/next update at /, 60_000);
    this.server = server;
    this.agentsUrl = url!;
    return server;
  }

  spawn(args: string[]): CliProcess {
    const child = new CliProcess(args);
    this.processes.push(child);
    return child;
  }

  private readonly cachedTokens = new Map<string, string>();

  /** The join string of a ring (broad by default), as `bulwark agents token` prints it, alone on its last line (asked once a ring; `fresh` asks again). */
  async token(fresh = false, ring = 'broad'): Promise<string> {
    const cached = this.cachedTokens.get(ring);
    if (cached && !fresh) return cached;
    const result = await runCli(['agents', 'token', '--data', this.serverDir, '--ring', ring]);
    if (result.code !== 0) throw new Error(`agents token failed: ${result.stderr}`);
    const join = lastLine(result.stdout);
    this.cachedTokens.set(ring, join);
    return join;
  }

  /** Ask the running server to update now through its control channel (what `bulwark update` does), in this process. */
  async serverUpdate(): Promise<RunRecord> {
    const record = await requestUpdate(this.serverDir);
    if (!record) throw new Error('the server did not answer on its control channel');
    return record;
  }

  agentDir(name: string): string {
    return path.join(this.dir, 'agents', name);
  }

  /** Start `bulwark agent NAME` (enrolled with its ring's join string) and wait until it runs (enrolled, start-up update done). */
  async startAgent(name: string, extra: string[] = [], options: { token?: string; server?: string; wait?: boolean; ring?: string } = {}): Promise<CliProcess> {
    const agent = this.spawn(['agent', '--server', options.server ?? this.agentsUrl, '--token', options.token ?? (await this.token(false, options.ring)), '--data', this.agentDir(name), '--name', name, ...extra]);
    if (options.wait !== false) await agent.waitFor(/agent running in /, 60_000);
    return agent;
  }

  /** The active component of a data directory, read from its store. */
  active(dir: string, id = 'virus-pattern'): InstalledComponent | undefined {
    return fs.existsSync(path.join(dir, 'store')) ? new ComponentStore(dir).active(id) : undefined;
  }

  async waitForVersion(dir: string, version: number, timeoutMs = 60_000, id = 'virus-pattern'): Promise<InstalledComponent> {
    return until(() => {
      const active = this.active(dir, id);
      return active && active.version >= version ? active : undefined;
    }, timeoutMs, `${path.basename(dir)} to hold ${id} ${version}`);
  }

  /**
   * The recorded run that installed `version` of `id`, once it is recorded (active.json is written
   * before the run's record is appended, so a version can be held before its run is in the history).
   */
  async runThatInstalled(dir: string, version: number, timeoutMs = 30_000, id = 'virus-pattern'): Promise<RunRecord> {
    return until(
      () => this.history(dir).find((r) => r.components.some((c) => c.id === id && c.version === version && c.previousVersion !== version)),
      timeoutMs,
      `${path.basename(dir)}'s run that installed ${id} ${version} to be recorded`,
    );
  }

  /** The runs recorded in a data directory's history, oldest first. */
  history(dir: string): RunRecord[] {
    const file = path.join(dir, 'history.jsonl');
    if (!fs.existsSync(file)) return [];
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as RunRecord);
  }

  /** Publish `count` new versions of the virus pattern; returns the latest. */
  publish(count = 1): number {
    for (let i = 0; i < count; i++) this.latest = this.source.addPattern('virus-pattern');
    this.source.publish();
    return this.latest;
  }

  /** A new release upstream (publish), installed by the server, which announces it to its agents; its version. */
  async release(): Promise<number> {
    const version = this.publish();
    expect((await this.serverUpdate()).result).toBe('ok');
    return version;
  }

  /** `bulwark update --data DIR --json` (asks the running process, if any, to update now). */
  async update(dir = this.serverDir): Promise<{ code: number | null; json: { result: string; components: { method: string; version: number | null; reason: string; error?: string }[]; error?: string } }> {
    const result = await runCli(['update', '--data', dir, '--json'], 120_000);
    return { code: result.code, json: JSON.parse(result.stdout || '{}') };
  }

  async agents(): Promise<{ counts: Record<string, number>; agents: { name: string; state: string; components: { id: string; version: number }[] }[] }> {
    const result = await runCli(['agents', 'list', '--data', this.serverDir, '--json']);
    if (result.code !== 0) throw new Error(`agents list failed: ${result.stderr}`);
    return JSON.parse(result.stdout);
  }

  /** Call the server's console API (the server was started with --console): a snapshot, a page of agents... */
  async consoleCall<T>(method: string, params: unknown = null): Promise<T> {
    const [, url] = /^Console: (http:\/\/\S+)$/m.exec(this.server!.stdout) ?? [];
    if (!url) throw new Error('the server was not started with --console');
    const console = new URL(url);
    const response = await fetch(`${console.origin}/api/call/${method}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${console.searchParams.get('token')}`, 'content-type': 'application/json', 'x-bulwark-console': '1' },
      body: JSON.stringify(params),
    });
    if (!response.ok) throw new Error(`console ${method}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async stop(): Promise<void> {
    for (const child of this.processes) {
      if (child.running) await child.stop('SIGTERM', 10_000).catch(() => child.running && process.kill(child.pid, 'SIGKILL'));
    }
    await this.source?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
