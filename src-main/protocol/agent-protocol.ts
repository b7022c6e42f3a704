// The agent <-> server protocol, in one place both sides import: the paths, the messages each way,
// the events on the notification stream, and the limits and deadlines either side holds the other to.
// The server's side is src-main/distribution (agent-server.ts), the agent's src-main/agent.
//
// Layers, lowest first (test/layers.test.ts checks that no import runs upward): protocol < engine <
// {publisher, distribution, agent} (which do not import each other) < console < server < demo <
// {cli, electron}. The protocol is the contract at the bottom: it imports nothing of Bulwark's.
//
// Files, public like a CDN's (the vendor's signed data and the server's derivatives of it; agents
// verify every byte), cacheable by any HTTP cache:
//   GET|HEAD /metadata/timestamp.json        the upstream's timestamp, as the server verified it
//   GET|HEAD /metadata/<v>.<role>.json       root chain, snapshot, targets (immutable)
//   GET|HEAD /targets/<dir>/<sha256>.<name>  relayed signed targets (immutable, Range)
//   GET|HEAD /made/<id>/<name>               server-made incrementals and full files (immutable, Range)
//   GET      /agents/v1/index.json           the advisory index of the current release (ReleaseIndex)
//
// Agent endpoints, each authenticated by the agent's own credential (Authorization: Bearer), except
// enrollment, which takes the enrollment token, and the root, which is public:
//   GET  /agents/v1/root.json the vendor's root.json the server trusts (its anchor, as the operator gave
//                             it); an enrolling agent pins it only if its SHA-256 is the join string's
//   POST /agents/v1/enroll    EnrollRequest -> EnrollAnswer
//   POST /agents/v1/report    AgentReport -> ReportAnswer
//   GET  /agents/v1/policy    AgentPolicy: the server's pins, the agent's ring, and whether to hold
//                             (and, held, the versions of the last release that passed the rollout)
//   GET  /agents/v1/events    server-sent events (ServerEventName), pinged every PING_MS
//
// Public too (the vendor's signed data), for held agents that take the last release that passed:
//   GET      /agents/v1/evidence/<id>/<version>   KeptEvidence: the signed metadata the server kept with
//                                                  a version it installed; the agent checks it against
//                                                  its own trusted root before it takes the version
//
// An MQTT broker may carry the announcements instead of the stream (ReleaseMessage, retained).
import type { JSONSchemaType } from 'ajv';

/** The agents' port when the server is told none. */
export const DEFAULT_AGENT_PORT = 8470;

/** An IP address family. */
export type Family = 4 | 6;

/** Paths of the agents' service, relative to the server's agent URL. */
export const AGENT_PATHS = {
  enroll: 'agents/v1/enroll',
  report: 'agents/v1/report',
  policy: 'agents/v1/policy',
  events: 'agents/v1/events',
  index: 'agents/v1/index.json',
  root: 'agents/v1/root.json',
  timestamp: 'metadata/timestamp.json',
} as const;

/** A server-made file's path (made/<id>/<name>). */
export const madePath = (id: string, name: string) => `made/${id}/${name}`;

/** The signed metadata kept with a version (agents/v1/evidence/<id>/<version>). */
export const evidencePath = (id: string, version: number) => `agents/v1/evidence/${id}/${version}`;
/** The same, as the server matches it: the component id and the version. */
export const EVIDENCE_PATH = /^\/agents\/v1\/evidence\/([a-z0-9][a-z0-9-]{0,63})\/([1-9][0-9]{0,9})$/;

// --- Rings ---------------------------------------------------------------------------------------

export const RINGS = ['canary', 'early', 'broad'] as const;
export type Ring = (typeof RINGS)[number];

export function isRing(value: unknown): value is Ring {
  return (RINGS as readonly unknown[]).includes(value);
}

// --- Enrollment: the join string ------------------------------------------------------------------

/**
 * What `bulwark agents token` prints for new agents: the enrollment token (which also names the ring
 * they enroll into) and the SHA-256 of the vendor's root.json the server trusts, as
 * "TOKEN:sha256:HEX" (like kubeadm's --discovery-token-ca-cert-hash). The agent fetches the root
 * from the server and pins it only if its hash is this one, before it sends the token: a server met
 * first is never trusted for the root (no trust on first use).
 */
export interface JoinString {
  token: string;
  /** Absent for a bare token (then the agent needs --trusted-root, or --insecure-trust-first-server). */
  rootSha256?: string;
}

