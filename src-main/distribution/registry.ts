// The agent registry: who enrolled, with what credential, and what each agent last reported. SQLite
// (DATA/agents.sqlite) through sqlite3, an N-API binding, so one binary loads in Node and in Electron.
// WAL journal: readers (`bulwark agents list` while the server runs) never block the writer, and a
// report is one row written. Survives restarts and kill -9 (SQLite's journal).
//
// Credentials: an agent holds "<id>.<secret>", where the secret is an HMAC of its id under a key only
// this registry holds (in its meta table), so checking one costs no lookup — a fleet of 100,000 agents
// reporting is not a fleet of lookups; the row's existence is checked by the write itself. The
// enrollment token (shared by all new agents) lives in the meta table too, so `bulwark agents token
// --rotate` in another process takes effect at the next enrollment.
//
// Reports are written in groups: each is one row, but the rows that arrive together share one
// transaction (group commit), so thousands of reports a second cost a few commits.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { BulwarkError, StoreError } from '../engine/errors.js';

export type Family = 4 | 6;
export type AgentPhase = 'idle' | 'notified' | 'updating';

export interface AgentComponent {
  id: string;
  version: number;
  sha256?: string;
  method?: string;
}

export interface AgentLastRun {
  result: 'ok' | 'failed';
  at: string;
  trigger?: string;
  /** How the changed components arrived: incremental, full, or none (nothing new). */
  method?: string;
  bytes: number;
  error?: string;
}

/** What an agent says about itself, after every run and on a heartbeat. */
export interface AgentReport {
  name: string;
  hostname: string;
  addresses: { address: string; family: Family }[];
  components: AgentComponent[];
  lastRun?: AgentLastRun;
  phase: 'idle' | 'updating';
  /** Seconds between the agent's polls (and heartbeats): it is unreachable after twice this. */
  pollSeconds: number;
}

export interface AgentRecord extends Omit<AgentReport, 'lastRun' | 'phase'> {
  id: string;
  ring: string;
  enrolledAt: string;
  lastSeen: string;
  /** The address its last request came from. */
  address: string;
  lastRun: AgentLastRun | null;
  phase: AgentPhase;
  notifiedRelease: number;
}

/** The enrollment token was wrong or has been rotated. */
export class EnrollmentRefusedError extends BulwarkError {
  constructor() {
    super('ERR_USAGE', 'the enrollment token is wrong or was rotated');
  }
}

