// The `bulwark` command. Each subcommand parses its own flags strictly, prints --help, and exits 0
// on success, 1 when the work failed, 2 when the command line was wrong — with one line on stderr
// saying why.
//
// A command loads the modules it uses when it runs (import() in run), so that `bulwark agents list`
// or `bulwark --help` does not pay for the engine, the server and their libraries.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BulwarkError, BusyError, describeError, UsageError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import type { RoleName } from '../publisher/signing-keys.js';
import type { Settings, SettingsData } from '../engine/settings.js';
import { parseListen } from '../server/listen.js';
import { DEFAULT_AGENT_PORT } from '../protocol/agent-protocol.js';
import { agentCommands, agentsAtAGlance, consumersFlag, rolloutCommand, serveFlags } from './agents.js';
import { consumersCommand } from './consumers.js';
import { componentCommand } from './component.js';
import { closest, dataOption, err, existingDataDir, lockDataDir, out, parseProblem, required, type Command } from './command.js';


function days(values: Record<string, unknown>, name: string): number | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0)) throw new UsageError(`--${name} must be a positive number of days`);
  return n;
}

function warnIfRecovered(settings: Settings): Settings {
  if (settings.recovered) err(`bulwark: warning: ${settings.recovered}`);
  return settings;
}

/** For commands that may save settings: an invalid settings.json is repaired (its original kept). */
const openSettings = async (dataDir: string) => warnIfRecovered((await import('../engine/settings.js')).Settings.open(dataDir));

/** For commands that only look: settings.json is never written, renamed or created. */
const readSettings = async (dataDir: string) => warnIfRecovered((await import('../engine/settings.js')).Settings.openReadOnly(dataDir));

/** What `bulwark update` prints of a run, and its exit code; `recovered`: a damaged settings file just lost what it held. */
async function reportUpdate(record: RunRecord, json: boolean, recovered: string | undefined): Promise<number> {
  const { summarize } = await import('../engine/engine.js');
  if (record.warning) err(`bulwark update: warning: ${record.warning}`);
  if (json) out(JSON.stringify(updateJson(record)));
  // A failure is for stderr, where scripts and people look for it.
  else if (record.result === 'ok') out(summarize(record));
  else err(summarize(record));
  // No source given or set is a wrong command line, unless a damaged settings file just lost it:
  // then the command was right, and the work failed.
  if (record.result !== 'ok' && record.errorCode === 'ERR_USAGE' && !recovered) return 2;
  return record.result === 'ok' ? 0 : 1;
}

async function sourceFlags(values: Record<string, unknown>) {
  const url = values.source as string | undefined;
  const root = values['trusted-root'] as string | undefined;
  if (!url && !root) return undefined;
  if (!url || !root) throw new UsageError('--source and --trusted-root go together');
  (await import('../engine/source.js')).checkSourceUrl(url);
  await checkTrustedRoot(root);
  return { url, trustedRoot: path.resolve(root) };
}

/** Refuse a --trusted-root that is not a TUF root.json while parsing flags, not at the first update. */
async function checkTrustedRoot(file: string): Promise<void> {
  const { rootProblem } = await import('../engine/source.js');
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`--trusted-root ${file} does not exist`);
    throw new UsageError(`--trusted-root ${file} cannot be read`, { cause: error });
  }
  const problem = rootProblem(bytes);
  if (problem) throw new UsageError(`--trusted-root ${file} is not a TUF root.json (${problem}); use the root.json the source's publisher gives out`);
}

/** A proxy's HOST:PORT, from the setting or flag `name` (named in the message). */
function parseProxyAddress(text: string, name: string): { host: string; port: number } {
  let address: { host: string; port: number };
  try {
    address = parseListen(text);
  } catch {
    throw new UsageError(`${name} "${text}" must be HOST:PORT, e.g. proxy.example.com:3128 or [2001:db8::1]:3128`);
  }
  if (address.port === 0) throw new UsageError(`${name} port must be from 1 to 65535`);
  return address;
}

