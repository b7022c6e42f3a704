// `bulwark demo`: a complete installation on one machine. It generates pattern files for every
// component, publishes them as a signed update source served on 127.0.0.1, keeps publishing new
// versions, runs the server against that source with a one-minute schedule, and two agents against
// the server, so the log shows first a full install and then incremental updates as they happen,
// on the server and then on its agents.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, readEnrollment, serverAddress } from '../agent/agent.js';
import type { ConsoleListen } from '../server/listen.js';
import type { BulwarkServer } from '../server/server.js';
import { KNOWN_COMPONENTS } from '../engine/components.js';
import { describeError } from '../engine/errors.js';
import { publish } from '../publisher/publisher.js';
import { Settings } from '../engine/settings.js';
import { listen, staticHandler } from './static-server.js';
import { PatternSeries, prng } from './patterns.js';
import { DEMO_SIGNATURES, DemoSignatures, findClamd, startDemoClamd, type DemoClamd } from './clamav.js';

export interface DemoOptions {
  dir?: string;
  everySeconds: number;
  port: number;
  log: (line: string) => void;
  /** Also serve the browser console. */
  console?: ConsoleListen;
  /** Hosts the server until stopped (the CLI's `serve`), calling `started` once it runs and `stopping` before it stops. */
  serve: (
    dataDir: string,
    settings: Settings,
    options: { log: (line: string) => void; console?: ConsoleListen; started: (server: BulwarkServer) => Promise<void>; stopping: () => Promise<void> },
  ) => Promise<number>;
}

/** Demo sizes: big enough to make incremental savings visible, small enough to generate in a blink. */
const PATTERN_BYTES: Record<string, number> = {
  'virus-pattern': 4_000_000,
  'smart-scan-agent-pattern': 2_000_000,
  'damage-cleanup-template': 600_000,
  'intellitrap-exception-pattern': 200_000,
  'spyware-pattern': 1_000_000,
};
const FIRST_PATTERN_VERSION = 171;
const FIRST_FULL_ONLY_VERSION = 1000;
const DEMO_LEVEL = 9;

/** The demo's input directory, rebuilt deterministically so a restarted demo carries on. */
class DemoInput {
  private readonly series = new Map<string, PatternSeries>();
  private fullOnlyVersion = new Map<string, number>();
  /** ClamAV custom signatures, where ClamAV is installed (clamav.ts). */
  private readonly signatures: DemoSignatures | undefined;

  constructor(
    private readonly dir: string,
    demoDir: string,
  ) {
    this.signatures = findClamd().ok ? new DemoSignatures(demoDir, dir) : undefined;
  }

  private write(id: string, version: number, content: Buffer): void {
    const componentDir = path.join(this.dir, id);
    fs.mkdirSync(componentDir, { recursive: true });
    fs.writeFileSync(path.join(componentDir, String(version)), content);
  }

  private existingLatest(id: string): number | undefined {
    const dir = path.join(this.dir, id);
    const versions = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number) : [];
    return versions.length ? Math.max(...versions) : undefined;
  }

  /** Create the first versions (or catch up with what an earlier demo run wrote). */
  init(): void {
    for (const [index, component] of KNOWN_COMPONENTS.entries()) {
      if (component.duplication) {
        const series = new PatternSeries(component.id, FIRST_PATTERN_VERSION, PATTERN_BYTES[component.id] ?? 500_000, 1000 + index);
        const latest = this.existingLatest(component.id) ?? FIRST_PATTERN_VERSION + 4;
        this.write(component.id, series.version, series.content());
        while (series.version < latest) {
          const content = series.next();
          this.write(component.id, series.version, content);
        }
        this.series.set(component.id, series);
      } else {
        const latest = this.existingLatest(component.id) ?? FIRST_FULL_ONLY_VERSION;
        this.writeFullOnly(component.id, latest);
      }
    }
    this.signatures?.init();
  }

  private writeFullOnly(id: string, version: number): void {
    const random = prng(version);
    const content =
      id === 'outbreak-defense-policy'
        ? Buffer.from(JSON.stringify({ policy: 'outbreak-defense', version, blockedPorts: [135, 139, 445].filter(() => random() > 0.3), denyWrite: ['*.exe', '*.dll'] }, null, 2))
        : Buffer.from(Array.from({ length: 300_000 }, () => Math.floor(random() * 256)));
    this.write(id, version, content);
    this.fullOnlyVersion.set(id, version);
  }

  /** Publish a new version of every duplication component, and now and then a new engine. */
  advance(tick: number): string[] {
    const changed: string[] = [];
    for (const [id, series] of this.series) {
      const content = series.next();
      this.write(id, series.version, content);
      changed.push(`${id} ${series.version}`);
    }
    if (tick % 3 === 0) {
      for (const id of this.fullOnlyVersion.keys()) {
        const next = this.fullOnlyVersion.get(id)! + 1;
        this.writeFullOnly(id, next);
        changed.push(`${id} ${next}`);
      }
    }
    if (this.signatures) changed.push(`${DEMO_SIGNATURES} ${this.signatures.next()}`);
    return changed;
  }
}

export interface DemoSource {
  url: string;
  rootFile: string;
  dir: string;
  stop(): Promise<void>;
}

