// The agent commands: `bulwark agent` (run an endpoint's updater), `bulwark agents list|token` (the
// server's view of its agents, usable while the server runs), and the agent flags of `serve`.
import fs from 'node:fs';
import path from 'node:path';
// What a command needs beyond flag parsing it imports when it runs (see main.ts).
import type { AgentCounts } from '../distribution/agent-status.js';
import { DEFAULT_ROLLOUT, heldRings, Rollout } from '../distribution/rollout.js';
import { AGENT_TIMING, DEFAULT_AGENT_PORT, describeOrder, isRing, parseJoinString, RINGS, type Ring } from '../protocol/agent-protocol.js';
import type { RolloutView } from '../console/contract.js';
import type { RingCounts } from '../distribution/overview.js';
import type { StackKind } from '../engine/network.js';
import type { Reminder } from '../engine/reminders.js';
import type { AgentBrief, AgentListed } from '../distribution/registry.js';
import { shortId } from '../distribution/agent-status.js';
import { visible } from '../distribution/untrusted.js';
import type { Actor } from '../engine/audit.js';
import { describeError, UsageError } from '../engine/errors.js';
import type { DistributionSetting, ProxySetting } from '../engine/settings.js';
import { parseBrokerUrl, parseListen } from '../server/listen.js';
import { dataOption, err, existingDataDir, integerFlag, lockDataDir, out, required, untilSignal, type Command } from './command.js';

/** The registry and what its listings need: the current release and the overview's arithmetic. */
const registryModules = () => Promise.all([import('../distribution/registry.js'), import('../distribution/release.js'), import('../distribution/overview.js')]);

/** The agent flags of `bulwark serve`, parsed into the distribution setting to save (undefined: none given). */
export const serveFlags = {
  options: {
    'agents-listen': { type: 'string', multiple: true },
    'agent-poll': { type: 'string' },
    'agent-spread': { type: 'string' },
    notify: { type: 'string' },
    rollout: { type: 'string' },
    'rollout-soak': { type: 'string' },
    'agent-threads': { type: 'string' },
  },
  parse(values: Record<string, unknown>, current: DistributionSetting): DistributionSetting | undefined {
    const listen = values['agents-listen'] as string[] | undefined;
    const poll = integerFlag(values, 'agent-poll', AGENT_TIMING.pollSeconds.min, AGENT_TIMING.pollSeconds.max);
    const spread = integerFlag(values, 'agent-spread', AGENT_TIMING.spreadSeconds.min, AGENT_TIMING.spreadSeconds.max);
    const notify = typeof values.notify === 'string' ? values.notify : undefined;
    if (notify && notify !== 'off') parseBrokerUrl(notify);
    const rollout = values.rollout as string | undefined;
    if (rollout !== undefined && rollout !== 'on' && rollout !== 'off') throw new UsageError('--rollout is on or off');
    const soak = integerFlag(values, 'rollout-soak', 0, 7 * 86_400);
    const threadsAuto = values['agent-threads'] === 'auto';
    const threads = threadsAuto ? undefined : integerFlag(values, 'agent-threads', 0, 16);
    if (!listen && poll === undefined && spread === undefined && notify === undefined && rollout === undefined && soak === undefined && threads === undefined && !threadsAuto) return undefined;
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
    if (threadsAuto) delete next.threads;
    else if (threads !== undefined) next.threads = threads;
    if (rollout !== undefined || soak !== undefined) {
      next.rollout = { ...DEFAULT_ROLLOUT, ...current.rollout, ...(rollout !== undefined ? { enabled: rollout === 'on' } : {}), ...(soak !== undefined ? { soakSeconds: soak } : {}) };
    }
    return next;
  },
} as const;

/** The rings a server's rollout holds back now, read from its data directory (their agents count as held). */
async function heldOn(dataDir: string): Promise<string[]> {
  const { Settings } = await import('../engine/settings.js');
  return heldRings(Rollout.read(dataDir), { ...DEFAULT_ROLLOUT, ...Settings.openReadOnly(dataDir).data.distribution.rollout });
}

