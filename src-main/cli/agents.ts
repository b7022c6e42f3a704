// The agent commands: `bulwark agent` (run an endpoint's updater), `bulwark agents list|token` (the
// server's view of its agents, usable while the server runs), and the agent flags of `serve`.
import fs from 'node:fs';
import path from 'node:path';
import { Agent } from '../agent/agent.js';
import { countAgents, type AgentCounts } from '../distribution/agent-status.js';
import { parseBrokerUrl } from '../distribution/broker.js';
import { checkSourceUrl } from '../engine/source.js';
import { agentReminders, agentRows } from '../distribution/overview.js';
import type { StackKind } from '../engine/network.js';
import type { Reminder } from '../engine/reminders.js';
import { AgentRegistry } from '../distribution/registry.js';
import { Distribution } from '../distribution/release.js';
import { UsageError } from '../engine/errors.js';
import type { DistributionSetting, ProxySetting } from '../engine/settings.js';
import { parseListen } from '../server/listen.js';
import { dataOption, err, integerFlag, out, required, type Command } from './command.js';
import { untilSignal } from './serve.js';

/** The agent flags of `bulwark serve`, parsed into the distribution setting to save (undefined: none given). */
export const serveFlags = {
  options: {
    'agents-listen': { type: 'string', multiple: true },
    'agent-poll': { type: 'string' },
    'agent-spread': { type: 'string' },
    notify: { type: 'string' },
  },
  parse(values: Record<string, unknown>, current: DistributionSetting): DistributionSetting | undefined {
    const listen = values['agents-listen'] as string[] | undefined;
    const poll = integerFlag(values, 'agent-poll', 10, 86_400);
    const spread = integerFlag(values, 'agent-spread', 0, 3600);
    const notify = typeof values.notify === 'string' ? values.notify : undefined;
    if (notify && notify !== 'off') parseBrokerUrl(notify);
    if (!listen && poll === undefined && spread === undefined && notify === undefined) return undefined;
    const next = { ...current };
    if (listen) {
      if (listen.includes('off')) {
        if (listen.length > 1) throw new UsageError('--agents-listen off cannot be combined with addresses');
        next.enabled = false;
      } else {
        for (const text of listen) parseListen(text, '--agents-listen');
        next.enabled = true;
        next.listen = listen;
      }
    }
    if (poll !== undefined) next.pollSeconds = poll;
    if (spread !== undefined) next.spreadSeconds = spread;
    if (notify !== undefined) next.notify = notify === 'off' ? '' : notify;
    return next;
  },
} as const;

/** A server's agents at a glance, for `bulwark status`: counts and reminders (undefined where no agent ever enrolled). */
export async function agentsAtAGlance(dataDir: string, stack: StackKind | undefined): Promise<{ counts: AgentCounts; reminders: Reminder[] } | undefined> {
  if (!fs.existsSync(path.join(dataDir, 'agents.sqlite'))) return undefined;
  const registry = await AgentRegistry.open(dataDir, { readOnly: true });
  try {
    const rows = agentRows(await registry.list(), Distribution.readCurrent(dataDir));
    return { counts: countAgents(rows.map((r) => r.state)), reminders: agentReminders(rows, { stack, url: undefined }) };
  } finally {
    await registry.close();
  }
}

function proxyFlag(values: Record<string, unknown>): ProxySetting | undefined {
  if (typeof values.proxy !== 'string') {
    if (values['proxy-user'] !== undefined) throw new UsageError('--proxy-user goes with --proxy');
    return undefined;
  }
  const { host, port } = parseListen(values.proxy, '--proxy');
  if (port === 0) throw new UsageError('--proxy needs a port, e.g. proxy.example:3128');
  const username = typeof values['proxy-user'] === 'string' ? values['proxy-user'] : '';
  return { enabled: true, host, port, username, password: username ? (process.env.BULWARK_PROXY_PASSWORD ?? '') : '' };
}

