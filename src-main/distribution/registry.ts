// The agent registry: who enrolled, with what credential, and what each agent last reported. SQLite
// (DATA/agents.sqlite) through sqlite3, an N-API binding, so one binary loads in Node and in Electron.
// WAL journal: readers (`bulwark agents list` while the server runs) never block the writer, and a
// report is one row written. Survives restarts and kill -9 (SQLite's journal).
//
// Credentials: an agent holds "<id>.<secret>", where the secret is an HMAC of its id under a key only
// this registry holds (in its meta table), so checking one costs no lookup — a fleet of 100,000 agents
// reporting is not a fleet of lookups; the row's existence is checked by the write itself. The
// enrollment tokens (one per ring, shared by the new agents of that ring: the token decides the ring,
// never the agent) live in the meta table too, so `bulwark agents token --rotate` in another process
// takes effect at the next enrollment. Names are unique (ignoring case): a second agent asking for a
// name taken gets it with a suffix ("web-01-2"), and is told so.
//
// Reports are written in groups: each is one row, but the rows that arrive together share one
// transaction (group commit), so thousands of reports a second cost a few commits.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { BulwarkError, diskTrouble, StoreError, UsageError } from '../engine/errors.js';
import { RINGS, type AgentComponent, type AgentConsumer, type AgentFailure, type AgentLastRun, type AgentReport, type Family, type Ring, type ServerOrder, type TrustMode } from '../protocol/agent-protocol.js';
import { visible } from './untrusted.js';
import { shortId, SILENT_SQL, stateSql, versionsJson, type AgentState, type SqlParams, type StateBasis } from './agent-status.js';

export type AgentPhase = 'idle' | 'notified' | 'updating';

export interface AgentRecord extends Omit<AgentReport, 'lastRun' | 'phase' | 'consumers' | 'trust' | 'orders'> {
  consumers: AgentConsumer[];
  id: string;
  ring: string;
  enrolledAt: string;
  lastSeen: string;
  /** The address its last request came from. */
  address: string;
  lastRun: AgentLastRun | null;
  phase: AgentPhase;
  notifiedRelease: number;
  /** How it came to trust the vendor's root, as it last reported (null: it did not say). */
  trust: TrustMode | null;
  /** What it last reported the server's policy keeps it at, below the vendor's latest (null: nothing). */
  orders: ServerOrder[] | null;
}

/** An agent as `bulwark agents list` and the console show it: its record, its state and its address families. */
export type AgentListed = AgentRecord & { state: AgentState; families: Family[] };

/** How many agents of a ring are in a state. */
export interface AgentTally {
  state: AgentState;
  ring: string;
  agents: number;
}

export type AgentSort = 'state' | 'name' | 'hostname' | 'address' | 'lastSeen';

export interface AgentPageQuery {
  /** Agents in any of these states (all when absent). */
  states?: AgentState[];
  ring?: string;
  /** Text found (ignoring case) in the name, host name, address or last error. */
  text?: string;
  sort: AgentSort;
  descending: boolean;
  limit: number;
}

/** An agent whose last run failed at or after $since, not by a failure of its own (null: an agent that does not say whose). */
const FAILED_SINCE = `(last_result = 'failed' AND last_failure IS NOT 'local' AND COALESCE(last_failure_at, last_run_at) >= $since)`;

/** The state column sorts by urgency. */
const STATE_ORDER: readonly AgentState[] = ['failed', 'unreachable', 'outdated', 'notified', 'updating', 'held', 'current'];

/** Who an agent is, in a few words: to tell agents that share a name apart. */
export interface AgentBrief {
  id: string;
  name: string;
  hostname: string;
  address: string;
  ring: string;
  lastSeen: string;
}

export { shortId } from './agent-status.js';

/** No agent has that id or name. */
export class UnknownAgentNameError extends UsageError {
  constructor(readonly given: string) {
    super(`no agent is named or numbered "${given}" (see bulwark agents list)`);
  }
}

/** Several agents share the name given: one is picked by its id. */
export class AmbiguousAgentError extends UsageError {
  constructor(
    readonly given: string,
    readonly agents: AgentBrief[],
  ) {
    super(
      `${agents.length} agents are named "${visible(given, 100)}"; give the id of the one you mean: ${agents
        .slice(0, 5)
        .map((a) => `${shortId(a.id)} (${[visible(a.hostname, 253), a.address].filter(Boolean).join(', ') || 'no address'}, last seen ${a.lastSeen})`)
        .join('; ')}`,
    );
  }
}

/** The enrollment token was wrong or has been rotated. */
export class EnrollmentRefusedError extends BulwarkError {
  constructor() {
    super('ERR_USAGE', 'the enrollment token is wrong or was rotated');
  }
}

interface Row {
  families: string;
  id: string;
  secret_hash: string;
  name: string;
  hostname: string;
  ring: string;
  enrolled_at: number;
  last_seen: number;
  address: string;
  addresses: string;
  components: string;
  last_run: string | null;
  phase: AgentPhase;
  notified_release: number;
  poll_seconds: number;
  consumers: string;
  trust: TrustMode | null;
  orders: string | null;
}