/** Generate, publish and serve the demo source, publishing new versions every `everySeconds`. */
export async function startDemoSource(options: { dir?: string; everySeconds: number; port: number; log: (line: string) => void }): Promise<DemoSource> {
  const dir = path.resolve(options.dir ?? path.join(os.tmpdir(), 'bulwark-demo'));
  const inputDir = path.join(dir, 'input');
  const sourceDir = path.join(dir, 'source');
  const log = options.log;
  const input = new DemoInput(inputDir, dir);
  input.init();
  const republish = () => publish({ input: inputDir, out: sourceDir, keys: path.join(dir, 'keys'), level: DEMO_LEVEL, fullCodecs: ['zstd'], expiryDays: { timestamp: 1 } });
  republish();
  const server = await listen(staticHandler(sourceDir), '127.0.0.1', options.port);
  let tick = 0;
  const timer = setInterval(() => {
    try {
      const changed = input.advance(++tick);
      republish();
      log(`${new Date().toISOString()} demo source published ${changed.join(', ')}`);
    } catch (error) {
      log(`demo source could not publish: ${describeError(error)}`);
    }
  }, options.everySeconds * 1000);
  return {
    url: server.url,
    rootFile: path.join(sourceDir, 'root.json'),
    dir,
    stop: async () => {
      clearInterval(timer);
      await server.close();
    },
  };
}

/**
 * Point a data directory's settings at the demo source, checking every minute, with agents served on
 * loopback only (any free port) and told of each release within a few seconds.
 */
export function useDemoSource(settings: Settings, source: DemoSource): void {
  settings.set('source', { url: source.url, trustedRoot: source.rootFile });
  settings.set('schedule', { kind: 'interval', every: 1, unit: 'minutes' });
  settings.set('distribution', { enabled: true, listen: ['127.0.0.1:0'], pollSeconds: 60, spreadSeconds: 5 });
}

/** The demo's agents: two, in this process, each with its own data directory under the demo's. */
export const DEMO_AGENTS = ['demo-agent-1', 'demo-agent-2'];

/** The demo's agents, and the clamd the first one hands the demo signatures to (where ClamAV is installed). */
export interface DemoAgents {
  agents: Agent[];
  /** Stop the agents, then the demo's clamd. */
  stop(): Promise<void>;
}

/** Start the demo's agents against the running server; resolves once each has enrolled and started. */
export async function startDemoAgents(server: BulwarkServer, dir: string, log: (line: string) => void): Promise<DemoAgents> {
  const url = server.agentServer?.urls[0];
  if (!url) {
    log(`demo: no agents (${server.agentServiceError ?? 'agents are not served'})`);
    return { agents: [], stop: async () => {} };
  }
  // Each run serves agents on a new port, so the demo's agents, enrolled with the last run's address,
  // enroll again. Their old entries are forgotten first, or they would stay beside them, silent, and
  // the agents would get new names: the one its enrollment names, and any other holding its name (left
  // by a demo from before this forgetting, or by an agent whose folder was lost).
  const address = serverAddress(url);
  const forget = (idOrName: string) => server.service.removeAgent(idOrName, { via: 'cli', who: 'the demo' }).catch(() => undefined);
  for (const name of DEMO_AGENTS) {
    const earlier = readEnrollment(path.join(dir, 'agents', name));
    if (earlier?.server === address) continue;
    const removed = [earlier ? await forget(earlier.id) : undefined, await forget(name)].filter(Boolean);
    if (removed.length) log(`demo: ${name} enrolls again; the entry it had from an earlier run is forgotten`);
  }
  // Enrolled as an operator would: with the join string (the token and the SHA-256 of the vendor's root).
  const { join, token } = await server.joinString('broad');
  const clamd: DemoClamd | undefined = await startDemoClamd(dir, log);
  const agents = DEMO_AGENTS.map(
    (name, i) =>
      new Agent({
        server: url,
        token: join ?? token,
        name,
        dataDir: path.join(dir, 'agents', name),
        log: (line) => log(`[${name}] ${line}`),
        ...(i === 0 && clamd ? { consumers: clamd.consumersFile } : {}),
      }),
  );
  // What clamd detects, after each run of the agent that feeds it.
  if (clamd) agents[0]!.engine.on('run', () => void clamd.detectionsChanged());
  // Not awaited as a whole: each runs its start-up update, which must not hold up the server.
  for (const agent of agents) agent.start().catch((error: unknown) => log(`demo agent could not start: ${describeError(error)}`));
  log(`demo: ${agents.length} agents (${DEMO_AGENTS.join(', ')}) follow the server at ${url}, enrolled with its join string (what \`bulwark agents token\` prints)`);
  let stopped: Promise<void> | undefined;
  return {
    agents,
    stop: () =>
      (stopped ??= (async () => {
        await Promise.all(agents.map((agent) => agent.stop()));
        await clamd?.stop();
      })()),
  };
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const log = options.log;
  const source = await startDemoSource(options);
  log(`Bulwark demo in ${source.dir}`);
  log(`demo update source: ${source.url} (trusted root ${source.rootFile})`);
  log(`it publishes new versions every ${options.everySeconds} s; the server checks every minute. Ctrl+C stops.`);
  const dataDir = path.join(source.dir, 'data');
  const settings = Settings.open(dataDir);
  useDemoSource(settings, source);
  let agents: DemoAgents | undefined;
  try {
    return await options.serve(dataDir, settings, {
      log,
      ...(options.console ? { console: options.console } : {}),
      started: async (server) => {
        agents = await startDemoAgents(server, source.dir, log);
      },
      stopping: async () => {
        await agents?.stop();
      },
    });
  } finally {
    await agents?.stop();
    await source.stop();
  }
}
