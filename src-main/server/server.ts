// The Bulwark server, assembled once for every host (`bulwark serve`, the demo, the desktop app):
//
//   engine ──(after each run)──► distribution ──► agent server (HTTP: files, enrollment, reports,
//     │                                              notification streams) ◄── agents
//     ├── control channel (`bulwark update` on a running server's data directory)
//     └── console service ──► browser console (HTTP) or, in the desktop app, IPC
//
// The data directory's lock comes first, so a second server on the same directory fails before it
// opens any file or port; every start-up step after it is given back if a later one fails.
import fs from 'node:fs';
import type { ConsoleServer } from '../console/http-server.js';
import { startConsoleServer } from '../console/http-server.js';
import { ConsoleService } from '../console/service.js';
import { consoleAccess, rotateConsoleToken, saveConsoleAddress, signInUrl } from '../console/access.js';
import { AUTO_THREADS_FROM_AGENTS, fileThreadPlan, startAgentServer, type AgentServer } from '../distribution/agent-server.js';
import { joinInfo, readTrustedRoot, type JoinInfo } from '../distribution/enrollment.js';
import { AgentsOverview } from '../distribution/overview.js';
import type { AgentRegistry } from '../distribution/registry.js';
import { keepDailyCopies, openServerRegistry } from '../distribution/registry-file.js';
import { ReleasePublisher } from '../distribution/broker.js';
import { Distribution, type Release } from '../distribution/release.js';
import { DEFAULT_ROLLOUT, Rollout } from '../distribution/rollout.js';
import { Engine, pinnedVersions, type Distributor } from '../engine/engine.js';
import { Evidence } from '../engine/evidence.js';
import { describeError, UsageError } from '../engine/errors.js';
import { acquireLock } from '../engine/lock.js';
import type { Reminder } from '../engine/reminders.js';
import type { RunRecord } from '../engine/history.js';
import type { Settings } from '../engine/settings.js';
import type { Actor } from '../engine/audit.js';
import { ComponentStore } from '../engine/store.js';
import { startControl } from '../engine/control.js';
import { sendNotification } from './notify.js';
import { notificationsFor } from './notifications.js';
import { describeListenError, formatListen, listenErrorAction, parseBrokerUrl, parseListen, type ConsoleListen, type ListenAddress } from './listen.js';
import { DEFAULT_AGENT_PORT, isRing, type Ring } from '../protocol/agent-protocol.js';

/**
 * The browser console with the data directory's access secret, on the address it had before (when
 * none is asked for and that one is free), which is then remembered for the next start.
 */
async function startBrowserConsole(dataDir: string, listen: ConsoleListen & { rendererDir: string }, service: ConsoleService, log: (line: string) => void): Promise<ConsoleServer> {
  const access = consoleAccess(dataDir);
  const start = (host: string | undefined, port: number) => startConsoleServer({ service, rendererDir: listen.rendererDir, ...(host ? { host } : {}), port, token: access.token, log });
  let server: ConsoleServer | undefined;
  if (listen.remembered && access.port) {
    server = await start(access.host, access.port).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EADDRINUSE' && error.code !== 'EADDRNOTAVAIL') throw error;
      log(`the console's address from before, ${formatListen({ host: access.host ?? '127.0.0.1', port: access.port! })}, is taken; it moves to another port`);
      return undefined;
    });
  }
  server ??= await start(listen.host, listen.port).catch((error: unknown) => {
    const where = listen.host ? formatListen({ host: listen.host, port: listen.port }) : `port ${listen.port}`;
    throw new Error(`cannot serve the console on ${where}: ${describeListenError(error)}`);
  });
  const { hostname, port } = new URL(server.origin);
  saveConsoleAddress(dataDir, hostname.replace(/^\[|\]$/g, ''), Number(port));
  return server;
}

/** The actor a control call names (the CLI's user@host), checked for shape: it only goes into the audit log. */
function cliActor(who: unknown): Actor {
  return { via: 'cli', who: typeof who === 'object' && who && typeof (who as Actor).who === 'string' ? (who as Actor).who.slice(0, 200) : 'command line' };
}

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
  /** The host took the data directory's lock before it wrote anything (and releases it itself). */
  lockTaken?: boolean;
  /** The consumers file: engines on this machine that use the components (default: DATA/consumers.json, if any). */
  consumers?: string;
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
  /** The join string that enrolls new agents into `ring` (`rotate`: with a new token). */
  joinString(ring: Ring, rotate?: boolean): Promise<JoinInfo>;
  stop(): Promise<void>;
}

/** Where agents are served: the settings' addresses, or every address family the host has. */
export function agentListenAddresses(settings: Settings): ListenAddress[] {
  const { listen } = settings.data.distribution;
  return listen.length ? listen.map((text) => parseListen(text, 'distribution.listen')) : [{ host: '::', port: DEFAULT_AGENT_PORT }];
}

/** What a start has taken (the lock, the registry, ports, threads, timers), each with how to give it back. */
type Taken = { what: string; undo: () => Promise<void> | void }[];

