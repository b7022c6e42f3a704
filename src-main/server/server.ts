// The Bulwark server, assembled once for every host (`bulwark serve`, the demo, the desktop app):
//
//   engine ──(after each run)──► distribution ──► agent server (HTTP: files, enrollment, reports,
//     │                                              notification streams) ◄── agents
//     ├── control channel (`bulwark update` on a running server's data directory)
//     └── console service ──► browser console (HTTP) or, in the desktop app, IPC
//
// The engine starts first: it takes the data directory's lock, so a second server on the same
// directory fails before it opens any port.
import type { ConsoleServer } from '../console/http-server.js';
import { startConsoleServer } from '../console/http-server.js';
import { ConsoleService } from '../console/service.js';
import { AUTO_THREADS_FROM_AGENTS, fileThreadPlan, startAgentServer, type AgentServer } from '../distribution/agent-server.js';
import { AgentsOverview } from '../distribution/overview.js';
import { AgentRegistry } from '../distribution/registry.js';
import { ReleasePublisher } from '../distribution/broker.js';
import { Distribution, type Release } from '../distribution/release.js';
import { DEFAULT_ROLLOUT, Rollout } from '../distribution/rollout.js';
import { Engine, pinnedVersions } from '../engine/engine.js';
import { describeError, UsageError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import type { Settings } from '../engine/settings.js';
import { ComponentStore } from '../engine/store.js';
import { startControl } from '../engine/control.js';
import { formatListen, parseBrokerUrl, parseListen, type ConsoleListen, type ListenAddress } from './listen.js';
import { DEFAULT_AGENT_PORT, isRing } from '../protocol/agent-protocol.js';

export interface ServerOptions {
  dataDir: string;
  settings: Settings;
  log: (line: string) => void;
  /** Where the console runs: the desktop app (over IPC, wired by the shell) or a browser. */
  host: 'desktop' | 'browser';
  /** Serve the browser console on this address. */
  console?: ConsoleListen & { rendererDir: string };
  /** The desktop shell applies "start at login" to the system when it is saved. */
  applyStartAtLogin?: (enabled: boolean) => void;
  /** Called with the engine before it starts, so a host's listeners see the start-up run. */
  beforeStart?: (engine: Engine) => void;
}

export interface BulwarkServer {
  readonly engine: Engine;
  readonly service: ConsoleService;
  readonly distribution: Distribution;
  readonly registry: AgentRegistry;
  readonly overview: AgentsOverview;
  readonly rollout: Rollout;
  /** Serving agents, unless turned off or its address could not be taken (see agentServiceError). */
  readonly agentServer: AgentServer | undefined;
  readonly agentServiceError: string | undefined;
  readonly consoleServer: ConsoleServer | undefined;
  /** The start-up update; failures are recorded in its record, not thrown. */
  readonly startup: Promise<RunRecord>;
  stop(): Promise<void>;
}

/** Where agents are served: the settings' addresses, or every address family the host has. */
export function agentListenAddresses(settings: Settings): ListenAddress[] {
  const { listen } = settings.data.distribution;
  return listen.length ? listen.map((text) => parseListen(text, 'distribution.listen')) : [{ host: '::', port: DEFAULT_AGENT_PORT }];
}

export async function startServer(options: ServerOptions): Promise<BulwarkServer> {
  const { dataDir, settings, log } = options;
  const registry = await AgentRegistry.open(dataDir);
  const distribution = new Distribution(dataDir, new ComponentStore(dataDir), log);
  const overview = new AgentsOverview(registry, distribution, log);
  await overview.start();
  const ringSizes = (ring: string) => overview.ring(ring).agents;
  // The rollout takes each new release before anyone is told of it, so no agent of a ring it has not
  // reached sees the release unheld.
  const rollout = new Rollout(dataDir, () => ({ ...DEFAULT_ROLLOUT, ...settings.data.distribution.rollout }), log);
  distribution.on('release', (release, { news }) => {
    if (news) rollout.start(release.index.release, ringSizes);
  });
  const engine = new Engine({ dataDir, settings, log, distributor: distribution });
  let startup: Promise<RunRecord>;
  try {
    options.beforeStart?.(engine);
    startup = engine.start();
  } catch (error) {
    overview.stop();
    await registry.close();
    throw error;
  }

  let agentServer: AgentServer | undefined;
  let agentServiceError: string | undefined;
  const { distribution: serving } = settings.data;
  if (serving.enabled) {
    const listen = agentListenAddresses(settings);
    const threads = fileThreadPlan(serving.threads, await registry.count(), log);
    try {
      agentServer = await startAgentServer(
        {
          distribution,
          registry,
          settings: () => settings.data.distribution,
          onAgentsChanged: () => overview.changed(),
          onReport: () => overview.reported(),
          pins: () => Object.fromEntries(pinnedVersions(dataDir)),
          released: (ring) => rollout.released(ring),
          log,
          fileThreads: threads,
        },
        listen,
      );
      const { fileThreads } = agentServer;
      const how = fileThreads
        ? `${fileThreads} file thread${fileThreads === 1 ? '' : 's'}`
        : `main thread alone${threads.whenFleetGrows ? `; file threads join from ${AUTO_THREADS_FROM_AGENTS.toLocaleString('en')} enrolled agents` : ''}`;
      log(`serving agents at ${agentServer.urls.join(', ')} (${how})`);
    } catch (error) {
      // The server still updates itself; the console and status say why agents cannot connect.
      agentServiceError = `cannot serve agents on ${listen.map(formatListen).join(', ')}: ${describeError(error)}`;
      log(agentServiceError);
    }
  }

  // Releases also go through an MQTT broker when one is set (agents given --notify follow it there).
  let broker: ReleasePublisher | undefined;
  const notify = settings.data.distribution.notify;
  if (serving.enabled && notify) {
    broker = await ReleasePublisher.connect(parseBrokerUrl(notify, 'distribution.notify'), log);
    const announce = (release: Release, extra: { updateAsked?: string } = {}) =>
      broker!.publish({ release: release.index.release, spreadSeconds: settings.data.distribution.spreadSeconds, ...extra });
    const current = distribution.current();
    if (current) announce(current);
    distribution.on('release', (release, { news }) => {
      if (news) announce(release);
    });
    log(`announcing releases through the broker ${notify}`);
  }
  const askToUpdate = async () => {
    const release = distribution.current();
    if (broker && release) broker.publish({ release: release.index.release, spreadSeconds: settings.data.distribution.spreadSeconds, updateAsked: new Date().toISOString() });
    return (await agentServer?.askToUpdate()) ?? 0;
  };

  // The rollout moves on (or halts) as agents report, and as soak times run out.
  let evaluating = false;
  const evaluate = () => {
    if (evaluating) return;
    evaluating = true;
    rollout
      .evaluate(registry, ringSizes)
      .catch((error: unknown) => log(`cannot evaluate the rollout: ${describeError(error)}`))
      .finally(() => (evaluating = false));
  };
  overview.on('change', evaluate);
  const rolloutTimer = setInterval(evaluate, 5_000);
  rolloutTimer.unref();
  // A ring just reached updates now (the release was announced before; its agents held it then).
  rollout.on('released', () => void askToUpdate().catch((error: unknown) => log(`cannot ask the agents to update: ${describeError(error)}`)));

  const control = await startControl(
    dataDir,
    {
      update: () => engine.update('manual'),
      change: (request) => engine.change(request),
      rollout: async ({ action }) => {
        if (!rollout.current()) throw new UsageError('no release is being rolled out yet');
        return service.changeRollout(action);
      },
      ring: async ({ agent, ring }) => {
        if (!isRing(ring)) throw new UsageError(`"${ring}" is not a ring: canary, early or broad`);
        const moved = await registry.setRing(agent, ring);
        if (!moved.length) throw new UsageError(`no agent is named or numbered "${agent}" (see bulwark agents list)`);
        await overview.recount();
        return moved;
      },
    },
    log,
  ).catch((error: unknown) => {
    log(`the control channel is unavailable (\`bulwark update\` cannot reach this server): ${describeError(error)}`);
    return undefined;
  });

  const service = new ConsoleService({
    engine,
    settings,
    dataDir,
    host: options.host,
    agents: { registry, distribution, overview, rollout, askToUpdate, ...(agentServer ? { server: agentServer } : {}), ...(agentServiceError ? { error: agentServiceError } : {}) },
    ...(options.applyStartAtLogin ? { applyStartAtLogin: options.applyStartAtLogin } : {}),
  });
  let consoleServer: ConsoleServer | undefined;
  const stopAll = async () => {
    await consoleServer?.close();
    await control?.close();
    await agentServer?.close();
    await broker?.close();
    clearInterval(rolloutTimer);
    overview.stop();
    await engine.stop();
    await registry.close();
  };
  if (options.console) {
    try {
      consoleServer = await startConsoleServer({ service, rendererDir: options.console.rendererDir, ...(options.console.host ? { host: options.console.host } : {}), port: options.console.port, log });
    } catch (error) {
      await stopAll();
      throw error;
    }
  }
  return { engine, service, distribution, registry, overview, rollout, agentServer, agentServiceError, consoleServer, startup, stop: stopAll };
}