const commands: Record<string, Command> = {
  publish: {
    summary: 'build or refresh a signed update source from full component files',
    usage: `bulwark publish --input DIR --out DIR --keys DIR [options]

Reads DIR/<component-id>/<version> (e.g. virus-pattern/175), writes a TUF-signed static source to
--out (host it with any web server), and generates signing keys into --keys on first use.
Give clients OUT/root.json as their trusted root.

An optional DIR/<component-id>/component.json declares {"name": "...", "duplication": true}
(both optional). With duplication, incremental patterns from the previous versions are published.
Built-in components have their own defaults; other ids are full-only unless declared.

Options:
  --input DIR               full component files, one directory per component
  --out DIR                 the update source to write or refresh
  --keys DIR                Ed25519 signing keys (created if missing; keep them private)
  --level N                 zstd level for full files (1-22, default 20)
  --patch-level N           zstd level for incremental patterns (1-22, default 12)
  --expires-timestamp DAYS  timestamp lifetime (default 1)
  --expires-snapshot DAYS   snapshot lifetime (default 7)
  --expires-targets DAYS    targets lifetime (default 30)
  --expires-root DAYS       root lifetime (default 365)
  --json                    print the result as JSON`,
    options: {
      input: { type: 'string' },
      out: { type: 'string' },
      keys: { type: 'string' },
      level: { type: 'string' },
      'patch-level': { type: 'string' },
      'expires-timestamp': { type: 'string' },
      'expires-snapshot': { type: 'string' },
      'expires-targets': { type: 'string' },
      'expires-root': { type: 'string' },
      json: { type: 'boolean' },
    },
    async run(values) {
      const zstdLevel = (name: string) => {
        const value = values[name] === undefined ? undefined : Number(values[name]);
        if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= 22)) throw new UsageError(`--${name} must be an integer from 1 to 22`);
        return value;
      };
      const level = zstdLevel('level');
      const patchLevel = zstdLevel('patch-level');
      const expiryDays: Partial<Record<RoleName, number>> = {};
      for (const role of ['timestamp', 'snapshot', 'targets', 'root'] as const) {
        const d = days(values, `expires-${role}`);
        if (d !== undefined) expiryDays[role] = d;
      }
      const { publish } = await import('../publisher/publisher.js');
      const result = publish({
        input: required(values, 'input'),
        out: required(values, 'out'),
        keys: required(values, 'keys'),
        expiryDays,
        ...(level !== undefined ? { level } : {}),
        ...(patchLevel !== undefined ? { patchLevel } : {}),
        log: values.json ? undefined : out,
        warn: (line) => err(`bulwark publish: ${line}`),
      });
      if (values.json) out(JSON.stringify(result));
      return 0;
    },
  },

  init: {
    summary: 'make a data directory for a server, optionally with its update source',
    usage: `bulwark init --data DIR [--source URL --trusted-root FILE] [--schedule TEXT]

Creates DIR (readable by its owner only) with its settings, so that the other commands accept it.
The first \`bulwark serve --data DIR\` (or \`bulwark update\` with --source) does the same.
Run again on an existing DIR, it changes only the settings given.

Options:
  --data DIR            the data directory to create
  --source URL          update source base URL
  --trusted-root FILE   the source's root.json
  --schedule TEXT       "hourly", "every 15 minutes", "every 6 hours" or "daily 03:30"`,
    options: { ...dataOption, source: { type: 'string' }, 'trusted-root': { type: 'string' }, schedule: { type: 'string' } },
    async run(values) {
      const dataDir = required(values, 'data');
      const source = await sourceFlags(values);
      const schedule = typeof values.schedule === 'string' ? (await import('../engine/schedule.js')).parseSchedule(values.schedule) : undefined;
      const existed = fs.existsSync(dataDir);
      if (!existed) fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const settings = await openSettings(dataDir);
      // conf writes the file on its first change; a new directory gets its settings file now.
      settings.set('schedule', schedule ?? settings.data.schedule);
      if (source) settings.set('source', source);
      out(`${existed ? 'Updated' : 'Created'} ${path.resolve(dataDir)}. Next: bulwark ${source || settings.data.source.url ? 'serve' : 'settings set source URL ROOT-FILE'} --data ${dataDir}`);
      return 0;
    },
  },

  update: {
    summary: 'update all components once from the update source',
    usage: `bulwark update --data DIR [--source URL --trusted-root FILE] [--json]

Refreshes the signed metadata, then installs each component's latest version by incremental
pattern where possible and by full file otherwise. Without --source, the source in the settings is
used. --source and --trusted-root are used for this update and saved in the settings once it
succeeds (or at once when DIR has no source yet, so the next serve retries it): a source that fails
never replaces a working one. A new data directory is made for them. When a server (or an agent)
runs on DIR, asks it to update now — joining its run, which then hands the result to the agents —
and prints the result. Exits 1 if any component failed, 2 if no source is given or set.

Options:
  --data DIR            data directory (store, history, settings)
  --source URL          update source base URL (saved once an update with it succeeds)
  --trusted-root FILE   the source's root.json (saved with --source)
  --json                print one JSON object: result, bytes, components`,
    options: { ...dataOption, source: { type: 'string' }, 'trusted-root': { type: 'string' }, json: { type: 'boolean' } },
    async run(values) {
      const source = await sourceFlags(values);
      // Setting the source is how a data directory starts (as with serve); without it, a mistyped
      // --data is refused rather than created.
      const dataDir = source ? required(values, 'data') : existingDataDir(values);
      const { Engine } = await import('../engine/engine.js');
      // The lock before anything is written (a settings file repaired, a source saved): a refused
      // update changes nothing. Only --source may make a new data directory.
      let release: () => void;
      try {
        release = source ? lockDataDir(dataDir) : (await import('../engine/lock.js')).acquireLock(dataDir);
      } catch (error) {
        // A server (or agent) holds this data directory: ask it to update now, joining its run.
        if (!(error instanceof BusyError) || source) throw error;
        const joined = await (await import('../engine/control.js')).requestUpdate(dataDir);
        if (!joined) throw error;
        return reportUpdate(joined, values.json === true, (await readSettings(dataDir)).recovered);
      }
      let record: RunRecord;
      let settings: Settings;
      try {
        settings = await openSettings(dataDir);
        // A source given here is tried before it is kept: a failed update loses nothing, and a working
        // source in the settings is not replaced by one that does not work. One run and out: the store is
        // hashed when its last full check is a day old, not at every run.
        const engine = new Engine({ dataDir, settings, verifyStoreAtStart: false, lockTaken: true, ...(source ? { source } : {}) });
        record = source
          ? await engine.withLock(async () => {
              const run = await engine.update('manual');
              const saved = settings.data.source;
              if (run.result === 'ok' || !saved.url) settings.set('source', source);
              else if (saved.url !== source.url || saved.trustedRoot !== source.trustedRoot) {
                err(`bulwark update: the settings keep their source (${saved.url}); the one given is saved once an update with it succeeds`);
              }
              return run;
            })
          : await engine.runOnce();
      } finally {
        release();
      }
      return reportUpdate(record, values.json === true, settings.recovered);
    },
  },

  status: {
    summary: 'show installed components, the last and next update, and the engine state',
    usage: `bulwark status --data DIR [--json]

Options:
  --data DIR   data directory
  --json       print JSON`,
    options: { ...dataOption, json: { type: 'boolean' } },
    async run(values) {
      const dataDir = existingDataDir(values);
      const settings = await readSettings(dataDir);
      const [{ Engine, readPersistedState }, { componentInfo }, { readEnrollment, TRUST_DESCRIPTIONS }, { describeSchedule }, { readOrders }, { describeOrder }] = await Promise.all([
        import('../engine/engine.js'),
        import('../engine/components.js'),
        import('../agent/agent.js'),
        import('../engine/schedule.js'),
        import('../agent/orders.js'),
        import('../protocol/agent-protocol.js'),
      ]);
      const engine = new Engine({ dataDir, settings });
      const status = engine.status();
      const running = readPersistedState(dataDir);
      const last = status.lastRun;
      const enrollment = readEnrollment(dataDir);
      const agents = enrollment ? undefined : await agentsAtAGlance(dataDir, status.network?.stack.kind);
      // The installation in one line, as the console and the tray say it (console/words.ts).
      const { headline } = await import('../engine/words.js');
      const engineNow = running ? running.state : last?.result === 'failed' ? { type: 'failed', ...(last.errorCode ? { code: last.errorCode } : {}), ...(last.error ? { error: last.error } : {}) } : { type: 'idle' };
      const { Rollout } = await import('../distribution/rollout.js');
      const rollout = enrollment ? undefined : Rollout.read(dataDir);
      const said = headline({
        engine: engineNow,
        neverUpdated: !last && status.components.length === 0,
        sourceSet: !!settings.data.source.url,
        // Agents held back by the rollout are counted apart (agent-status.ts), never as outdated.
        agents: agents ? { enabled: settings.data.distribution.enabled, counts: agents.counts, held: agents.counts.held, halted: rollout?.halted ?? null } : null,
        nameOf: (id) => componentInfo(id).name,
        now: Date.now(),
      });
      const report = {
        headline: said,
        role: enrollment ? ('agent' as const) : ('server' as const),
        ...(enrollment
          ? { agent: { server: enrollment.server, name: enrollment.name, id: enrollment.id, ring: enrollment.ring ?? null, trust: enrollment.trust ?? null, orders: readOrders(dataDir).current } }
          : {}),
        state: running ? running.state : { type: 'stopped' as const },
        components: status.components.map((c) => ({
          id: c.id,
          name: componentInfo(c.id).name,
          version: c.version,
          sha256: c.sha256,
          path: c.path,
          installedAt: c.installedAt,
          method: c.method,
        })),
        lastUpdate: last ? { at: last.finishedAt, trigger: last.trigger, result: last.result, bytes: last.bytes, ...(last.error ? { error: last.error } : {}) } : null,
        nextUpdate: running?.nextRun ?? null,
        schedule: describeSchedule(settings.data.schedule),
        network: status.network ? { stack: status.network.stack.kind, source: status.network.source ? { host: status.network.source.host, ipv4: status.network.source.v4, ipv6: status.network.source.v6 } : null, checkedAt: status.network.checkedAt } : null,
        cooldownUntil: status.cooldownUntil,
        problems: status.problems,
        consumers: status.consumers,
        ...(agents ? { agents: agents.counts } : {}),
        reminders: [...status.reminders, ...(agents?.reminders ?? [])],
      };
      if (values.json) {
        out(JSON.stringify(report));
        return 0;
      }
      if (enrollment) {
        out(`Agent "${enrollment.name}" of ${enrollment.server}${enrollment.ring ? ` (${enrollment.ring} ring)` : ''}`);
        out(`Trusts: ${enrollment.trust ? TRUST_DESCRIPTIONS[enrollment.trust] : "the vendor's root.json pinned at enrollment (how it was checked is not recorded: enrolled by an older Bulwark)"}`);
        // What the server's policy keeps this agent at, below the vendor's latest: never unseen.
        for (const order of readOrders(dataDir).current) out(`Server order: ${describeOrder(order)}`);
      } else out(`Bulwark: ${said.text}`);
      out(`Engine: ${report.state.type}${running ? ` (PID ${running.pid})` : ` (no Bulwark ${enrollment ? 'agent' : 'server'} running on this data directory)`}`);
      if (!enrollment) out(`Schedule: ${report.schedule}; next update: ${report.nextUpdate ?? '—'}`);
      // Held or pinned below the vendor's latest by its server, an agent's "ok" is not a plain one.
      const ordered = enrollment ? readOrders(dataDir).current.filter((o) => o.order !== 'hold-lapsed').length : 0;
      const behind = ordered ? `, but kept behind the vendor's latest by the server (${ordered === 1 ? 'the order' : 'the orders'} above)` : '';
      out(`Last update: ${last ? `${last.finishedAt} ${last.result}${last.error ? ` — ${last.error}` : ''}${behind}` : 'never'}`);
      if (report.network) out(`Network: ${report.network.stack} server${report.network.source ? `; source ${report.network.source.host} has ${[report.network.source.ipv4.length ? 'IPv4' : '', report.network.source.ipv6.length ? 'IPv6' : ''].filter(Boolean).join(' and ') || 'no addresses'}` : ''}`);
      if (agents) out(`Agents: ${agents.counts.total} — ${agents.counts.current} current, ${agents.counts.held} held by the rollout, ${agents.counts.outdated} outdated, ${agents.counts.updating} updating, ${agents.counts.failed} failed, ${agents.counts.unreachable} unreachable`);
      for (const r of report.reminders) out(`${r.severity.toUpperCase()}: ${r.title}. ${r.body} What to do: ${r.action}`);
      if (!report.components.length) out('No components installed.');
      for (const c of report.components) out(`  ${c.name.padEnd(32)} ${String(c.version).padStart(8)}  ${c.method.padEnd(11)} ${c.installedAt}  ${c.sha256.slice(0, 16)}…  ${c.path}`);
      if (report.consumers.length) out('Engines the components are handed to:');
      for (const c of report.consumers) {
        const where = c.active ? `has the active version${c.version !== null ? ` (${c.version})` : ''}` : c.version !== null ? `has ${c.version}, not the active version` : 'has nothing yet';
        out(`  ${c.id} → ${c.engine} (${c.path}): ${where}`);
        if (c.failure) out(`    ${c.failure.version} ${c.failure.kind === 'content' ? 'refused' : 'failed'} at ${c.failure.stage} (${c.failure.at}): ${c.failure.message}`);
      }
      return 0;
    },
  },

  serve: {
    summary: 'run the update server: start-up update, then on schedule, until stopped',
    usage: `bulwark serve --data DIR [--source URL --trusted-root FILE] [--schedule TEXT] [--console [--listen ADDR:PORT]]
              [--agents-listen ADDR:PORT ... | --agents-listen off] [--agent-poll SECONDS] [--agent-spread SECONDS]
              [--notify mqtt://HOST:PORT/TOPIC] [--rollout on|off] [--rollout-soak SECONDS] [--agent-threads N|auto]
              [--consumers FILE]

Runs the start-up update, then updates on the schedule from the settings (hourly by default)
until SIGINT or SIGTERM, and hands every update to the agents (see bulwark agent --help).
--source/--trusted-root, --schedule and the agent options are saved in the settings.

Options:
  --data DIR                 data directory
  --source URL               update source base URL (saved in the settings)
  --trusted-root FILE        the source's root.json (saved in the settings)
  --schedule TEXT            "hourly", "every 15 minutes", "every 6 hours" or "daily 03:30"
  --console                  serve the console to a browser; prints its address with the access token
                             (kept in DIR across restarts; under systemd it is not printed to the
                             journal: \`bulwark console-url --data DIR\` prints it)
  --listen ADDR:PORT         where the console listens (default: where it listened before, else
                             127.0.0.1 on a free port)
  --agents-listen ADDR:PORT  where agents connect (repeatable; default: every address family of
                             this host, port ${DEFAULT_AGENT_PORT}); "off" serves no agents
  --agent-poll SECONDS       how often agents poll and report (default 300)
  --agent-spread SECONDS     longest random wait of an agent after a release is announced (default 30)
  --notify URL               also announce releases through an MQTT broker: mqtt://HOST:PORT/TOPIC
                             (agents given the same --notify subscribe there); "off" to stop
  --rollout on|off           roll each release out ring by ring: canary, early, broad (default on)
  --rollout-soak SECONDS     how long a ring runs a release without failures before the next gets it
                             (default 900)
  --agent-threads N|auto     threads that take the agents' connections off the main thread; 0: the
                             main thread answers them (auto: one per core, up to 4, once 1,000
                             agents are enrolled; needs Node 22.12+ on Linux and 2 cores)
  --consumers FILE           engines on this machine that use the components (default: DIR/consumers.json
                             if there is one; see docs/consumers.md)`,
    options: {
      ...dataOption,
      source: { type: 'string' },
      'trusted-root': { type: 'string' },
      schedule: { type: 'string' },
      console: { type: 'boolean' },
      listen: { type: 'string' },
      ...serveFlags.options,
      consumers: { type: 'string' },
    },
    async run(values) {
      const dataDir = required(values, 'data');
      // Check every flag before saving any, so a refused command line changes nothing.
      const source = await sourceFlags(values);
      const consumers = await consumersFlag(path.resolve(dataDir), values.consumers);
      const { parseSchedule } = await import('../engine/schedule.js');
      const schedule = typeof values.schedule === 'string' ? parseSchedule(values.schedule) : undefined;
      if (values.listen !== undefined && !values.console) throw new UsageError('--listen goes with --console');
      // No --listen: the address it had before (kept in the data directory), else any free port.
      const listen = typeof values.listen === 'string' ? parseListen(values.listen) : { port: 0, remembered: true };
      // The lock before any write: a second server on a data directory in use is refused and
      // changes nothing (its flags would otherwise move the running one's port or source).
      const release = lockDataDir(dataDir);
      try {
        const settings = await openSettings(dataDir);
        const distribution = serveFlags.parse(values, settings.data.distribution);
        if (source) settings.set('source', source);
        if (schedule) settings.set('schedule', schedule);
        if (distribution) settings.set('distribution', distribution);
        const { serve } = await import('./serve.js');
        return await serve(dataDir, settings, { lockTaken: true, ...(values.console ? { console: listen } : {}), ...(consumers ? { consumers } : {}) });
      } finally {
        release();
      }
    },
  },

  'console-url': {
    summary: "print the browser console's sign-in address (or replace its access secret)",
    usage: `bulwark console-url --data DIR [--rotate]

Prints the address that signs a browser in to the console of the server on DIR (bulwark serve
--console), with its access token. The token and the address are kept in DIR across restarts, so
bookmarks and open tabs keep working. --rotate replaces the token: every browser must sign in again
(a running server takes the new one at once).

Options:
  --data DIR   the server's data directory
  --rotate     make a new access token`,
    options: { ...dataOption, rotate: { type: 'boolean' } },
    async run(values) {
      const dataDir = existingDataDir(values);
      const access = await import('../console/access.js');
      if (values.rotate) {
        const { cliActor } = await import('./agents.js');
        const who = await cliActor();
        const rotated = await (await import('../engine/control.js')).callControl<{ url: string | null }>(dataDir, 'consoleToken', { who });
        if (!rotated) {
          access.rotateConsoleToken(dataDir);
          new (await import('../engine/audit.js')).AuditLog(dataDir).record(who, { action: 'rotate-console-token', target: 'console access' });
        }
        err('The previous console access token no longer signs in; open the address below.');
      }
      const saved = access.readConsoleAccess(dataDir);
      const url = saved && access.signInUrl(saved);
      if (!url) throw new UsageError(`the console of ${dataDir} has not been served yet: start it with \`bulwark serve --data ${dataDir} --console\``);
      out(url);
      return 0;
    },
  },

  ...agentCommands,
  component: componentCommand,
  rollout: rolloutCommand,
  consumers: consumersCommand,

  'test-connection': {
    summary: 'check that the update source can be reached, directly or through the proxy',
    usage: `bulwark test-connection --data DIR [--source URL] [--proxy HOST:PORT | --no-proxy] [--proxy-user NAME]

Fetches the source's signed timestamp the way an update would and says exactly what failed:
proxy unreachable, proxy refused, authentication required or wrong (407), source unreachable,
DNS, TLS or timeout — with what to do. Defaults come from the settings; the proxy password is
read from the BULWARK_PROXY_PASSWORD environment variable when --proxy-user is given (never
from the command line, where other users could see it). Exits 1 when the test fails.

Options:
  --data DIR            data directory (for the settings)
  --source URL          source to test instead of the configured one
  --proxy HOST:PORT     proxy to test instead of the configured one
  --no-proxy            test a direct connection
  --proxy-user NAME     proxy user name
  --json                print the result as JSON`,
    options: { ...dataOption, source: { type: 'string' }, proxy: { type: 'string' }, 'no-proxy': { type: 'boolean' }, 'proxy-user': { type: 'string' }, json: { type: 'boolean' } },
    async run(values) {
      const dataDir = existingDataDir(values);
      const settings = (await readSettings(dataDir)).data;
      let proxy = settings.proxy;
      if (values['no-proxy']) proxy = { ...proxy, enabled: false };
      if (typeof values.proxy === 'string') {
        const { host, port } = parseProxyAddress(values.proxy, '--proxy');
        proxy = { enabled: true, host, port, username: '', password: '' };
      }
      if (typeof values['proxy-user'] === 'string') proxy = { ...proxy, username: values['proxy-user'], password: process.env.BULWARK_PROXY_PASSWORD ?? '' };
      const url = typeof values.source === 'string' ? values.source : settings.source.url;
      const [{ cooldownFor }, { testConnection }] = await Promise.all([import('../engine/fetcher.js'), import('../engine/connection-test.js')]);
      const until = cooldownFor(dataDir, url);
      const result = await testConnection({ url, proxy, ...(until ? { cooldownUntil: until } : {}) });
      if (values.json) out(JSON.stringify(result));
      else out(result.ok ? `OK: ${result.message}` : `FAILED (${result.stage}): ${result.message}. What to do: ${result.action ?? 'check the settings'}`);
      return result.ok ? 0 : 1;
    },
  },

  settings: {
    summary: 'show or change settings',
    usage: `bulwark settings --data DIR [get [KEY] | set KEY VALUE]

Keys:
  schedule            "hourly", "every 15 minutes", "every 6 hours", "daily 03:30"
  source              "URL ROOT-FILE" (a custom update source and its trusted root.json)
  proxy               "HOST:PORT [USER]" (password from BULWARK_PROXY_PASSWORD), or "off"
  agents              agents' host names or addresses, separated by spaces or commas
  notifications.updateFailed, notifications.componentsInstalled, startAtLogin   true or false
  notifications.webhook   an http(s) URL that gets a JSON POST per notification, or "off"
  notifications.syslog    udp://HOST:PORT or tcp://HOST:PORT (RFC 5424), or "off"

A refused value changes nothing; the message says why. Setting the source on a DIR that does not
exist yet makes it (as \`bulwark init\` does); any other key needs an existing one.`,
    options: dataOption,
    positionals: true,
    async run(values, positionals) {
      const [action = 'get', key, ...rest] = positionals;
      // Setting the source is how a data directory starts (as with update --source and serve); any
      // other key on a missing directory is a mistyped --data, refused rather than created.
      const startsOne = action === 'set' && key === 'source' && rest.length > 0 && !fs.existsSync(required(values, 'data'));
      const dataDir = startsOne ? required(values, 'data') : existingDataDir(values);
      if (action === 'get') {
        const settings = await readSettings(dataDir);
        const data = { ...settings.data, proxy: { ...settings.data.proxy, password: settings.data.proxy.password ? '(stored)' : '' } } as unknown as Record<string, unknown>;
        out(JSON.stringify(key ? lookup(data, key) : data, null, 2));
        return 0;
      }
      if (action !== 'set' || !key || rest.length === 0) throw new UsageError('use: bulwark settings --data DIR set KEY VALUE');
      if (startsOne) fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      try {
        await applySetting(await openSettings(dataDir), key, rest.join(' '));
      } catch (error) {
        // A refused source leaves no directory behind: nothing was there before.
        if (startsOne) fs.rmSync(dataDir, { recursive: true, force: true });
        throw error;
      }
      if (startsOne) err(`made the data directory ${dataDir} (it did not exist)`);
      out(`${key} saved`);
      return 0;
    },
  },

  demo: {
    summary: 'run Bulwark against a built-in demo update source on 127.0.0.1',
    usage: `bulwark demo [--dir DIR] [--every SECONDS] [--port N] [--console [--listen ADDR:PORT]]

Generates pattern files for every component, publishes them as a signed source on 127.0.0.1,
publishes a new version every --every seconds (default 60) and runs the server against it with
a one-minute schedule, so incremental updates show as they happen. Ctrl+C stops it.

Options:
  --dir DIR         where the demo keeps its source and data (default: a folder under the OS temp dir)
  --every SECONDS   how often the demo source publishes new versions (10-3600, default 60)
  --port N          port for the demo source (default: any free port)
  --console         also serve the console to a browser; prints its URL with an access token
  --listen ADDR:PORT  where the console listens (default 127.0.0.1:0)`,
    options: { dir: { type: 'string' }, every: { type: 'string' }, port: { type: 'string' }, console: { type: 'boolean' }, listen: { type: 'string' } },
    async run(values) {
      const every = values.every === undefined ? 60 : Number(values.every);
      if (!(Number.isInteger(every) && every >= 10 && every <= 3600)) throw new UsageError('--every must be a whole number of seconds from 10 to 3600');
      const port = values.port === undefined ? 0 : Number(values.port);
      if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new UsageError('--port must be a port number');
      if (values.listen !== undefined && !values.console) throw new UsageError('--listen goes with --console');
      const listen = (typeof values.listen === 'string' ? parseListen(values.listen) : { port: 0 });
      const [{ runDemo }, { serve }] = await Promise.all([import('../demo/demo.js'), import('./serve.js')]);
      return runDemo({ ...(typeof values.dir === 'string' ? { dir: values.dir } : {}), everySeconds: every, port, log: out, serve, ...(values.console ? { console: listen } : {}) });
    },
  },
};