export async function startServer(options: ServerOptions): Promise<BulwarkServer> {
  const { dataDir, log } = options;
  // What the start has taken so far, given back in reverse order by stop() — or at once when the
  // start fails part way, so that a failed start leaves no lock, port, thread or timer behind (and
  // the process ends, or stops on SIGTERM, instead of idling on a half-started server).
  const taken: Taken = [];
  const giveBack = async () => {
    for (let next = taken.pop(); next; next = taken.pop()) {
      try {
        await next.undo();
      } catch (error) {
        log(`cannot stop the ${next.what}: ${describeError(error)}`);
      }
    }
  };
  try {
    // The lock first: a second server on this data directory is refused before it opens or writes
    // anything (`bulwark serve` takes it even earlier, before it saves its flags).
    if (!options.lockTaken) {
      fs.mkdirSync(dataDir, { recursive: true }); // a first start (the desktop app's) has none yet
      taken.push({ what: 'lock', undo: acquireLock(dataDir) });
    }
    return await assemble(options, taken, giveBack);
  } catch (error) {
    await giveBack();
    throw error;
  }
}

/** The server's parts, started in order; each pushes onto `taken` what `stop` gives back. */
async function assemble(options: ServerOptions, taken: Taken, stop: () => Promise<void>): Promise<BulwarkServer> {
  const { dataDir, settings, log } = options;
  // A damaged registry is set aside (and the daily copy restored) here; one that cannot be opened at
  // all leaves the agents unserved, never the server's own updates.
  const { registry, unusable } = await openServerRegistry(dataDir, log);
  taken.push({ what: 'agent registry', undo: () => registry.close() });
  if (!unusable) {
    const copies = keepDailyCopies(registry, dataDir, log);
    taken.push({ what: "agent registry's daily copy", undo: () => copies.stop() });
  }
  const distribution = new Distribution(dataDir, new ComponentStore(dataDir), log);
  const rollout = new Rollout(dataDir, () => ({ ...DEFAULT_ROLLOUT, ...settings.data.distribution.rollout }), log);
  distribution.passedVersions = () => rollout.passedVersions();
  const overview = new AgentsOverview(registry, distribution, log, () => rollout.heldRings());
  await overview.start();
  taken.push({ what: 'agents overview', undo: () => overview.stop() });
  // Agents of a ring held back, or released, count differently.
  rollout.on('change', () => overview.changed());
  const ringSizes = (ring: string) => overview.ring(ring).agents;
  // The rollout takes each new release before anyone is told of it, so no agent of a ring it has not
  // reached sees the release unheld.
  const versionsOf = (release: Release | undefined) => Object.fromEntries((release?.index.components ?? []).map((c) => [c.id, c.version]));
  let served = versionsOf(distribution.current());
  distribution.on('release', (release, { news }) => {
    if (news) rollout.start(release.index.release, ringSizes, versionsOf(release), served);
    served = versionsOf(release);
  });
  // The agents are recounted against a new release before the engine turns idle: otherwise the
  // headline (console, tray, status) would say the fleet is current, counted against the release
  // before, until the next recount a moment later.
  const distributor: Distributor = {
    keepVerifiedTarget: (target, file) => void distribution.keepVerifiedTarget(target, file),
    distribute: async (run, source) => {
      await distribution.distribute(run, source);
      await overview.recount();
    },
  };
  const engine = new Engine({ dataDir, settings, log, distributor, lockTaken: true, ...(options.consumers ? { consumers: options.consumers } : {}) });
  options.beforeStart?.(engine);
  const startup = engine.start();
  taken.push({ what: 'engine', undo: () => engine.stop() });

  // Notifications beyond the desktop (a webhook, syslog), for every host; the desktop shows its own too.
  let previousRun = engine.history.last();
  engine.on('run', (run) => {
    const wanted = settings.data.notifications;
    const before = previousRun;
    previousRun = run;
    if (!wanted.webhook && !wanted.syslog) return;
    for (const notification of notificationsFor(run, before, wanted)) void sendNotification(notification, wanted, log);
  });

  let agentServer: AgentServer | undefined;
  let agentServiceError: string | undefined = unusable;
  /** What the operator can do about it, fitting its cause. */
  let agentServiceAction: string | undefined = unusable ? 'Do what the message says for the registry file, then restart the server; it keeps updating itself meanwhile.' : undefined;
  const { distribution: serving } = settings.data;
  if (serving.enabled && !unusable) {
    const listen = agentListenAddresses(settings);
    const threads = fileThreadPlan(serving.threads, await registry.count(), log);
    try {
      agentServer = await startAgentServer(
        {
          distribution,
          registry,
          settings: () => settings.data.distribution,
          onAgentsChanged: () => overview.changed(),
          trustedRoot: () => readTrustedRoot(settings.data.source.trustedRoot),
          onReport: (_id, _report, _address, news) => overview.reported(news),
          pins: () => Object.fromEntries(pinnedVersions(dataDir)),
          released: (ring) => rollout.released(ring),
          passedVersions: () => rollout.passedVersions(),
          evidence: new Evidence(dataDir),
          log,
          fileThreads: threads,
        },
        listen,
      );
      const server = agentServer;
      taken.push({ what: "agents' service", undo: () => server.close() });
      const { fileThreads } = agentServer;
      const how = fileThreads
        ? `${fileThreads} file thread${fileThreads === 1 ? '' : 's'}`
        : `main thread alone${threads.whenFleetGrows ? `; file threads join from ${AUTO_THREADS_FROM_AGENTS.toLocaleString('en')} enrolled agents` : ''}`;
      log(`serving agents at ${agentServer.urls.join(', ')} (${how})`);
    } catch (error) {
      // The server still updates itself; the console and status say why agents cannot connect.
      agentServiceError = `cannot serve agents on ${listen.map(formatListen).join(', ')}: ${describeListenError(error)}`;
      agentServiceAction = listenErrorAction(error, 'bulwark serve --agents-listen');
      log(agentServiceError);
    }
  }
  if (agentServiceError) engine.setHostReminders([agentServiceReminder(agentServiceError, agentServiceAction!)]);

  // Releases also go through an MQTT broker when one is set (agents given --notify follow it there).
  let broker: ReleasePublisher | undefined;
  const notify = settings.data.distribution.notify;
  if (serving.enabled && notify) {
    broker = await ReleasePublisher.connect(parseBrokerUrl(notify, 'distribution.notify'), log);
    const connected = broker;
    taken.push({ what: 'broker connection', undo: () => connected.close() });
    const announce = (release: Release, extra: { updateAsked?: string } = {}) =>
      connected.publish({ release: release.index.release, spreadSeconds: settings.data.distribution.spreadSeconds, ...extra });
    const current = distribution.current();
    if (current) announce(current);
    distribution.on('release', (release, { news }) => {
      if (news) announce(release);
    });
    log(`announcing releases through the broker ${notify}`);
  }
  const askToUpdate = async (id?: string) => {
    const release = distribution.current();
    // The broker speaks to the whole fleet: one agent is asked over its own stream only.
    if (broker && release && id === undefined) broker.publish({ release: release.index.release, spreadSeconds: settings.data.distribution.spreadSeconds, updateAsked: new Date().toISOString() });
    return (await agentServer?.askToUpdate(id)) ?? 0;
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
  taken.push({ what: 'rollout timer', undo: () => clearInterval(rolloutTimer) });
  // A ring just reached updates now (the release was announced before; its agents held it then).
  rollout.on('released', () => void askToUpdate().catch((error: unknown) => log(`cannot ask the agents to update: ${describeError(error)}`)));

  const control = await startControl(
    dataDir,
    {
      update: () => engine.update('manual'),
      // Commands on this directory run as the CLI's user; what they do is audited here, as the console's is.
      change: ({ who, ...request }) => service.changeComponentAs(request, cliActor(who)),
      rollout: async ({ action, who }) => {
        if (!rollout.current()) throw new UsageError('no release is being rolled out yet');
        return service.changeRollout(action, cliActor(who));
      },
      ring: async ({ agent, ring, who }) => {
        if (!isRing(ring)) throw new UsageError(`"${ring}" is not a ring: canary, early or broad`);
        return service.moveAgent(agent, ring, cliActor(who));
      },
      remove: ({ agent, who }) => service.removeAgent(agent, cliActor(who)),
      // `bulwark console-url --rotate`: the running console takes the new secret at once.
      consoleToken: async ({ who }) => {
        const token = rotateConsoleToken(dataDir);
        consoleServer?.setToken(token);
        service.audit.record(cliActor(who), { action: 'rotate-console-token', target: 'console access' });
        return { url: signInUrl(consoleAccess(dataDir)) ?? null };
      },
    },
    log,
  ).catch((error: unknown) => {
    log(`the control channel is unavailable (\`bulwark update\` cannot reach this server): ${describeError(error)}`);
    return undefined;
  });
  if (control) taken.push({ what: 'control channel', undo: () => control.close() });

  const joinString = (ring: Ring, rotate = false) => joinInfo(registry, readTrustedRoot(settings.data.source.trustedRoot), ring, rotate);
  const service = new ConsoleService({
    engine,
    settings,
    dataDir,
    host: options.host,
    agents: { registry, distribution, overview, rollout, askToUpdate, joinString, ...(agentServer ? { server: agentServer } : {}), ...(agentServiceError ? { error: agentServiceError, action: agentServiceAction! } : {}) },
    ...(options.applyStartAtLogin ? { applyStartAtLogin: options.applyStartAtLogin } : {}),
  });
  let consoleServer: ConsoleServer | undefined;
  if (options.console) {
    consoleServer = await startBrowserConsole(dataDir, options.console, service, log);
    const started = consoleServer;
    taken.push({ what: 'console', undo: () => started.close() });
  }
  return { engine, service, distribution, registry, overview, rollout, agentServer, agentServiceError, consoleServer, startup, joinString, stop };
}

/** The card for agents that cannot connect: the agents' port taken, or the registry unusable. */
function agentServiceReminder(error: string, action: string): Reminder {
  return {
    id: 'agents-service',
    severity: 'error',
    title: 'Agents cannot connect to this server',
    body: `${error.charAt(0).toUpperCase()}${error.slice(1)}.`,
    action,
  };
}