interface Row {
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
}

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
  poll_seconds INTEGER NOT NULL DEFAULT 300
);`;

const hash = (secret: string) => crypto.createHash('sha256').update(secret).digest('hex');
const randomToken = () => crypto.randomBytes(24).toString('base64url');

/** An agent's row is not in the registry (its credential names an agent the server does not know). */
export class UnknownAgentError extends BulwarkError {
  constructor() {
    super('ERR_USAGE', 'unknown agent');
  }
}

/** Reports waiting for their group's commit. */
interface PendingReport {
  params: unknown[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Most reports committed together. */
const GROUP_MAX = 1000;

export class AgentRegistry {
  private credentialKey: Buffer | undefined;
  private pending: PendingReport[] = [];
  private flushing = false;
  /** Transactions one after the other (SQLite has one writer; so does this connection). */
  private writing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly db: sqlite3.Database,
    readonly file: string,
  ) {}

  /** Open (or create) DATA/agents.sqlite; read-only opens fail when there is none. */
  static async open(dataDir: string, options: { readOnly?: boolean } = {}): Promise<AgentRegistry> {
    const file = path.join(dataDir, 'agents.sqlite');
    if (options.readOnly && !fs.existsSync(file)) throw new StoreError(`no agent registry in ${dataDir} (no agent has enrolled with a server there)`);
    fs.mkdirSync(dataDir, { recursive: true });
    const db = await new Promise<sqlite3.Database>((resolve, reject) => {
      const opened: sqlite3.Database = new sqlite3.Database(file, options.readOnly ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (error) =>
        error ? reject(new StoreError(`cannot open the agent registry ${file}`, { cause: error })) : resolve(opened),
      );
    });
    const registry = new AgentRegistry(db, file);
    await registry.exec('PRAGMA busy_timeout = 5000');
    if (!options.readOnly) {
      await registry.exec('PRAGMA journal_mode = WAL');
      // NORMAL in WAL mode: a kill -9 loses nothing committed; only a power cut can cost the last reports.
      await registry.exec('PRAGMA synchronous = NORMAL');
      await registry.exec(SCHEMA);
      fs.chmodSync(file, 0o600);
    }
    return registry;
  }

  private exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (error) => (error ? reject(new StoreError(`agent registry: ${error.message}`, { cause: error })) : resolve())));
  }

  private run(sql: string, params: unknown[]): Promise<number> {
    return new Promise((resolve, reject) =>
      this.db.run(sql, params, function (error) {
        if (error) reject(new StoreError(`agent registry: ${error.message}`, { cause: error }));
        else resolve(this.changes);
      }),
    );
  }

  private get<T>(sql: string, params: unknown[]): Promise<T | undefined> {
    return new Promise((resolve, reject) => this.db.get<T>(sql, params, (error, row) => (error ? reject(new StoreError(`agent registry: ${error.message}`, { cause: error })) : resolve(row))));
  }

  private all<T>(sql: string, params: unknown[]): Promise<T[]> {
    return new Promise((resolve, reject) => this.db.all<T>(sql, params, (error, rows) => (error ? reject(new StoreError(`agent registry: ${error.message}`, { cause: error })) : resolve(rows))));
  }

  /** The enrollment token new agents present; made on first use. */
  async enrollmentToken(): Promise<string> {
    const row = await this.get<{ value: string }>(`SELECT value FROM meta WHERE key = 'enrollment_token'`, []);
    if (row) return row.value;
    await this.run(`INSERT OR IGNORE INTO meta (key, value) VALUES ('enrollment_token', ?)`, [randomToken()]);
    return (await this.get<{ value: string }>(`SELECT value FROM meta WHERE key = 'enrollment_token'`, []))!.value;
  }

  /** Replace the enrollment token: enrolled agents keep their credentials, new ones need the new token. */
  async rotateToken(): Promise<string> {
    const token = randomToken();
    await this.run(`INSERT INTO meta (key, value) VALUES ('enrollment_token', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, [token]);
    return token;
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

  /** Enroll a new agent with the token; its credential is returned once (the registry keeps its hash). */
  async enroll(token: string, who: { name: string; hostname: string; address: string; pollSeconds: number; ring?: string }): Promise<{ id: string; credential: string }> {
    const expected = Buffer.from(await this.enrollmentToken());
    const given = Buffer.from(token);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) throw new EnrollmentRefusedError();
    const id = crypto.randomUUID();
    const secret = this.secretFor(await this.key(), id);
    const now = Date.now();
    await this.run(
      `INSERT INTO agents (id, secret_hash, name, hostname, ring, enrolled_at, last_seen, address, poll_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [id, hash(secret), who.name, who.hostname, who.ring ?? 'broad', now, now, who.address, who.pollSeconds],
    );
    return { id, credential: `${id}.${secret}` };
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
   * from the report), committed with the others that arrived meanwhile.
   */
  report(id: string, report: AgentReport, address: string): Promise<void> {
    const params = [
      report.name,
      report.hostname,
      Date.now(),
      address,
      JSON.stringify(report.addresses),
      JSON.stringify(report.components),
      report.lastRun ? JSON.stringify(report.lastRun) : null,
      report.phase,
      report.pollSeconds,
      id,
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
          const done: number[] = [];
          for (const { params } of group) {
            done.push(await this.run(`UPDATE agents SET name = ?, hostname = ?, last_seen = ?, address = ?, addresses = ?, components = ?, last_run = COALESCE(?, last_run), phase = ?, poll_seconds = ? WHERE id = ?`, params));
          }
          return done;
        });
        group.forEach((report, i) => (changes[i] ? report.resolve() : report.reject(new UnknownAgentError())));
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

  /** Move agents to `ring`, by id or by name; returns the ids moved. */
  async setRing(idOrName: string, ring: string): Promise<string[]> {
    const rows = await this.all<{ id: string }>(`SELECT id FROM agents WHERE id = ? OR name = ?`, [idOrName, idOrName]);
    for (const { id } of rows) await this.run(`UPDATE agents SET ring = ? WHERE id = ?`, [ring, id]);
    return rows.map((r) => r.id);
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

  async list(): Promise<AgentRecord[]> {
    const rows = await this.all<Row>(`SELECT * FROM agents ORDER BY name, id`, []);
    return rows.map(toRecord);
  }

  async count(): Promise<number> {
    return (await this.get<{ n: number }>(`SELECT COUNT(*) AS n FROM agents`, []))!.n;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.db.close(() => resolve()));
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
    lastRun: row.last_run ? (JSON.parse(row.last_run) as AgentLastRun) : null,
    phase: row.phase,
    notifiedRelease: row.notified_release,
    pollSeconds: row.poll_seconds,
  };
}