/** A server's agents at a glance, for `bulwark status`: counts and reminders (undefined where no agent ever enrolled). */
export async function agentsAtAGlance(dataDir: string, stack: StackKind | undefined): Promise<{ counts: AgentCounts; reminders: Reminder[] } | undefined> {
  if (!fs.existsSync(path.join(dataDir, 'agents.sqlite'))) return undefined;
  const [{ AgentRegistry }, { Distribution }, { agentReminders, pictureOf }] = await registryModules();
  let registry: Awaited<ReturnType<typeof AgentRegistry.open>>;
  try {
    registry = await AgentRegistry.open(dataDir, { readOnly: true });
  } catch (error) {
    // Damaged, say: status still shows everything else, and says so.
    const { counts } = pictureOf([]);
    const action = 'The server checks the registry whenever it starts (`bulwark serve`): it sets a damaged one aside, never deleting it, and restores its daily copy. If it cannot open the file either, do what the message says.';
    return { counts, reminders: [{ id: 'agents-registry', severity: 'error', title: 'The agent registry cannot be read', body: `${describeError(error)}.`, action }] };
  }
  try {
    const now = Date.now();
    const { counts } = pictureOf(await registry.tally({ release: Distribution.readCurrent(dataDir), now, held: await heldOn(dataDir) }));
    return { counts, reminders: agentReminders(await registry.strangers(now), { stack, url: undefined }) };
  } finally {
    await registry.close();
  }
}

/** "90s", "30m", "24h", "7d" (or bare seconds) in seconds, within bounds; `what` names the flag. */
export function parseDuration(text: string, what: string, min: number, max: number): number {
  const match = /^\s*(\d{1,9})\s*(s|m|min|h|d)?\s*$/.exec(text);
  const unit = { s: 1, m: 60, min: 60, h: 3600, d: 86_400 }[(match?.[2] ?? 's') as 's'];
  const seconds = match ? Number(match[1]) * unit : NaN;
  if (!(seconds >= min && seconds <= max)) throw new UsageError(`${what} "${text}" must be a duration from ${min} s to ${max / 86_400} days, e.g. 90m, 24h or 7d`);
  return seconds;
}