export function formatJoinString(token: string, rootSha256: string): string {
  return `${token}:sha256:${rootSha256}`;
}

/** A join string or a bare token; undefined when it is neither. */
export function parseJoinString(text: string): JoinString | undefined {
  const match = /^([A-Za-z0-9_][A-Za-z0-9_-]{7,255})(?::sha256:([0-9a-fA-F]{64}))?$/.exec(text.trim());
  if (!match) return undefined;
  return { token: match[1]!, ...(match[2] ? { rootSha256: match[2].toLowerCase() } : {}) };
}

/** How an agent came to trust the vendor's root, recorded at enrollment and in every report. */
export type TrustMode =
  /** Fetched from the server and checked against the join string's SHA-256. */
  | 'join-string'
  /** Given by the operator as a file (--trusted-root). */
  | 'trusted-root'
  /** Whatever the first server handed out (--insecure-trust-first-server): a server met first could have been anyone. */
  | 'first-server';

// --- Messages ------------------------------------------------------------------------------------

/** What a new agent sends with the enrollment token (an agent does not choose its ring: its token does). */
export interface EnrollRequest {
  token: string;
  name: string;
  hostname: string;
  pollSeconds?: number;
  /** Ignored (agents before the ring went with the token sent it): the token decides. */
  ring?: Ring;
}

/** The server's answer to an enrollment: the agent's own credential, its name and ring, and how often to poll. */
export interface EnrollAnswer {
  id: string;
  credential: string;
  /** The name the server lists the agent under: the one asked for, or with a suffix when another agent has it. */
  name: string;
  /** The ring of the token it enrolled with. */
  ring: Ring;
  pollSeconds: number;
  spreadSeconds: number;
}

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
  /** A failed run: whose failure it was (content, local, release) and, for an engine's refusal, which and why. */
  failure?: AgentFailure;
}

/**
 * Whose failure a failed run was: 'content' (an engine on the agent would not load the version: its
 * check, reload or health failed; halts a rollout at its canary), 'local' (the agent's own disk,
 * permissions, network or configuration: never halts), 'release' (anything else: counted against the
 * rollout's thresholds).
 */
export interface AgentFailure {
  kind: 'content' | 'local' | 'release';
  component?: string;
  version?: number;
  /** The engine that refused it ("clamd"), and at which step. */
  engine?: string;
  stage?: 'check' | 'place' | 'reload' | 'health';
  /** The engine's own words, or the error. */
  message: string;
  /** When it happened (a version refused earlier: when it was refused). */
  at: string;
}

/** An engine a component is handed to on the agent (its consumers file), and whether it has the active version. */
export interface AgentConsumer {
  id: string;
  engine: string;
  /** The version the engine was last handed (null: none yet). */
  version: number | null;
  active: boolean;
  /** Its last failure, if the last hand-off failed. */
  error?: string;
}

/** What an agent says about itself, after every run and on a heartbeat. */
export interface AgentReport {
  name: string;
  hostname: string;
  addresses: { address: string; family: Family }[];
  components: AgentComponent[];
  /** The engines its components are handed to (absent: none configured). */
  consumers?: AgentConsumer[];
  lastRun?: AgentLastRun;
  phase: 'idle' | 'updating';
  /** Seconds between the agent's polls (and heartbeats): it is unreachable after twice this. */
  pollSeconds: number;
  /** How the agent came to trust the vendor's root (absent: enrolled before agents recorded it). */
  trust?: TrustMode;
  /** What keeps it below the vendor's latest by the server's order (or took it past a hold): empty or absent when nothing does. */
  orders?: ServerOrder[];
}

/**
 * What the server's policy keeps an agent at, below the vendor's latest signed version, as the agent
 * itself judges it (never the server's word): reported every time, and shown by the agent's own
 * `bulwark status`, so that no hold or pin is unseen.
 */
export interface ServerOrder {
  id: string;
  /**
   * hold: the rollout holds it (obeyed up to the agent's --max-hold); wait: the server's (unsigned)
   * index says it does not hold the vendor's latest yet (bounded the same way); pin: a server pin
   * keeps it at a version it installed before; hold-lapsed: a hold it stopped obeying after its
   * --max-hold, so it took (or tried to take) the vendor's latest.
   */
  order: 'hold' | 'wait' | 'pin' | 'hold-lapsed';
  /** The version it holds now (0: none yet, a new agent held or kept waiting before its first install). */
  version: number;
  /** The vendor's latest signed version. */
  vendorLatest: number;
  /** Since when the order has applied (hold-lapsed: when the hold began). */
  since: string;
  /** hold: when it lapses; hold-lapsed: when it did. */
  until?: string;
}

