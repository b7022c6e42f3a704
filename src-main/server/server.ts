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
import { startAgentServer, type AgentServer } from '../distribution/agent-server.js';
import { AgentsOverview } from '../distribution/overview.js';
import { AgentRegistry } from '../distribution/registry.js';
import { parseBrokerUrl, ReleasePublisher } from '../distribution/broker.js';
import { Distribution, type Release } from '../distribution/release.js';
import { Engine, pinnedVersions } from '../engine/engine.js';
import { describeError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import { DEFAULT_AGENT_PORT, type Settings } from '../engine/settings.js';
import { ComponentStore } from '../engine/store.js';
import { startControl } from './control.js';
import { formatListen, parseListen, type ConsoleListen, type ListenAddress } from './listen.js';

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
  const engine = new Engine({ dataDir, settings, log, distributor: distribution });
  let startup: Promise<RunRecord>;
  try {
    options.beforeStart?.(engine);
    startup = engine.start();
  } catch (error) {
    await registry.close();
    throw error;
  }

  const overview = new AgentsOverview(registry, distribution, log);
  await overview.start();
  let agentServer: AgentServer | undefined;
  let agentServiceError: string | undefined;
  const { distribution: serving } = settings.data;
  if (serving.enabled) {
    const listen = agentListenAddresses(settings);
    try {
      agentServer = await startAgentServer(
        { distribution, registry, settings: () => settings.data.distribution, onAgentsChanged: () => overview.changed(), pins: () => Object.fromEntries(pinnedVersions(dataDir)), log },
        listen,
      );
      log(`serving agents at ${agentServer.urls.join(', ')}`);
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

  const control = await startControl(dataDir, { update: () => engine.update('manual'), change: (request) => engine.change(request) }, log).catch((error: unknown) => {
    log(`the control channel is unavailable (\`bulwark update\` cannot reach this server): ${describeError(error)}`);
    return undefined;
  });

  const service = new ConsoleService({
    engine,
    settings,
    dataDir,
    host: options.host,
    agents: { registry, distribution, overview, askToUpdate, ...(agentServer ? { server: agentServer } : {}), ...(agentServiceError ? { error: agentServiceError } : {}) },
    ...(options.applyStartAtLogin ? { applyStartAtLogin: options.applyStartAtLogin } : {}),
  });
  let consoleServer: ConsoleServer | undefined;
  const stopAll = async () => {
    await consoleServer?.close();
    await control?.close();
    await agentServer?.close();
    await broker?.close();
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
  return { engine, service, distribution, registry, overview, agentServer, agentServiceError, consoleServer, startup, stop: stopAll };
}