/** --server is the server's agent address: say so (not an update source's) when it is not a URL. */
function checkServerUrl(text: string): void {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // said below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`--server "${text}" is not the server's agent address; it looks like http://server.example:8470/ (the address \`bulwark serve\` prints as "serving agents at")`);
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

/**
 * The consumers file a command is to use (--consumers FILE, else DATA/consumers.json if present),
 * validated now so that a broken one stops the command with the file and entry named (exit 2).
 */
export async function consumersFlag(dataDir: string, given: unknown): Promise<string | undefined> {
  if (given !== undefined && typeof given !== 'string') throw new UsageError('--consumers takes a file');
  const [{ consumersFileOf }, { loadConsumerConfig }] = await Promise.all([import('../engine/consumers.js'), import('../engine/consumer-config.js')]);
  const file = consumersFileOf(dataDir, given || undefined);
  if (file) loadConsumerConfig(file);
  return file;
}

export const agentCommands: Record<string, Command> = {
  agent: {
    summary: 'run an agent: keep this endpoint current from a Bulwark server, until stopped',
    usage: `bulwark agent --server URL --token JOIN --data DIR [--name NAME] [--trusted-root FILE]
              [--insecure-trust-first-server] [--max-hold DURATION] [--proxy HOST:PORT [--proxy-user NAME]]

Enrolls with the server on first contact, with the join string \`bulwark agents token\` prints on
the server (its last line): it carries the enrollment token, whose ring the agent joins, and the
SHA-256 of the vendor's root.json, which the agent checks before it pins that root and before it
sends the token, so a server met first is never trusted for the root. Then keeps the components in
DIR current: the server announces each release and the agent fetches it within its spread, by
incremental where it can. Every file is checked against the vendor's signatures, so a compromised
server cannot get content accepted; it cannot move the agent back to a version it never installed,
nor hold it unseen (see docs/agents.md). Reports its versions to the server after every run. Runs
until SIGINT or SIGTERM; exits 1 when the server refuses the token (wrong or rotated), 2 when there
is no way to verify the vendor's root. \`bulwark status --data DIR\` shows what it holds.

Options:
  --server URL          the server's agent address, e.g. http://server.example:8470/
  --token JOIN          the join string (needed on first contact); or set BULWARK_TOKEN, which keeps
                        it off the command line where other users could see it
  --data DIR            the agent's data directory (components, history, credential)
  --name NAME           how the server lists this agent (default: the host name; the server adds a
                        suffix when another agent has the name, and the agent says so)
  --trusted-root FILE   the vendor's root.json, given by hand instead of checked against the join
                        string (with a bare token); signed root rotations follow
  --insecure-trust-first-server
                        with neither a join string's hash nor --trusted-root, pin whatever root the
                        server hands out at enrollment: whoever answers in its place then could get
                        their own content installed here for good. Status and reports say so
  --max-hold DURATION   the longest the server's rollout may hold this agent behind the vendor's
                        latest release: past it the agent takes that release and reports "hold
                        lapsed" (default 24h; 30s, 90m, 2h, 7d...; shorter than the server's soak
                        defeats its rollout)
  --proxy HOST:PORT     reach the server through this HTTP proxy (a dual-stack proxy bridges an
                        IPv4-only agent and an IPv6-only server); saved for later starts
  --proxy-user NAME     proxy user name; the password is read from BULWARK_PROXY_PASSWORD
  --notify URL          learn of releases from this MQTT broker (mqtt://HOST:PORT/TOPIC, the same as
                        the server's --notify) instead of a stream held open to the server
  --mirror URL          fetch metadata and files from this HTTP cache of the server (repeatable; tried
                        in order, then the server itself); reports still go to the server
  --consumers FILE      the engines that use the components here (clamd, YARA...): each version is
                        checked, placed, reloaded and probed before it becomes active (default:
                        DIR/consumers.json if there is one; see docs/consumers.md)

The rollout ring is the operator's choice, not the agent's: the join string of \`bulwark agents
token --ring RING\` enrolls into RING, and \`bulwark agents ring NAME RING\` moves an agent.`,
    options: {
      ...dataOption,
      server: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      'trusted-root': { type: 'string' },
      'insecure-trust-first-server': { type: 'boolean' },
      'max-hold': { type: 'string' },
      proxy: { type: 'string' },
      'proxy-user': { type: 'string' },
      notify: { type: 'string' },
      mirror: { type: 'string', multiple: true },
      ring: { type: 'string' },
      consumers: { type: 'string' },
    },
    async run(values) {
      const dataDir = path.resolve(required(values, 'data'));
      const consumers = await consumersFlag(dataDir, values.consumers);
      const server = required(values, 'server');
      checkServerUrl(server);
      const trustedRoot = typeof values['trusted-root'] === 'string' ? values['trusted-root'] : undefined;
      if (trustedRoot && !fs.existsSync(trustedRoot)) throw new UsageError(`trusted root ${trustedRoot} does not exist`);
      const name = typeof values.name === 'string' ? values.name.trim() : undefined;
      if (name !== undefined && !(name.length >= 1 && name.length <= 100)) throw new UsageError('--name must be 1 to 100 characters');
      const proxy = proxyFlag(values);
      const notify = typeof values.notify === 'string' ? parseBrokerUrl(values.notify) : undefined;
      if (values.ring !== undefined) throw new UsageError("an agent cannot choose its rollout ring: the server's operator does, with the join string of `bulwark agents token --ring RING`, or `bulwark agents ring NAME RING` for an enrolled agent");
      const token = typeof values.token === 'string' ? values.token : process.env.BULWARK_TOKEN || undefined;
      if (token !== undefined && !parseJoinString(token)) throw new UsageError(`${typeof values.token === 'string' ? '--token' : 'BULWARK_TOKEN'} is neither a join string nor an enrollment token: copy the last line \`bulwark agents token\` prints on the server`);
      const insecure = values['insecure-trust-first-server'] === true;
      const maxHold = typeof values['max-hold'] === 'string' ? parseDuration(values['max-hold'], '--max-hold', 1, 30 * 86_400) : undefined;
      const [{ Agent }, { checkSourceUrl }] = await Promise.all([import('../agent/agent.js'), import('../engine/source.js')]);
      const mirrors = ((values.mirror as string[] | undefined) ?? []).map((m) => checkSourceUrl(m).href.replace(/\/?$/, '/'));
      const stamp = (line: string) => out(`${new Date().toISOString()} ${line}`);
      // The lock before any write (settings, enrollment): a second agent on a data directory in use is
      // refused and changes nothing (it would otherwise save its proxy, or enroll elsewhere).
      const release = lockDataDir(dataDir);
      let agent: InstanceType<typeof Agent>;
      try {
        agent = new Agent({
          lockTaken: true,
          server,
          dataDir,
          log: stamp,
          ...(token !== undefined ? { token } : {}),
          ...(name ? { name } : {}),
          ...(trustedRoot ? { trustedRoot: path.resolve(trustedRoot) } : {}),
          ...(insecure ? { insecureTrustFirstServer: true } : {}),
          ...(maxHold !== undefined ? { maxHoldSeconds: maxHold } : {}),
          ...(proxy ? { proxy } : {}),
          ...(notify ? { notify } : {}),
          ...(mirrors.length ? { mirrors } : {}),
          ...(consumers ? { consumers } : {}),
        });
      } catch (error) {
        release();
        throw error;
      }
      if (consumers) stamp(`handing components to their engines as ${consumers} says`);
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
        try {
          await agent.stop();
        } finally {
          release();
        }
      }
      stamp('stopped');
      return 0;
    },
  },

  agents: {
    summary: "list the server's agents, print the join string new agents enroll with, move or remove one",
    usage: `bulwark agents list --data DIR [--json]
bulwark agents token --data DIR [--ring RING] [--rotate]
bulwark agents ring NAME|ID RING --data DIR
bulwark agents remove NAME|ID --data DIR

Works while the server runs. \`list\` shows each agent's id, name, address and family, component
versions, state (current, held by the rollout, outdated, notified, updating, failed, unreachable),
when it was last seen, its last result, and the engines its components are handed to. \`token\`
prints the join string new agents enroll with, alone on its last line (bulwark agent --token JOIN):
the ring's enrollment token and the SHA-256 of the vendor's root.json this server trusts, so an
agent checks the root the server hands out instead of trusting it. Each ring has its own token:
agents enroll into the ring of theirs (broad by default) and cannot choose another. --rotate
replaces the ring's token (enrolled agents keep working, new ones need the new join string).
\`ring\` moves one agent to a rollout ring: canary (gets each release first), early, or broad
(after the others). \`remove\` forgets an agent (a machine taken out of service): its credential
is refused from then on. An agent is named by its id (the first 8
characters that \`list\` shows are enough) or by its name when no other agent has it.

Options:
  --data DIR   the server's data directory
  --json       (list) print JSON
  --ring RING  (token) the ring new agents enroll into: canary, early or broad (default broad)
  --rotate     (token) make a new token for the ring`,
    options: { ...dataOption, json: { type: 'boolean' }, rotate: { type: 'boolean' }, ring: { type: 'string' } },
    positionals: true,
    async run(values, positionals) {
      const dataDir = existingDataDir(values);
      const [action, ...extra] = positionals;
      if (action === 'ring' || action === 'remove') {
        const [agent, ring, ...more] = extra;
        if (action === 'ring' && (!agent || !ring || more.length)) throw new UsageError('use: bulwark agents ring NAME|ID RING --data DIR');
        if (action === 'remove' && (!agent || ring !== undefined)) throw new UsageError('use: bulwark agents remove NAME|ID --data DIR');
        if (ring !== undefined && !isRing(ring)) throw new UsageError(`"${ring}" is not a ring: canary, early or broad`);
        const body = action === 'ring' ? { agent: agent!, ring: ring! } : { agent: agent! };
        const who = await cliActor();
        // A running server makes the change (its overview and rollout follow at once), else the registry here.
        const viaServer = await (await import('../engine/control.js')).callControl<AgentBrief>(dataDir, action, { ...body, who }).catch((refusal: unknown) => {
          throw refusal instanceof Error ? new UsageError(refusal.message) : refusal;
        });
        let done: AgentBrief;
        if (viaServer) done = viaServer;
        else {
          if (!fs.existsSync(path.join(dataDir, 'agents.sqlite'))) throw new UsageError(`no agent has enrolled with the server on ${dataDir}`);
          const [{ AgentRegistry }, { AuditLog }] = await Promise.all([import('../distribution/registry.js'), import('../engine/audit.js')]);
          const registry = await AgentRegistry.open(dataDir);
          let from = '';
          try {
            if (action === 'ring') {
              const before = await registry.one(agent!);
              from = before.ring;
              await registry.setRing(before.id, ring!);
              done = { ...before, ring: ring! };
            } else done = await registry.remove(agent!);
          } finally {
            await registry.close();
          }
          new AuditLog(dataDir).record(who, action === 'ring' ? { action: 'ring', target: done.name, detail: `${shortId(done.id)}: ${from} → ${ring}` } : { action: 'remove-agent', target: done.name, detail: shortId(done.id) });
        }
        const named = visible(done.name, 100);
        out(action === 'ring' ? `${named} (${shortId(done.id)}) is now in ${ring}` : `${named} (${shortId(done.id)}) removed: its credential is refused from now on`);
        return 0;
      }
      if (extra.length || (action !== 'list' && action !== 'token')) throw new UsageError('use: bulwark agents list|token|ring|remove --data DIR');
      if (action === 'token') {
        if (values.json) throw new UsageError('--json goes with list');
        const ring = (values.ring as string | undefined) ?? 'broad';
        if (!isRing(ring)) throw new UsageError(`--ring "${ring}" is not a ring: canary, early or broad`);
        const [{ AgentRegistry }, { joinInfo, readTrustedRoot }, { Settings }, { AuditLog }] = await Promise.all([
          import('../distribution/registry.js'),
          import('../distribution/enrollment.js'),
          import('../engine/settings.js'),
          import('../engine/audit.js'),
        ]);
        const root = readTrustedRoot(Settings.openReadOnly(dataDir).data.source.trustedRoot);
        const registry = await AgentRegistry.open(dataDir);
        try {
          const info = await joinInfo(registry, root, ring as Ring, values.rotate === true);
          if (values.rotate) {
            new AuditLog(dataDir).record(await cliActor(), { action: 'rotate-token', target: `enrollment token of the ${ring} ring` });
            err(`The ${ring} ring's previous token no longer enrolls new agents; enrolled agents keep working.`);
          }
          out(`Enrollment token of the ${ring} ring: ${info.token}`);
          if (!info.join) {
            err('No update source with a trusted root.json is set on this server, so there is no root for agents to check: this is the bare token. Agents enrolling with it need the vendor\'s root.json (--trusted-root FILE). Set the source (bulwark settings set source ...) for a join string.');
            out(info.token);
            return 0;
          }
          out(`Vendor's root.json this server trusts: SHA-256 ${info.rootSha256}`);
          out(`New agents enroll into the ${ring} ring with the join string below (treat it as a password):`);
          out(`  bulwark agent --server http://THIS-SERVER:${DEFAULT_AGENT_PORT}/ --token JOIN --data /var/lib/bulwark-agent`);
          out(info.join);
        } finally {
          await registry.close();
        }
        return 0;
      }
      if (values.rotate) throw new UsageError('--rotate goes with token');
      if (values.ring !== undefined) throw new UsageError('--ring goes with token (to move an agent: bulwark agents ring NAME RING)');
      if (!fs.existsSync(path.join(dataDir, 'agents.sqlite'))) {
        if (values.json) out('{"release":null,"counts":{"total":0,"current":0,"outdated":0,"updating":0,"failed":0,"unreachable":0},"agents":[]}');
        else out('0 agents: none has enrolled with this server yet (see bulwark agents token)');
        return 0;
      }
      const [{ AgentRegistry }, { Distribution }, { pictureOf }] = await registryModules();
      const registry = await AgentRegistry.open(dataDir, { readOnly: true });
      try {
        const release = Distribution.readCurrent(dataDir);
        // One moment for the counts and the rows, so they agree.
        const basis = { release, now: Date.now(), held: await heldOn(dataDir) };
        const { counts } = pictureOf(await registry.tally(basis));
        if (values.json) {
          // Streamed: 100,000 agents are written as SQLite makes their JSON, never held all at once.
          process.stdout.write(`{"release":${release?.index.release ?? null},"counts":${JSON.stringify(counts)},"agents":[`);
          const comma = Buffer.from(',');
          let first = true;
          await registry.eachListed(basis, (rows) => {
            const parts: Buffer[] = [];
            for (const row of rows) {
              if (!first) parts.push(comma);
              parts.push(row);
              first = false;
            }
            process.stdout.write(Buffer.concat(parts));
          });
          out(']}');
          return 0;
        }
        out(`${counts.total} agent${counts.total === 1 ? '' : 's'}: ${counts.current} current, ${counts.held} held by the rollout, ${counts.outdated} outdated, ${counts.updating} updating, ${counts.failed} failed, ${counts.unreachable} unreachable`);
        await registry.eachListed(basis, (rows) => {
          for (const json of rows) {
            const row = JSON.parse(json.toString('utf8')) as AgentListed;
            // What an agent sent is its own words: made visible text, so it cannot forge a line.
            const families = row.families.map((f) => `IPv${f}`).join('+') || '—';
            const versions = row.components.map((c) => `${c.id} ${c.version}`).join(', ') || 'no components';
            const last = row.lastRun ? `${row.lastRun.result}${row.lastRun.error ? `: ${visible(row.lastRun.error, 300)}` : ''}` : 'no run yet';
            out(`  ${shortId(row.id)}  ${visible(row.name, 100).padEnd(20)} ${row.state.padEnd(11)} ${row.ring.padEnd(6)} ${row.address.padEnd(16)} ${families.padEnd(9)} seen ${row.lastSeen}  ${last}`);
            out(`  ${''.padEnd(8)}  ${versions}`);
            for (const c of row.consumers ?? []) out(`  ${''.padEnd(8)}  ${c.id} → ${visible(c.engine, 64)}: ${c.active ? 'has the active version' : c.version !== null ? `has ${c.version}, not the active version` : 'has nothing yet'}${c.error ? ` (${visible(c.error, 300)})` : ''}`);
            for (const order of row.orders ?? []) out(`  ${''.padEnd(8)}  ${visible(describeOrder(order), 400)}`);
            if (row.trust === 'first-server') out(`  ${''.padEnd(8)}  INSECURE: trusts the root.json its server handed out at enrollment, unchecked (--insecure-trust-first-server)`);
          }
        });
        return 0;
      } finally {
        await registry.close();
      }
    },
  },
};