/** An order for people: "virus-pattern pinned by the server at 175 since …; the vendor's latest is 177". */
export function describeOrder(order: ServerOrder): string {
  const at = order.version === 0 ? 'with nothing installed' : `at ${order.version}`;
  switch (order.order) {
    case 'hold':
      return `${order.id} held by the server's rollout ${at} since ${order.since}; the vendor's latest is ${order.vendorLatest}${order.until ? ` (the hold lapses at ${order.until})` : ''}`;
    case 'wait':
      return `${order.id} ${at}, waiting since ${order.since} for the server, which says it does not hold the vendor's latest (${order.vendorLatest}) yet${order.until ? ` (the wait lapses at ${order.until})` : ''}`;
    case 'pin':
      return `${order.id} pinned by the server ${at} since ${order.since}; the vendor's latest is ${order.vendorLatest}`;
    case 'hold-lapsed':
      // Lapsed, but not level yet: the server may have none of the latest's files (each run then fails, saying so).
      if (order.version < order.vendorLatest) {
        return `${order.id} hold lapsed: the server has kept it behind the vendor's latest since ${order.since}, longer than the agent's --max-hold, so it tries the vendor's latest (${order.vendorLatest}), which it does not hold yet (${at === 'with nothing installed' ? 'nothing installed' : `still ${at}`})`;
      }
      return `${order.id} hold lapsed: the server kept it behind the vendor's latest from ${order.since}${order.until ? ` until ${order.until}` : ''}, longer than the agent's --max-hold, so it took the vendor's latest (${order.vendorLatest})`;
  }
}

/** An order in a few words, for a table's cell ("virus-pattern pinned by the server at 175"). */
export function orderLabel(order: ServerOrder): string {
  switch (order.order) {
    case 'hold':
      return `${order.id} held by the server`;
    case 'wait':
      return `${order.id} waiting for the server`;
    case 'pin':
      return `${order.id} pinned by the server at ${order.version}`;
    case 'hold-lapsed':
      return `${order.id}: hold lapsed`;
  }
}

/** The server's answer to a report. */
export interface ReportAnswer {
  release: number;
  pollSeconds: number;
  spreadSeconds: number;
}

/** What the server asks of one agent (GET /agents/v1/policy). */
export interface AgentPolicy {
  /** The server's pinned components and their versions. */
  pins: Record<string, number>;
  ring: string;
  /** The rollout has not reached the agent's ring: hold the installed versions. */
  hold: boolean;
  /** Held: the versions of the last release that passed the rollout, which a held agent with less (a new one) moves up to. */
  holdAt?: Record<string, number>;
}

/** The signed metadata a server kept with a version it installed (JSON text of each). */
export interface KeptEvidence {
  targets: string;
  catalogue: string;
}

/** What the server holds of one component, for its agents. */
export interface IndexComponent {
  id: string;
  /** The version the server serves (its active one) and its content. */
  version: number;
  sha256: string;
  length: number;
  /** Signed targets of this component the server holds, as published upstream. */
  signed: string[];
  /** Older versions the server keeps, from which it makes incrementals to `version` on request. */
  bases: { version: number; sha256: string }[];
}

/** The advisory index agents read at GET /agents/v1/index.json (unsigned: it only chooses among ways to the signed latest). */
export interface ReleaseIndex {
  release: number;
  publishedAt: string;
  /** Version of the upstream snapshot this release relays. */
  snapshotVersion: number;
  components: IndexComponent[];
}

// --- Notifications -------------------------------------------------------------------------------

/**
 * The notification stream's events:
 *   hello    on connect: {release, pollSeconds, spreadSeconds}
 *   release  a new release: {release, spreadSeconds}
 *   update   the operator asked every agent to update now: {release, spreadSeconds}
 */
export type ServerEventName = 'hello' | 'release' | 'update';
export interface HelloEvent {
  release: number;
  pollSeconds: number;
  spreadSeconds: number;
}
export interface ReleaseEvent {
  release: number;
  spreadSeconds: number;
}