function lookup(data: Record<string, unknown>, key: string): unknown {
  let value: unknown = data;
  for (const part of key.split('.')) {
    // Own keys only: "constructor" or "__proto__" are the object's, not settings.
    if (!value || typeof value !== 'object' || !Object.hasOwn(value, part)) throw new UsageError(`no setting named ${key}`);
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function parseBoolean(key: string, text: string): boolean {
  if (text === 'true' || text === 'on' || text === 'yes') return true;
  if (text === 'false' || text === 'off' || text === 'no') return false;
  throw new UsageError(`${key} must be true or false, not "${text}"`);
}

async function applySetting(settings: Settings, key: string, text: string): Promise<void> {
  const current: SettingsData = settings.data;
  switch (key) {
    case 'schedule':
      return settings.set('schedule', (await import('../engine/schedule.js')).parseSchedule(text));
    case 'source': {
      // The URL has no spaces; the rest is the root file's path, which may (Application Support).
      const trimmed = text.trim();
      const gap = trimmed.search(/\s/);
      const url = gap < 0 ? trimmed : trimmed.slice(0, gap);
      const root = gap < 0 ? '' : trimmed.slice(gap).trim();
      return settings.set('source', { url, trustedRoot: root ? path.resolve(root) : '' });
    }
    case 'notifications.updateFailed':
    case 'notifications.componentsInstalled': {
      const field = key.split('.')[1] as keyof SettingsData['notifications'];
      return settings.set('notifications', { ...current.notifications, [field]: parseBoolean(key, text) });
    }
    case 'notifications.webhook':
    case 'notifications.syslog': {
      const field = key.split('.')[1] as 'webhook' | 'syslog';
      const value = text.trim() === 'off' ? '' : text.trim();
      return settings.set('notifications', { ...current.notifications, [field]: value });
    }
    case 'startAtLogin':
      return settings.set('startAtLogin', parseBoolean(key, text));
    case 'proxy': {
      if (text.trim() === 'off') return settings.set('proxy', { ...current.proxy, enabled: false });
      const [address = '', user = ''] = text.trim().split(/\s+/);
      const { host, port } = parseProxyAddress(address, 'proxy');
      return settings.set('proxy', { enabled: true, host, port, username: user, password: user ? (process.env.BULWARK_PROXY_PASSWORD ?? '') : '' });
    }
    case 'agents':
      return settings.set('agents', text.split(/[\s,]+/).filter(Boolean));
    default:
      throw new UsageError(`no setting named ${key}`);
  }
}

/** The JSON shape `bulwark update --json` promises. */
export function updateJson(record: RunRecord) {
  return {
    result: record.result,
    bytes: record.bytes,
    ...(record.error ? { error: record.error } : {}),
    components: record.components.map((c) => ({
      id: c.id,
      previousVersion: c.previousVersion,
      version: c.version,
      method: c.method,
      reason: c.reason,
      bytes: c.bytes,
      ...(c.error ? { error: c.error } : {}),
    })),
  };
}

function unknownCommand(name: string): number {
  const guess = name.startsWith('-') ? undefined : closest(name, Object.keys(commands));
  err(`bulwark: unknown command "${name}"${guess ? `; did you mean "${guess}"?` : ''} (run bulwark --help for the list)`);
  return 2;
}

function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return `Bulwark — security update server

Usage: bulwark <command> [options]    (bulwark <command> --help for details; bulwark --version)

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name) {
    // No command is a wrong command line (exit 2), with the list of commands to choose from.
    err(helpText());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && !commands[topic]) return unknownCommand(topic);
    out(topic ? commands[topic]!.usage : helpText());
    return 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    out(pkg.version);
    return 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) return unknownCommand(name);
  try {
    let parsed;
    const options = { ...command.options, help: { type: 'boolean', short: 'h' } } as const;
    try {
      parsed = parseArgs({ args: rest, options, allowPositionals: command.positionals ?? false, strict: true });
    } catch (error) {
      throw new UsageError(`${parseProblem(error, options as Record<string, { type: string }>)} (see bulwark ${name} --help)`);
    }
    if (parsed.values.help) {
      out(command.usage);
      return 0;
    }
    return await command.run(parsed.values as Record<string, string | boolean | string[] | undefined>, parsed.positionals);
  } catch (error) {
    err(`bulwark ${name}: ${describeError(error)}`);
    return error instanceof UsageError || (error instanceof BulwarkError && (error.code === 'ERR_SETTINGS' || error.code === 'ERR_CONSUMER_CONFIG')) ? 2 : 1;
  }
}