export const agentCommands: Record<string, Command> = {
  agent: {
    summary: 'run an agent: keep this endpoint current from a Bulwark server, until stopped',
    usage: `bulwark agent --server URL --token TOKEN --data DIR [--name NAME] [--trusted-root FILE] [--proxy HOST:PORT [--proxy-user NAME]]

Enrolls with the server on first contact (with the enrollment token from \`bulwark agents token\`
on the server), then keeps the components in DIR current: the server announces each release and
the agent fetches it within its spread, by incremental where it can. Every file is checked against
the vendor's signatures, so a compromised server cannot get content accepted. Reports its versions
to the server after every run. Runs until SIGINT or SIGTERM; exits 1 when the server refuses the
token (wrong or rotated). \`bulwark status --data DIR\` shows what it holds.

Options:
  --server URL          the server's agent address, e.g. http://server.example:8470/
  --token TOKEN         the enrollment token (needed on first contact); or set BULWARK_TOKEN,
                        which keeps it off the command line where other users could see it
  --data DIR            the agent's data directory (components, history, credential)
  --name NAME           how the server lists this agent (default: the host name)
  --trusted-root FILE   the vendor's root.json to trust; by default the one the server hands out
                        at enrollment is pinned (trust on first use); signed root rotations follow
  --proxy HOST:PORT     reach the server through this HTTP proxy (a dual-stack proxy bridges an
                        IPv4-only agent and an IPv6-only server); saved for later starts
  --proxy-user NAME     proxy user name; the password is read from BULWARK_PROXY_PASSWORD
  --notify URL          learn of releases from this MQTT broker (mqtt://HOST:PORT/TOPIC, the same as
                        the server's --notify) instead of a stream held open to the server
  --mirror URL          fetch metadata and files from this HTTP cache of the server (repeatable; tried
                        in order, then the server itself); reports still go to the server`,
    options: {
      ...dataOption,
      server: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      'trusted-root': { type: 'string' },
      proxy: { type: 'string' },
      'proxy-user': { type: 'string' },
      notify: { type: 'string' },
      mirror: { type: 'string', multiple: true },
    },
    async run(values) {
      const dataDir = path.resolve(required(values, 'data'));
      const server = required(values, 'server');
      const trustedRoot = typeof values['trusted-root'] === 'string' ? values['trusted-root'] : undefined;
      if (trustedRoot && !fs.existsSync(trustedRoot)) throw new UsageError(`trusted root ${trustedRoot} does not exist`);
      const name = typeof values.name === 'string' ? values.name.trim() : undefined;
      if (name !== undefined && !(name.length >= 1 && name.length <= 100)) throw new UsageError('--name must be 1 to 100 characters');
      const proxy = proxyFlag(values);
      const notify = typeof values.notify === 'string' ? parseBrokerUrl(values.notify) : undefined;
      const mirrors = ((values.mirror as string[] | undefined) ?? []).map((m) => checkSourceUrl(m).href.replace(/\/?$/, '/'));
      const stamp = (line: string) => out(`${new Date().toISOString()} ${line}`);
      const agent = new Agent({
        server,
        dataDir,
        log: stamp,
        ...(typeof values.token === 'string' ? { token: values.token } : process.env.BULWARK_TOKEN ? { token: process.env.BULWARK_TOKEN } : {}),
        ...(name ? { name } : {}),
        ...(trustedRoot ? { trustedRoot: path.resolve(trustedRoot) } : {}),
        ...(proxy ? { proxy } : {}),
        ...(notify ? { notify } : {}),
        ...(mirrors.length ? { mirrors } : {}),
      });
      const stopped = untilSignal(stamp, 'stopping').then(() => 'stopped' as const);
      const failed = agent.failed();
      try {
        // A signal may come while the agent still waits for its server (enrollment retries).
        const started = agent.start().then(() => 'started' as const);
        const first = await Promise.race([started, stopped, failed]);
        if (first instanceof Error) throw first;
        if (first === 'started') {
          stamp(`agent running in ${dataDir}; server ${server}`);
          const fatal = await Promise.race([stopped, failed]);
          if (fatal instanceof Error) throw fatal;
        } else {
          void started.catch(() => undefined); // it gives up once stop() below aborts it
        }
      } finally {
        await agent.stop();
      }
      stamp('stopped');
      return 0;
    },
  },

  agents: {
    summary: "list the server's agents, or show or rotate their enrollment token",
    usage: `bulwark agents list --data DIR [--json]
bulwark agents token --data DIR [--rotate]

Works while the server runs. \`list\` shows each agent's name, address and family, component
versions, state (current, outdated, notified, updating, failed, unreachable), when it was last
seen and its last result. \`token\` prints the enrollment token new agents need; --rotate replaces
it (enrolled agents keep working, new ones need the new token).

Options:
  --data DIR   the server's data directory
  --json       (list) print JSON
  --rotate     (token) make a new token`,
    options: { ...dataOption, json: { type: 'boolean' }, rotate: { type: 'boolean' } },
    positionals: true,
    async run(values, positionals) {
      const dataDir = required(values, 'data');
      const [action, ...extra] = positionals;
      if (extra.length || (action !== 'list' && action !== 'token')) throw new UsageError('use: bulwark agents list|token --data DIR');
      if (action === 'token') {
        if (values.json) throw new UsageError('--json goes with list');
        if (!fs.existsSync(dataDir)) throw new UsageError(`data directory ${dataDir} does not exist`);
        const registry = await AgentRegistry.open(dataDir);
        try {
          const token = values.rotate ? await registry.rotateToken() : await registry.enrollmentToken();
          if (values.rotate) err('The previous token no longer enrolls new agents; enrolled agents keep working.');
          out(`Enrollment token: ${token}`);
        } finally {
          await registry.close();
        }
        return 0;
      }
      if (values.rotate) throw new UsageError('--rotate goes with token');
      const registry = await AgentRegistry.open(dataDir, { readOnly: true });
      let agents;
      try {
        agents = await registry.list();
      } finally {
        await registry.close();
      }
      const release = Distribution.readCurrent(dataDir);
      const rows = agentRows(agents, release);
      if (values.json) {
        out(JSON.stringify({ release: release?.index.release ?? null, counts: countAgents(rows.map((r) => r.state)), agents: rows }));
        return 0;
      }
      const counts = countAgents(rows.map((r) => r.state));
      out(`${counts.total} agent${counts.total === 1 ? '' : 's'}: ${counts.current} current, ${counts.outdated} outdated, ${counts.updating} updating, ${counts.failed} failed, ${counts.unreachable} unreachable`);
      for (const row of rows) {
        const families = row.families.map((f) => `IPv${f}`).join('+') || '—';
        const versions = row.components.map((c) => `${c.id} ${c.version}`).join(', ') || 'no components';
        const last = row.lastRun ? `${row.lastRun.result}${row.lastRun.error ? `: ${row.lastRun.error}` : ''}` : 'no run yet';
        out(`  ${row.name.padEnd(20)} ${row.state.padEnd(11)} ${row.address.padEnd(16)} ${families.padEnd(9)} seen ${row.lastSeen}  ${last}`);
        out(`  ${''.padEnd(20)} ${versions}`);
      }
      return 0;
    },
  },
};