/** Columns derived from a report at write time, so the queries over a whole fleet never parse JSON per row. */
const DERIVED_COLUMNS = {
  versions: `TEXT NOT NULL DEFAULT '{}'`, // {"virus-pattern": 175, ...}: what "current" is checked against
  families: `TEXT NOT NULL DEFAULT ''`, // '4', '6' or '4,6': the address families of its own interfaces
  last_result: 'TEXT', // 'ok' | 'failed' (last_run.result)
  last_run_at: 'INTEGER', // ms (last_run.at)
  last_error: 'TEXT', // last_run.error
  last_failure: 'TEXT', // last_run.failure.kind: 'content' | 'local' | 'release' (null: an agent that does not say)
  last_failure_at: 'INTEGER', // ms (last_run.failure.at): a version refused earlier counts from when it was refused
  consumers: `TEXT NOT NULL DEFAULT '[]'`, // the engines its components are handed to (AgentConsumer[])
} as const;

/** Columns added after the table's first release, with what fills them in an older registry (null: nothing). */
const LATER_COLUMNS: Record<string, { type: string; fill: string | null }> = {
  ...Object.fromEntries(Object.entries(DERIVED_COLUMNS).map(([column, type]) => [column, { type, fill: column }])),
  trust: { type: 'TEXT', fill: null }, // the report's trust: how the agent pinned the vendor's root
  orders: { type: 'TEXT', fill: null }, // the report's orders (JSON): what the server keeps it behind at
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL,
  name TEXT NOT NULL,
  hostname TEXT NOT NULL DEFAULT '',
  ring TEXT NOT NULL DEFAULT 'broad',
  enrolled_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  address TEXT NOT NULL DEFAULT '',
  addresses TEXT NOT NULL DEFAULT '[]',
  components TEXT NOT NULL DEFAULT '[]',
  last_run TEXT,
  phase TEXT NOT NULL DEFAULT 'idle',
  notified_release INTEGER NOT NULL DEFAULT 0,
  poll_seconds INTEGER NOT NULL DEFAULT 300,
${Object.entries(LATER_COLUMNS).map(([column, { type }]) => `  ${column} ${type}`).join(',\n')}
);
-- Each agent's last runs (RUNS_KEPT), for its details in the console.
CREATE TABLE IF NOT EXISTS agent_runs (agent_id TEXT NOT NULL, at INTEGER NOT NULL, run TEXT NOT NULL, PRIMARY KEY (agent_id, at)) WITHOUT ROWID;
-- Agents are listed by name, ignoring case (as the console sorts them).
DROP INDEX IF EXISTS agents_by_name;
CREATE INDEX IF NOT EXISTS agents_by_name_nocase ON agents (name COLLATE NOCASE, id);`;

const hash = (secret: string) => crypto.createHash('sha256').update(secret).digest('hex');
// Never starts with '-' (base64url may): `bulwark agent --token -x…` would read as an option.
const randomToken = () => `bw${crypto.randomBytes(24).toString('base64url')}`;
/** Where a ring's enrollment token is kept (broad's under the key every registry had before rings had tokens). */
const tokenKey = (ring: Ring) => (ring === 'broad' ? 'enrollment_token' : `enrollment_token_${ring}`);

/** An agent's row is not in the registry (its credential names an agent the server does not know). */
export class UnknownAgentError extends BulwarkError {
  constructor() {
    super('ERR_USAGE', 'unknown agent');
  }
}

/**
 * Read-only opens (the CLI's listings) map the file instead of copying pages in: a listing in name
 * order visits the table's pages out of order, and mapped pages take a third off `agents list` over
 * 100,000 agents. Not the server's reader: mapped pages count in its RSS, and it lists a page at a time.
 */
const READER_MMAP = 'PRAGMA mmap_size = 268435456';

/** Reports waiting for their group's commit. */
interface PendingReport {
  params: unknown[];
  /** With whether the report changed what the console lists of the agent (see report()). */
  resolve: (news: boolean) => void;
  reject: (error: unknown) => void;
}

/** Most reports committed together. */
const GROUP_MAX = 1000;
/** Runs kept per agent for its details. */
const RUNS_KEPT = 20;

export class AgentRegistry {
  private credentialKey: Buffer | undefined;
  private pending: PendingReport[] = [];
  private flushing = false;
  /** Transactions one after the other (SQLite has one writer; so does this connection). */
  private writing: Promise<unknown> = Promise.resolve();

  /** Queries over the whole fleet go through their own connection, so they never hold up reports (WAL: readers do not block the writer). */
  private reader: sqlite3.Database;

  private constructor(
    private readonly db: sqlite3.Database,
    readonly file: string,
  ) {
    this.reader = db;
  }

  /**
   * Open (or create) DATA/agents.sqlite; read-only opens fail when there is none. `memory`: an empty
   * registry that is never written anywhere (a server whose registry file cannot be opened at all).
   */
  static async open(dataDir: string, options: { readOnly?: boolean; memory?: boolean } = {}): Promise<AgentRegistry> {
    const file = options.memory ? ':memory:' : path.join(dataDir, 'agents.sqlite');
    if (options.readOnly && !fs.existsSync(file)) throw new StoreError(`no agent registry in ${dataDir} (no agent has enrolled with a server there)`);
    fs.mkdirSync(dataDir, { recursive: true });
    const connect = (mode: number) =>
      new Promise<sqlite3.Database>((resolve, reject) => {
        const opened: sqlite3.Database = new sqlite3.Database(file, mode, (error) => (error ? reject(new StoreError(`cannot open the agent registry ${file}`, { cause: error, file })) : resolve(opened)));
      });
    const db = await connect(options.readOnly ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE);
    const registry = new AgentRegistry(db, file);
    try {
      await registry.exec('PRAGMA busy_timeout = 5000');
      if (options.memory) {
        await registry.exec(SCHEMA);
      } else if (!options.readOnly) {
        await registry.exec('PRAGMA journal_mode = WAL');
        // NORMAL in WAL mode: a kill -9 loses nothing committed; only a power cut can cost the last reports.
        await registry.exec('PRAGMA synchronous = NORMAL');
        await registry.exec(SCHEMA);
        await registry.addDerivedColumns();
        fs.chmodSync(file, 0o600);
        registry.reader = await connect(sqlite3.OPEN_READONLY);
        await new Promise<void>((resolve) => registry.reader.exec('PRAGMA busy_timeout = 5000', () => resolve()));
      } else if ((await registry.missingColumns()).length) {
        // A registry from before the derived columns, not opened by a server since: add them first.
        await registry.close();
        await (await AgentRegistry.open(dataDir)).close();
        return AgentRegistry.open(dataDir, options);
      } else {
        await registry.exec(READER_MMAP);
      }
    } catch (error) {
      await registry.close();
      throw error;
    }
    return registry;
  }

  /**
   * What SQLite's own check finds wrong with a registry file (PRAGMA quick_check: every page and
   * record, not the indexes' agreement with their table), or undefined when nothing. Damage that stops
   * the file from opening at all (not a database) is said too; any other failure to open is thrown.
   */
  static async check(file: string): Promise<string | undefined> {
    let db: sqlite3.Database | undefined;
    const connect = (mode: number) =>
      new Promise<sqlite3.Database>((resolve, reject) => {
        const opened: sqlite3.Database = new sqlite3.Database(file, mode, (error) => (error ? reject(error) : resolve(opened)));
      });
    try {
      // Read-write (never creating it), as a WAL database needs to read its log; read-only where it cannot be written.
      db = await connect(sqlite3.OPEN_READWRITE).catch(() => connect(sqlite3.OPEN_READONLY));
      const rows = await new Promise<{ quick_check: string }[]>((resolve, reject) => db!.all<{ quick_check: string }>('PRAGMA quick_check(5)', (error, found) => (error ? reject(error) : resolve(found))));
      // Its lines, without the "*** in database main ***" heading.
      const problems = rows.flatMap((row) => row.quick_check.split('\n')).filter((text) => text !== 'ok' && !text.startsWith('***'));
      return problems.length ? `SQLite's check found: ${problems.join('; ')}` : undefined;
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return `${(error as Error).message.replace(/^SQLITE_\w+: /, '')} (${code})`;
      throw new StoreError(`cannot check the agent registry ${file}`, { cause: error, file });
    } finally {
      await new Promise<void>((resolve) => (db ? db.close(() => resolve()) : resolve()));
    }
  }

  /** The registry's settings (the enrollment token, the credential key) as far as a damaged file still gives them. */
  static async readMeta(file: string): Promise<Record<string, string>> {
    try {
      const db = await new Promise<sqlite3.Database>((resolve, reject) => {
        const opened: sqlite3.Database = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (error) => (error ? reject(error) : resolve(opened)));
      });
      const rows = await new Promise<{ key: string; value: string }[]>((resolve) => db.all<{ key: string; value: string }>('SELECT key, value FROM meta', (error, found) => resolve(error ? [] : found)));
      await new Promise<void>((resolve) => db.close(() => resolve()));
      return Object.fromEntries(rows.filter((row) => typeof row.key === 'string' && typeof row.value === 'string').map((row) => [row.key, row.value]));
    } catch {
      return {};
    }
  }

  /** Keep these settings (salvaged from a damaged registry) in this one. */
  async writeMeta(meta: Record<string, string>): Promise<void> {
    for (const [key, value] of Object.entries(meta)) await this.run(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, [key, value]);
  }

  /**
   * A consistent copy of the registry into `file`, made by SQLite's online backup API while the server
   * goes on (reports wait only for the moment each batch of pages is copied).
   */
  async copyTo(file: string): Promise<void> {
    type Backup = { step(pages: number, done: (error: Error | null) => void): void; finish(done: (error: Error | null) => void): void; completed: boolean };
    const backup = (this.db as unknown as { backup(file: string): Backup }).backup(file);
    await new Promise<void>((resolve, reject) => backup.step(-1, (error) => (error ? reject(this.failed(error)) : resolve())));
    await new Promise<void>((resolve, reject) => backup.finish((error) => (error ? reject(this.failed(error)) : resolve())));
    if (!backup.completed) throw new StoreError(`the copy of the agent registry into ${file} did not complete`, { file });
    // A file of its own, without a write-ahead log: readable as it is, even from a read-only disk.
    await new Promise<void>((resolve, reject) => {
      const copy: sqlite3.Database = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (error) => {
        if (error) return reject(this.failed(error));
        copy.exec('PRAGMA journal_mode = DELETE', (changed) => copy.close((closed) => (changed || closed ? reject(this.failed((changed ?? closed)!)) : resolve())));
      });
    });
  }

  private async missingColumns(): Promise<string[]> {
    const have = new Set((await this.all<{ name: string }>(`PRAGMA table_info(agents)`, [])).map((c) => c.name));
    return Object.keys(LATER_COLUMNS).filter((column) => !have.has(column));
  }

  /** A registry written before the later columns existed gets them; the derived ones filled in from the reports' JSON. */
  private async addDerivedColumns(): Promise<void> {
    const missing = await this.missingColumns();
    if (!missing.length) return;
    await this.transaction(async () => {
      for (const column of missing) await this.exec(`ALTER TABLE agents ADD COLUMN ${column} ${LATER_COLUMNS[column]!.type}`);
      if (!missing.some((column) => LATER_COLUMNS[column]!.fill !== null)) return;
      await this.exec(`UPDATE agents SET
        versions = COALESCE((SELECT json_group_object(json_extract(value, '$.id'), json_extract(value, '$.version')) FROM json_each(components)), '{}'),
        families = COALESCE((SELECT group_concat(family, ',') FROM (SELECT DISTINCT json_extract(value, '$.family') AS family FROM json_each(addresses) ORDER BY 1)), ''),
        last_result = json_extract(last_run, '$.result'),
        last_run_at = CAST(ROUND((julianday(json_extract(last_run, '$.at')) - 2440587.5) * 86400000) AS INTEGER),
        last_error = json_extract(last_run, '$.error'),
        last_failure = json_extract(last_run, '$.failure.kind'),
        last_failure_at = CAST(ROUND((julianday(json_extract(last_run, '$.failure.at')) - 2440587.5) * 86400000) AS INTEGER)`);
    });
  }

  /** A statement failed: on which file, and why (a disk's refusal in words: a full disk, a read-only mount). */
  private failed(error: Error): StoreError {
    return new StoreError(diskTrouble(error, this.file) ? `the agent registry ${this.file}` : `the agent registry ${this.file}: ${error.message}`, { cause: error, file: this.file });
  }

  private exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (error) => (error ? reject(this.failed(error)) : resolve())));
  }

  private run(sql: string, params: unknown[]): Promise<number> {
    const failed = (error: Error) => this.failed(error);
    return new Promise((resolve, reject) =>
      this.db.run(sql, params, function (error) {
        if (error) reject(failed(error));
        else resolve(this.changes);
      }),
    );
  }

  private get<T>(sql: string, params: unknown[]): Promise<T | undefined> {
    return new Promise((resolve, reject) => this.db.get<T>(sql, params, (error, row) => (error ? reject(this.failed(error)) : resolve(row))));
  }

  private all<T>(sql: string, params: unknown[]): Promise<T[]> {
    return new Promise((resolve, reject) => this.db.all<T>(sql, params, (error, rows) => (error ? reject(this.failed(error)) : resolve(rows))));
  }

  /** A read over the fleet, on the reader connection. */
  private read<T>(sql: string, params: SqlParams): Promise<T[]> {
    return new Promise((resolve, reject) =>
      this.reader.all<T>(sql, usedIn(sql, params), (error, rows) => (error ? reject(this.failed(error)) : resolve(rows))),
    );
  }

  /** The enrollment token that enrolls new agents into `ring`; made on first use. */
  async enrollmentToken(ring: Ring = 'broad'): Promise<string> {
    const key = tokenKey(ring);
    const row = await this.get<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, [key]);
    if (row) return row.value;
    await this.run(`INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)`, [key, randomToken()]);
    return (await this.get<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, [key]))!.value;
  }

  /** Replace the enrollment token of `ring`: enrolled agents keep their credentials, new ones need the new token. */
  async rotateToken(ring: Ring = 'broad'): Promise<string> {
    const token = randomToken();
    await this.run(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, [tokenKey(ring), token]);
    return token;
  }

  /** The ring whose enrollment token `token` is (each compared in constant time), if any. */
  private async ringOfToken(token: string): Promise<Ring | undefined> {
    const rows = await this.all<{ key: string; value: string }>(`SELECT key, value FROM meta WHERE key IN (${RINGS.map(() => '?').join(', ')})`, RINGS.map(tokenKey));
    const given = Buffer.from(token);
    let found: Ring | undefined;
    for (const ring of RINGS) {
      const expected = Buffer.from(rows.find((r) => r.key === tokenKey(ring))?.value ?? '');
      if (expected.length && given.length === expected.length && crypto.timingSafeEqual(given, expected)) found = ring;
    }
    return found;
  }

  /** The key agents' secrets are HMACs under; made on first use. */
  private async key(): Promise<Buffer> {
    if (this.credentialKey) return this.credentialKey;
    await this.run(`INSERT OR IGNORE INTO meta (key, value) VALUES ('credential_key', ?)`, [crypto.randomBytes(32).toString('base64')]);
    const row = await this.get<{ value: string }>(`SELECT value FROM meta WHERE key = 'credential_key'`, []);
    return (this.credentialKey = Buffer.from(row!.value, 'base64'));
  }

  private secretFor(key: Buffer, id: string): string {
    return crypto.createHmac('sha256', key).update(id).digest('base64url');
  }

  /**
   * Enroll a new agent with a token: into the ring of that token, under the name it asked for or, when
   * another agent has that name (ignoring case), the name with the first free suffix ("-2", "-3"…). Its
   * credential is returned once (the registry keeps its hash).
   */
  async enroll(token: string, who: { name: string; hostname: string; address: string; pollSeconds: number }): Promise<{ id: string; credential: string; name: string; ring: Ring }> {
    const ring = await this.ringOfToken(token);
    if (!ring) throw new EnrollmentRefusedError();
    const id = crypto.randomUUID();
    const secret = this.secretFor(await this.key(), id);
    const now = Date.now();
    // In one transaction, after the writes before it: two agents asking for one name at once get two names.
    const name = await this.transaction(async () => {
      const name = await this.freeName(who.name);
      await this.run(
        `INSERT INTO agents (id, secret_hash, name, hostname, ring, enrolled_at, last_seen, address, poll_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [id, hash(secret), name, who.hostname, ring, now, now, who.address, who.pollSeconds],
      );
      return name;
    });
    return { id, credential: `${id}.${secret}`, name, ring };
  }

  /** `wanted`, or it with the first suffix no agent has, within the 100 characters a name may have. */
  private async freeName(wanted: string): Promise<string> {
    // Each a seek on the name index.
    const taken = async (name: string) => (await this.get(`SELECT 1 FROM agents WHERE name = ? COLLATE NOCASE LIMIT 1`, [name])) !== undefined;
    if (!(await taken(wanted))) return wanted;
    for (let n = 2; ; n++) {
      const suffix = `-${n}`;
      const name = `${wanted.slice(0, 100 - suffix.length)}${suffix}`;
      if (!(await taken(name))) return name;
    }
  }

  /**
   * The agent id a credential names, if its secret is right (whether the agent still exists is for
   * the write or read that follows to find out: UnknownAgentError).
   */
  async authenticate(credential: string): Promise<string | undefined> {
    const dot = credential.indexOf('.');
    if (dot <= 0 || dot > 64) return undefined;
    const id = credential.slice(0, dot);
    const given = Buffer.from(credential.slice(dot + 1));
    const expected = Buffer.from(this.secretFor(await this.key(), id));
    return given.length === expected.length && crypto.timingSafeEqual(given, expected) ? id : undefined;
  }

  /**
   * Record a report: one row, the reporting agent's own (the id comes from its credential, never
   * from the report), committed with the others that arrived meanwhile. The name stays the one the
   * agent enrolled under (unique): a report cannot take another agent's. Resolves with whether it is
   * news: its phase, versions or last run differ from the row's (a report that only says the agent
   * is still there is not). The console's list shows those, and a phase that went and came back
   * between two counts leaves the counts as they were.
   */
  report(id: string, report: AgentReport, address: string): Promise<boolean> {
    const lastRunAt = report.lastRun ? Date.parse(report.lastRun.at) : NaN;
    const failureAt = report.lastRun?.failure ? Date.parse(report.lastRun.failure.at) : NaN;
    const params = [
      report.trust ?? null,
      report.hostname,
      Date.now(),
      address,
      JSON.stringify(report.addresses),
      JSON.stringify(report.components),
      versionsJson(report.components),
      [...new Set(report.addresses.map((a) => a.family))].sort().join(','),
      report.lastRun ? JSON.stringify(report.lastRun) : null,
      report.lastRun?.result ?? null,
      Number.isFinite(lastRunAt) ? lastRunAt : null,
      report.lastRun?.error ?? null,
      report.phase,
      report.pollSeconds,
      id,
      report.lastRun?.failure?.kind ?? null,
      Number.isFinite(failureAt) ? failureAt : null,
      JSON.stringify(report.consumers ?? []),
      report.orders?.length ? JSON.stringify(report.orders) : null,
    ];
    return new Promise((resolve, reject) => {
      this.pending.push({ params, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length) {
      const group = this.pending.splice(0, GROUP_MAX);
      try {
        const changes = await this.transaction(async () => {
          const done: { changed: number; news: boolean }[] = [];
          // The rows as they were, read in one query for the group (one per report cost a sixth of the reports' throughput).
          const ids = [...new Set(group.map(({ params }) => params[14] as string))];
          const rows = await this.all<{ id: string; phase: string; versions: string; last_result: string | null; last_run_at: number | null }>(
            `SELECT id, phase, versions, last_result, last_run_at FROM agents WHERE id IN (${ids.map(() => '?').join(', ')})`,
            ids,
          );
          const rowsBefore = new Map(rows.map((row) => [row.id, row]));
          for (const { params } of group) {
            const before = rowsBefore.get(params[14] as string);
            const news =
              before !== undefined &&
              (before.phase !== params[12] || before.versions !== params[6] || (params[8] !== null && (before.last_result !== params[9] || before.last_run_at !== params[10])));
            const changed = await this.run(`UPDATE agents SET trust = ?1, hostname = ?2, last_seen = ?3, address = ?4, addresses = ?5, components = ?6, versions = ?7, families = ?8,
              last_run = COALESCE(?9, last_run), last_result = IIF(?9 IS NULL, last_result, ?10), last_run_at = IIF(?9 IS NULL, last_run_at, ?11), last_error = IIF(?9 IS NULL, last_error, ?12),
              last_failure = IIF(?9 IS NULL, last_failure, ?16), last_failure_at = IIF(?9 IS NULL, last_failure_at, ?17), consumers = ?18,
              phase = ?13, poll_seconds = ?14, orders = ?19 WHERE id = ?15`, params);
            done.push({ changed, news });
            // Two reports of one agent in a group: the second is compared with the first.
            if (before) rowsBefore.set(params[14] as string, { ...before, phase: params[12] as string, versions: params[6] as string, ...(params[8] !== null ? { last_result: params[9] as string, last_run_at: params[10] as number | null } : {}) });
            // A run not seen before joins the agent's last runs (a report repeats its last run until the next).
            if (changed && params[8] !== null && params[10] !== null) {
              const id = params[14];
              if (await this.run(`INSERT OR IGNORE INTO agent_runs (agent_id, at, run) VALUES (?, ?, ?)`, [id, params[10], params[8]])) {
                await this.run(`DELETE FROM agent_runs WHERE agent_id = ?1 AND at < (SELECT at FROM agent_runs WHERE agent_id = ?1 ORDER BY at DESC LIMIT 1 OFFSET ${RUNS_KEPT - 1})`, [id]);
              }
            }
          }
          return done;
        });
        group.forEach((report, i) => (changes[i]!.changed ? report.resolve(changes[i]!.news) : report.reject(new UnknownAgentError())));
      } catch (error) {
        for (const report of group) report.reject(error);
      }
    }
    this.flushing = false;
  }

  /** Run `work` in a transaction, after the ones before it. */
  private transaction<T>(work: () => Promise<T>): Promise<T> {
    const next = this.writing.then(async () => {
      await this.exec('BEGIN');
      try {
        const result = await work();
        await this.exec('COMMIT');
        return result;
      } catch (error) {
        await this.exec('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
    this.writing = next.catch(() => undefined);
    return next;
  }

  /** An agent's ring. */
  async ringOf(id: string): Promise<string | undefined> {
    return (await this.get<{ ring: string }>(`SELECT ring FROM agents WHERE id = ?`, [id]))?.ring;
  }

  /**
   * The one agent an operator means: by its id (or the start of it, 8 characters or more, as
   * `bulwark agents list` shows it), else by its name. None, or a name several agents share, is refused
   * with what to type instead.
   */
  async one(idOrName: string): Promise<AgentBrief> {
    const rows = await this.all<{ id: string; name: string; hostname: string; address: string; ring: string; last_seen: number }>(
      `SELECT id, name, hostname, address, ring, last_seen FROM agents WHERE id = ?1 OR name = ?1 OR (length(?1) >= 8 AND substr(id, 1, length(?1)) = ?1) ORDER BY last_seen DESC LIMIT 50`,
      [idOrName],
    );
    const brief = (r: (typeof rows)[number]): AgentBrief => ({ id: r.id, name: r.name, hostname: r.hostname, address: r.address, ring: r.ring, lastSeen: new Date(r.last_seen).toISOString() });
    const byId = rows.filter((r) => r.id === idOrName || r.id.startsWith(idOrName));
    if (byId.length === 1) return brief(byId[0]!);
    if (rows.length === 1) return brief(rows[0]!);
    if (!rows.length) throw new UnknownAgentNameError(idOrName);
    throw new AmbiguousAgentError(idOrName, rows.map(brief));
  }

  /** Move one agent (by id, or by a name no other agent has) to `ring`; returns its id. */
  async setRing(idOrName: string, ring: string): Promise<string[]> {
    const { id } = await this.one(idOrName);
    await this.run(`UPDATE agents SET ring = ? WHERE id = ?`, [ring, id]);
    return [id];
  }

  /**
   * Forget an agent (by id, or a name no other agent has): its row and runs go, and its credential is
   * refused from then on. A machine still running it must enroll again to come back.
   */
  async remove(idOrName: string): Promise<AgentBrief> {
    const agent = await this.one(idOrName);
    await this.transaction(async () => {
      await this.run(`DELETE FROM agents WHERE id = ?`, [agent.id]);
      await this.run(`DELETE FROM agent_runs WHERE agent_id = ?`, [agent.id]);
    });
    return agent;
  }

  /** One agent as listed, with its last runs (newest first); undefined when there is no such agent. */
  async details(basis: StateBasis, id: string): Promise<(AgentListed & { enrolledAt: string; runs: AgentLastRun[] }) | undefined> {
    const state = stateSql(basis);
    const [row] = await this.read<Row & { state: AgentState }>(`SELECT *, ${state.sql} AS state FROM agents WHERE id = $id`, { ...state.params, $id: id });
    if (!row) return undefined;
    const runs = await this.read<{ run: string }>(`SELECT run FROM agent_runs WHERE agent_id = $id ORDER BY at DESC LIMIT ${RUNS_KEPT}`, { $id: id });
    return { ...toRecord(row), state: row.state, families: familiesOf(row.families), runs: runs.map((r) => JSON.parse(r.run) as AgentLastRun) };
  }

  /** The agent was heard from (its notification stream opened or is alive). */
  async seen(id: string, address: string): Promise<void> {
    if (!(await this.run(`UPDATE agents SET last_seen = ?, address = ? WHERE id = ?`, [Date.now(), address, id]))) throw new UnknownAgentError();
  }

  /** These agents were told of `release`: they are 'notified' until they report. */
  async markNotified(ids: readonly string[], release: number): Promise<void> {
    if (!ids.length) return;
    await this.transaction(async () => {
      for (const id of ids) await this.run(`UPDATE agents SET phase = 'notified', notified_release = ? WHERE id = ? AND phase != 'updating'`, [release, id]);
    });
  }

  /** How many agents are in each state, ring by ring. */
  async tally(basis: StateBasis): Promise<AgentTally[]> {
    const state = stateSql(basis);
    return this.read<AgentTally>(`SELECT ${state.sql} AS state, ring, COUNT(*) AS agents FROM agents GROUP BY 1, 2`, state.params);
  }

  /**
   * Agents gone silent, and those of them with only IPv4 or only IPv6 (an agent heard from reaches
   * this server, through a proxy if need be): how many, and the first few names.
   */
  async strangers(now: number, examples = 5): Promise<Record<'silent' | 'only4' | 'only6', { agents: number; names: string[] }>> {
    const group = async (where: string, params: SqlParams) => {
      const [count] = await this.read<{ n: number }>(`SELECT COUNT(*) AS n FROM agents WHERE ${where}`, params);
      // A name another agent shares is told apart by its id (as `bulwark agents list` shows it).
      const names = count!.n
        ? await this.read<{ name: string; id: string; shared: number }>(
            `SELECT name, id, (SELECT COUNT(*) FROM agents other WHERE other.name = agents.name COLLATE NOCASE) > 1 AS shared FROM agents WHERE ${where} ORDER BY name COLLATE NOCASE, id LIMIT ${examples}`,
            params,
          )
        : [];
      return { agents: count!.n, names: names.map((r) => (r.shared ? `${r.name} (${shortId(r.id)})` : r.name)) };
    };
    return {
      silent: await group(SILENT_SQL, { $now: now }),
      only4: await group(`families = '4' AND ${SILENT_SQL}`, { $now: now }),
      only6: await group(`families = '6' AND ${SILENT_SQL}`, { $now: now }),
    };
  }

  /** When the next agent heard from now would pass twice its poll interval unheard (ms), if any. */
  async nextSilence(now: number): Promise<number | undefined> {
    const [row] = await this.read<{ at: number | null }>(`SELECT MIN(last_seen + 2 * poll_seconds * 1000) AS at FROM agents WHERE NOT ${SILENT_SQL}`, { $now: now });
    return row?.at ?? undefined;
  }

  /** The components of the release that some outdated (or notified) agent lacks. */
  async lagging(basis: StateBasis): Promise<string[]> {
    const components = basis.release?.index.components ?? [];
    if (!components.length) return [];
    const state = stateSql(basis);
    const params: SqlParams = { ...state.params };
    const sums = components.map((c, i) => {
      params[`$lagPath${i}`] = `$.${JSON.stringify(c.id)}`;
      params[`$lagVersion${i}`] = c.version;
      return `COALESCE(SUM(COALESCE(json_extract(versions, $lagPath${i}), 0) < $lagVersion${i}), 0) AS c${i}`;
    });
    const [row] = await this.read<Record<string, number>>(`SELECT ${sums.join(', ')} FROM agents WHERE ${state.sql} IN ('outdated', 'notified')`, params);
    return components.filter((_, i) => (row?.[`c${i}`] ?? 0) > 0).map((c) => c.id);
  }

  /**
   * Ring by ring: its agents, those whose last run failed at or after `since` (ms) other than by a
   * failure of their own (local: their disk, permissions, network), and of those the content failures
   * (an engine would not load the version). A version refused earlier counts from when it was refused.
   */
  async ringFailures(since: number): Promise<{ ring: string; agents: number; failing: number; content: number }[]> {
    return this.read(
      `SELECT ring, COUNT(*) AS agents, COALESCE(SUM(${FAILED_SINCE}), 0) AS failing, COALESCE(SUM(${FAILED_SINCE} AND last_failure = 'content'), 0) AS content FROM agents GROUP BY ring`,
      { $since: since },
    );
  }

  /** The first few agents of `ring` counted as failing by ringFailures, with their errors and whose failure it was (content failures first). */
  async failing(ring: string, since: number, limit: number): Promise<{ name: string; error: string; failure?: AgentFailure }[]> {
    const rows = await this.read<{ name: string; error: string; failure: string | null }>(
      `SELECT name, COALESCE(last_error, 'failed') AS error, json_extract(last_run, '$.failure') AS failure FROM agents
       WHERE ring = $ring AND ${FAILED_SINCE} ORDER BY last_failure IS NOT 'content', name COLLATE NOCASE, id LIMIT ${Math.trunc(limit)}`,
      { $ring: ring, $since: since },
    );
    return rows.map(({ name, error, failure }) => ({ name, error, ...(failure ? { failure: JSON.parse(failure) as AgentFailure } : {}) }));
  }

  /** One page of agents, filtered and sorted in SQLite, and how many match in all. */
  async page(basis: StateBasis, query: AgentPageQuery): Promise<{ matching: number; agents: AgentListed[] }> {
    const state = stateSql(basis);
    const params: SqlParams = { ...state.params };
    const where: string[] = [];
    if (query.states?.length) {
      where.push(`${state.sql} IN (${query.states.map((_, i) => `$state${i}`).join(', ')})`);
      query.states.forEach((s, i) => (params[`$state${i}`] = s));
    }
    if (query.ring) {
      where.push('ring = $ring');
      params.$ring = query.ring;
    }
    if (query.text) {
      // LIKE ignores ASCII case; the text's own % and _ are literal.
      where.push(`(name LIKE $text ESCAPE '\\' OR hostname LIKE $text ESCAPE '\\' OR address LIKE $text ESCAPE '\\' OR COALESCE(last_error, '') LIKE $text ESCAPE '\\')`);
      params.$text = `%${query.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    }
    const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const direction = query.descending ? 'DESC' : 'ASC';
    const key = { state: `CASE ${state.sql} ${STATE_ORDER.map((s, i) => `WHEN '${s}' THEN ${i}`).join(' ')} END`, lastSeen: 'last_seen', name: 'name COLLATE NOCASE', hostname: 'hostname COLLATE NOCASE', address: 'address COLLATE NOCASE' }[query.sort];
    const [count] = await this.read<{ n: number }>(`SELECT COUNT(*) AS n FROM agents ${filter}`, params);
    const rows = await this.read<Row & { state: AgentState }>(
      `SELECT *, ${state.sql} AS state FROM agents ${filter} ORDER BY ${key} ${direction}, name COLLATE NOCASE ${direction}, id LIMIT ${Math.trunc(query.limit)}`,
      params,
    );
    return { matching: count!.n, agents: rows.map((row) => ({ ...toRecord(row), state: row.state, families: familiesOf(row.families) })) };
  }

  /**
   * Every agent, in name order, each as the UTF-8 JSON of an AgentListed made by SQLite itself (a fleet
   * of 100,000 is listed without building 100,000 objects, or decoding and encoding its text again),
   * handed over a chunk at a time.
   */
  async eachListed(basis: StateBasis, take: (json: Buffer[]) => void, chunkRows = 2000): Promise<number> {
    const state = stateSql(basis);
    const iso = (column: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', ${column} / 1000.0, 'unixepoch')`;
    // A chunk of rows a query, each starting after the last one taken (the name index keeps every
    // query a seek): memory stays bounded, and an error in any row fails the listing (node-sqlite3's
    // each() can report one after it said it was done). The next chunk is read while this one is handed over.
    const params = usedIn(state.sql, state.params);
    const chunk = (after: { name: string; id: string } | undefined) =>
      this.read<{ j: Buffer }>(
        // Spliced as text: the JSON columns hold JSON.stringify's output (report()), so nothing is parsed again.
        `SELECT CAST(concat('{"id":', json_quote(id), ',"name":', json_quote(name), ',"hostname":', json_quote(hostname), ',"ring":', json_quote(ring),
           ',"enrolledAt":"', ${iso('enrolled_at')}, '","lastSeen":"', ${iso('last_seen')}, '","address":', json_quote(address),
           ',"addresses":', addresses, ',"components":', components, ',"consumers":', consumers, ',"lastRun":', COALESCE(last_run, 'null'), ',"phase":', json_quote(phase),
           ',"notifiedRelease":', notified_release, ',"pollSeconds":', poll_seconds, ',"trust":', json_quote(trust), ',"orders":', COALESCE(orders, 'null'), ',"state":"', ${state.sql}, '","families":[', families, ']}') AS BLOB) AS j
         FROM agents ${after ? 'WHERE name COLLATE NOCASE >= $afterName AND (name COLLATE NOCASE > $afterName OR id > $afterId)' : ''}
         ORDER BY name COLLATE NOCASE, id LIMIT ${Math.max(1, Math.trunc(chunkRows))}`,
        after ? { ...params, $afterName: after.name, $afterId: after.id } : params,
      );
    let listed = 0;
    let rows = await chunk(undefined);
    while (rows.length) {
      const last = JSON.parse(rows[rows.length - 1]!.j.toString('utf8')) as { name: string; id: string };
      const next = rows.length < chunkRows ? undefined : chunk(last);
      // A failed read ahead is reported when awaited, not as an unhandled rejection meanwhile.
      next?.catch(() => undefined);
      take(rows.map((row) => row.j));
      listed += rows.length;
      rows = next ? await next : [];
    }
    return listed;
  }

  async count(): Promise<number> {
    return (await this.get<{ n: number }>(`SELECT COUNT(*) AS n FROM agents`, []))!.n;
  }

  async close(): Promise<void> {
    if (this.reader !== this.db) await new Promise<void>((resolve) => this.reader.close(() => resolve()));
    await new Promise<void>((resolve) => this.db.close(() => resolve()));
  }
}

function toRecord(row: Row): AgentRecord {
  return {
    id: row.id,
    name: row.name,
    hostname: row.hostname,
    ring: row.ring,
    enrolledAt: new Date(row.enrolled_at).toISOString(),
    lastSeen: new Date(row.last_seen).toISOString(),
    address: row.address,
    addresses: JSON.parse(row.addresses) as AgentRecord['addresses'],
    components: JSON.parse(row.components) as AgentComponent[],
    consumers: JSON.parse(row.consumers ?? '[]') as AgentConsumer[],
    lastRun: row.last_run ? (JSON.parse(row.last_run) as AgentLastRun) : null,
    phase: row.phase,
    notifiedRelease: row.notified_release,
    trust: row.trust,
    orders: row.orders ? (JSON.parse(row.orders) as ServerOrder[]) : null,
    pollSeconds: row.poll_seconds,
  };
}

/** The parameters `sql` names (SQLite refuses a statement given a name it does not have). */
function usedIn(sql: string, params: SqlParams): SqlParams {
  return Object.fromEntries(Object.entries(params).filter(([name]) => new RegExp(`\\${name}(?![\\w])`).test(sql)));
}

function familiesOf(column: string): Family[] {
  return column ? (column.split(',').map(Number) as Family[]) : [];
}