/** Who runs this command, for the audit log: the CLI, its user and host. */
export async function cliActor(): Promise<Actor> {
  const os = await import('node:os');
  let user = process.env.SUDO_USER ?? '';
  try {
    user ||= os.userInfo().username;
  } catch {
    user ||= `uid ${process.getuid?.() ?? '?'}`;
  }
  return { via: 'cli', who: `${user}@${os.hostname()}` };
}

export const rolloutCommand: Command = {
  summary: 'show the rollout of the latest release ring by ring, or promote, halt or resume it',
  usage: `bulwark rollout status --data DIR [--json]
bulwark rollout promote|halt|resume --data DIR

A new release reaches the agents ring by ring: canary first, then early, then broad, each after
the ring before it ran it for the soak time (bulwark serve --rollout-soak, default 15 minutes)
without failures. Failures over the threshold (any in canary, more than 5% in the others) halt
it. promote releases the next ring now; halt stops the rollout; resume goes on after a halt.
The actions need the server running on DIR.

Options:
  --data DIR   the server's data directory
  --json       (status) print JSON`,
  options: { ...dataOption, json: { type: 'boolean' } },
  positionals: true,
  async run(values, positionals) {
    const [action, ...extra] = positionals;
    if (extra.length || !['status', 'promote', 'halt', 'resume'].includes(action ?? '')) throw new UsageError('use: bulwark rollout status|promote|halt|resume --data DIR');
    const dataDir = existingDataDir(values);
    if (action !== 'status') {
      const state = await (await import('../engine/control.js')).callControl<RolloutView>(dataDir, 'rollout', { action, who: await cliActor() }).catch((refusal: unknown) => {
        throw refusal instanceof Error ? new UsageError(refusal.message) : refusal;
      });
      if (!state) throw new UsageError(`no Bulwark server runs on ${dataDir}: start it (bulwark serve) to ${action} its rollout`);
      out(`rollout of release ${state.release}: ${state.halted ? `halted at ${state.stage} (${state.halted.reason})` : `${state.stage} released`}`);
      return 0;
    }
    const { Settings } = await import('../engine/settings.js');
    const settings = { ...DEFAULT_ROLLOUT, ...Settings.openReadOnly(dataDir).data.distribution.rollout };
    const state = Rollout.read(dataDir);
    let counted: Record<string, RingCounts> = {};
    if (fs.existsSync(path.join(dataDir, 'agents.sqlite'))) {
      const [{ AgentRegistry }, { Distribution }, { pictureOf }] = await registryModules();
      const registry = await AgentRegistry.open(dataDir, { readOnly: true });
      try {
        counted = pictureOf(await registry.tally({ release: Distribution.readCurrent(dataDir), now: Date.now(), held: heldRings(state, settings) })).rings;
      } finally {
        await registry.close();
      }
    }
    const stageIndex = state ? RINGS.indexOf(state.stage) : RINGS.length - 1;
    const rings = RINGS.map((ring, i) => ({ ring, ...(counted[ring] ?? { agents: 0, current: 0, failed: 0 }), released: !settings.enabled || !state || i <= stageIndex }));
    if (values.json) {
      out(JSON.stringify({ enabled: settings.enabled, soakSeconds: settings.soakSeconds, ...(state ?? {}), rings }));
      return 0;
    }
    if (!settings.enabled) out('Rollout rings are off: every agent gets each release at once (bulwark serve --rollout on).');
    else if (!state) out('No release has been rolled out yet.');
    else out(`Release ${state.release}: ${state.halted ? `HALTED at ${state.stage} since ${state.halted.at} — ${state.halted.reason}` : `${state.stage} released since ${state.stageSince}`}; soak ${settings.soakSeconds} s`);
    for (const r of rings) out(`  ${r.ring.padEnd(7)} ${r.released ? 'released' : 'held    '}  ${r.current}/${r.agents} current${r.failed ? `, ${r.failed} failed` : ''}`);
    // The agents' names, engines and errors are their words: made visible text.
    const content = state?.halted?.content;
    if (content) out(`  ${content.component ?? 'the content'}${content.version !== undefined ? ` ${content.version}` : ''} failed to load in ${visible(content.engine ?? 'its engine', 64)} (${content.stage ?? 'check'}) on ${content.agents.map((a) => visible(a, 100)).join(', ')}: ${visible(content.message, 300)}`);
    for (const f of state?.halted?.failing ?? []) out(`  failing: ${visible(f.name, 100)}: ${visible(f.error, 300)}`);
    return 0;
  },
};