/** An event in the server-sent events format. */
export const formatEvent = (name: ServerEventName, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

/** The server's keep-alive comment on every stream. */
export const PING_MS = 15_000;

/** What the server publishes on the broker's topic (retained), and agents read. */
export interface ReleaseMessage {
  release: number;
  spreadSeconds: number;
  /** Set when the operator asked every agent to update now ("Update agents now"): its time. */
  updateAsked?: string;
}

// --- Limits and deadlines ------------------------------------------------------------------------

/** Sizes either side refuses beyond. */
export const AGENT_LIMITS = {
  /** A POST body the server reads (an enrollment, a report). */
  requestBytes: 64 * 1024,
  /** The index: 256 components with 15 bases each fit in a fraction of this. */
  indexBytes: 1024 * 1024,
  policyBytes: 64 * 1024,
  /** An answer to an enrollment or a report. */
  answerBytes: 1024 * 1024,
  /** One line of the notification stream, and one event (its data lines together). */
  eventLineBytes: 64 * 1024,
  eventBytes: 64 * 1024,
  /** A broker message. */
  brokerMessageBytes: 4096,
  /** An agent's last error, as reported. */
  reportErrorChars: 2000,
  /** The trusted root an enrolling agent fetches (the engine's own limit for root metadata). */
  rootBytes: 512 * 1024,
  /** Kept evidence: signed targets metadata (8 MB, the engine's own limit) and a catalogue (1 MB), as JSON strings. */
  evidenceBytes: 2 * (8 + 1) * 1024 * 1024,
} as const;

/**
 * Time limits of the agent's calls, in milliseconds. Every call has a total deadline besides the wait
 * between chunks, so a server that drips its answer a byte at a time fails the call (which says so)
 * instead of holding the agent: the policy is asked before each run, and reports go one at a time.
 * Metadata and files go through the engine's fetcher, whose deadline is its own (engine/fetcher.ts).
 */
export const AGENT_DEADLINES = {
  /** Longest wait for an answer's head, and between two of its chunks. */
  idleMs: 30_000,
  /** The whole enrollment, and the trusted root fetched before it. */
  enrollMs: 30_000,
  /** Whether the server has a release yet (the index, asked once at start). */
  indexMs: 30_000,
  /** The policy, asked before every run (which goes on without it). */
  policyMs: 10_000,
  /** One report (the next one is sent after it). */
  reportMs: 10_000,
  /** Silence on the notification stream after which it is considered dead (the server pings every PING_MS). */
  streamIdleMs: 45_000,
} as const;

/**
 * The ranges of the timing values a server gives its agents (its --agent-poll and --agent-spread
 * take the same); an agent clamps whatever it is sent into them, so no value from a server can fire
 * its timers at once (a delay over 2^31 - 1 ms does) or never.
 */
export const AGENT_TIMING = {
  pollSeconds: { min: 10, max: 86_400 },
  spreadSeconds: { min: 0, max: 3_600 },
} as const;

/** A timing value from a server, clamped to its range; undefined when it is not a number at all. */
export function clampTiming(name: keyof typeof AGENT_TIMING, value: unknown): number | undefined {
  if (typeof value !== 'number' || Number.isNaN(value)) return undefined;
  const { min, max } = AGENT_TIMING[name];
  return Math.round(Math.min(max, Math.max(min, value)));
}

/**
 * What a server may order an agent, and the bounds the agent holds it to (docs/agents.md):
 *   - hold its ring back during a rollout: obeyed for at most the agent's --max-hold (this by
 *     default), counted from the moment it was first held behind the vendor's latest; past it the
 *     agent takes the vendor's latest signed release and reports "hold lapsed";
 *   - pin a component at a version: obeyed only for a version this agent installed itself (it kept
 *     the vendor's signed metadata of it); shown in the agent's status and every report.
 */
export const DEFAULT_MAX_HOLD_SECONDS = 86_400;

/** Seconds between an agent's polls and reports until the server says otherwise. */
export const DEFAULT_POLL_SECONDS = 300;
/** The longest random wait between an announcement and the update, until the server says otherwise. */
export const DEFAULT_SPREAD_SECONDS = 30;

// --- Validation of what crosses --------------------------------------------------------------------

export const COMPONENT_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Whether `data` has the shape of a ReleaseIndex (advice still: the signed metadata decides). */
export function isReleaseIndex(data: unknown): data is ReleaseIndex {
  const index = data as ReleaseIndex;
  return (
    typeof index === 'object' &&
    index !== null &&
    Array.isArray(index.components) &&
    index.components.every(
      (c) =>
        typeof c?.id === 'string' &&
        COMPONENT_ID.test(c.id) &&
        Number.isSafeInteger(c.version) &&
        typeof c.sha256 === 'string' &&
        SHA256.test(c.sha256) &&
        Array.isArray(c.signed) &&
        c.signed.every((t) => typeof t === 'string') &&
        Array.isArray(c.bases) &&
        c.bases.every((b) => Number.isSafeInteger(b?.version) && typeof b.sha256 === 'string' && SHA256.test(b.sha256)),
    )
  );
}

/** The report as the server accepts it (JSON Schema, checked with ajv on the server). */
export const REPORT_SCHEMA: JSONSchemaType<AgentReport> = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'hostname', 'addresses', 'components', 'phase', 'pollSeconds'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100 },
    hostname: { type: 'string', maxLength: 253 },
    addresses: {
      type: 'array',
      maxItems: 64,
      items: { type: 'object', additionalProperties: false, required: ['address', 'family'], properties: { address: { type: 'string', maxLength: 64 }, family: { type: 'integer', enum: [4, 6] } } },
    },
    components: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'version'],
        properties: {
          id: { type: 'string', pattern: COMPONENT_ID.source },
          version: { type: 'integer', minimum: 1 },
          sha256: { type: 'string', pattern: SHA256.source, nullable: true },
          method: { type: 'string', maxLength: 16, nullable: true },
        },
      },
    },
    lastRun: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      required: ['result', 'at', 'bytes'],
      properties: {
        result: { type: 'string', enum: ['ok', 'failed'] },
        at: { type: 'string', maxLength: 40 },
        trigger: { type: 'string', maxLength: 16, nullable: true },
        method: { type: 'string', maxLength: 16, nullable: true },
        bytes: { type: 'integer', minimum: 0 },
        error: { type: 'string', maxLength: AGENT_LIMITS.reportErrorChars, nullable: true },
        failure: {
          type: 'object',
          nullable: true,
          additionalProperties: false,
          required: ['kind', 'message', 'at'],
          properties: {
            kind: { type: 'string', enum: ['content', 'local', 'release'] },
            component: { type: 'string', pattern: COMPONENT_ID.source, nullable: true },
            version: { type: 'integer', minimum: 1, nullable: true },
            engine: { type: 'string', maxLength: 64, nullable: true },
            stage: { type: 'string', enum: ['check', 'place', 'reload', 'health'], nullable: true },
            message: { type: 'string', maxLength: AGENT_LIMITS.reportErrorChars },
            at: { type: 'string', maxLength: 40 },
          },
        },
      },
    },
    consumers: {
      type: 'array',
      nullable: true,
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'engine', 'version', 'active'],
        properties: {
          id: { type: 'string', pattern: COMPONENT_ID.source },
          engine: { type: 'string', minLength: 1, maxLength: 64 },
          // Required and nullable (null: nothing handed over yet), which JSONSchemaType cannot spell.
          version: { type: 'integer', minimum: 1, nullable: true } as never,
          active: { type: 'boolean' },
          error: { type: 'string', maxLength: AGENT_LIMITS.reportErrorChars, nullable: true },
        },
      },
    },
    phase: { type: 'string', enum: ['idle', 'updating'] },
    pollSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
    trust: { type: 'string', enum: ['join-string', 'trusted-root', 'first-server'], nullable: true },
    orders: {
      type: 'array',
      nullable: true,
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'order', 'version', 'vendorLatest', 'since'],
        properties: {
          id: { type: 'string', pattern: COMPONENT_ID.source },
          order: { type: 'string', enum: ['hold', 'wait', 'pin', 'hold-lapsed'] },
          // 0: nothing installed yet (a new agent held or kept waiting).
          version: { type: 'integer', minimum: 0 },
          vendorLatest: { type: 'integer', minimum: 1 },
          since: { type: 'string', maxLength: 40 },
          until: { type: 'string', maxLength: 40, nullable: true },
        },
      },
    },
  },
};

/** The enrollment request as the server accepts it. */
export const ENROLL_SCHEMA: JSONSchemaType<EnrollRequest> = {
  type: 'object',
  additionalProperties: false,
  required: ['token', 'name', 'hostname'],
  properties: {
    token: { type: 'string', maxLength: 256 },
    name: { type: 'string', minLength: 1, maxLength: 100 },
    hostname: { type: 'string', maxLength: 253 },
    pollSeconds: { type: 'integer', minimum: 1, maximum: 86_400, nullable: true },
    ring: { type: 'string', enum: [...RINGS], nullable: true },
  },
};
