// The installation in words, for the console, the tray and `bulwark status` alike: one headline for
// server and fleet with the worst thing first, and failures said plainly (the raw text stays behind a
// "Details" disclosure and in the history). Pure: no Node, imported by the renderer too.
import { componentInfo } from './components.js';

export type HeadlineTone = 'ok' | 'busy' | 'warning' | 'error' | 'setup';

export interface Headline {
  tone: HeadlineTone;
  text: string;
}

/** What the headline is made from (a snapshot's worth, from the server or read back by the CLI). */
export interface HeadlineInput {
  engine: { type: string; component?: string; index?: number; total?: number; code?: string; error?: string };
  /** Nothing installed and no run recorded yet. */
  neverUpdated: boolean;
  /** An update source is set. */
  sourceSet: boolean;
  agents?: {
    enabled: boolean;
    error?: string | undefined;
    counts: { total: number; current: number; outdated: number; updating: number; failed: number; unreachable: number };
    /** Held back by the rollout (their ring not reached yet): not in `outdated`. */
    held: number;
    /** Since when the outdated agents (not held) lack what the server serves; null when unknown. */
    outdatedSince?: string | null;
    /** A halted rollout: why, and for content an engine would not load, which and where. */
    halted?: { reason: string; content?: { component?: string; version?: number; engine?: string } } | null;
  } | null;
  nameOf: (id: string) => string;
  now: number;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/** "3 days", "5 hours", "40 minutes": how long, roughly. */
export function roughSpan(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 90) return plural(Math.max(1, minutes), 'minute');
  const hours = Math.round(ms / 3_600_000);
  if (hours < 36) return plural(hours, 'hour');
  return plural(Math.round(ms / 86_400_000), 'day');
}

/** Why the server's last update failed, in words, from its error code (and text). */
export function updateFailure(code: string | undefined, error = ''): string {
  switch (code) {
    case 'ERR_NETWORK':
      return 'the update source cannot be reached';
    case 'ERR_PROXY_AUTH':
      return 'the proxy refused the user name or password';
    case 'ERR_METADATA':
      return /signed metadata has expired/.test(error) ? "the update source's signed metadata has expired" : "the update source's signatures do not verify";
    case 'ERR_HTTP':
      return /HTTP 404/.test(error) ? 'the update source lacks a file it lists' : 'the update source answered with an error';
    case 'ERR_COOLDOWN':
      return 'the update source asked Bulwark to wait';
    case 'ERR_SOURCE':
      return 'the update source published something unusable';
    case 'ERR_VERIFY':
    case 'ERR_CORRUPT':
      return "a download did not match the vendor's signature";
    case 'ERR_DOWNGRADE':
      return 'the update source offers an older version';
    case 'ERR_CLOCK':
      return "this machine's clock is ahead of the update source's";
    case 'ERR_STORE':
    case 'ERR_FILE':
      return `this server cannot write its data directory${diskReason(error)}`;
    case 'ERR_USAGE':
      return /no update source/.test(error) ? 'no update source is set' : 'the settings are incomplete';
    default:
      return 'the last update failed';
  }
}

function diskReason(error: string): string {
  const words = systemWords(error);
  return words ? ` (${words})` : '';
}

/** A system error's code in words, where there is one. */
function systemWords(error: string): string | undefined {
  if (/\bEROFS\b|read-only file system/i.test(error)) return 'its disk is read-only';
  if (/\bENOSPC\b|no space left/i.test(error)) return 'its disk is full';
  if (/\bEACCES\b|\bEPERM\b|permission denied/i.test(error)) return 'it may not write its files there';
  if (/\bEISDIR\b|\bENOTEMPTY\b|\bENOTDIR\b|is a directory|not a directory/i.test(error)) return 'something else is in the way of its files';
  if (/\bEMFILE\b|too many open files/i.test(error)) return 'it has too many files open';
  return undefined;
}

/**
 * Any failure (an agent's, a run's) in a few words, without paths or codes: "its disk is read-only",
 * "nothing answers at that address". The raw text is for the Details disclosure.
 */
export function plainError(error: string, code?: string): string {
  const consumer = consumerWords(error);
  if (consumer) return consumer;
  const system = systemWords(error);
  if (system) return system;
  if (/ECONNREFUSED|connection refused/i.test(error)) return 'nothing answers at that address (connection refused)';
  if (/ENOTFOUND|EAI_AGAIN|does not resolve|getaddrinfo|host name not found/i.test(error)) return 'the host name does not resolve';
  if (/ETIMEDOUT|timed? ?out|UND_ERR_.*TIMEOUT/i.test(error)) return 'no answer in time';
  if (/EHOSTUNREACH|ENETUNREACH|unreachable/i.test(error)) return 'the network cannot reach it';
  if (/certificate|TLS|SSL/i.test(error)) return 'its TLS certificate is not trusted';
  if (/\b407\b|proxy.*(credential|auth)/i.test(error)) return 'the proxy refused the user name or password';
  if (/signature|hash mismatch|does not match|ERR_VERIFY/i.test(error)) return "a file did not match the vendor's signature";
  if (/refus\w* .*downgrade|lower than the installed/i.test(error)) return 'the version offered is older than the installed one';
  if (code && code !== 'ERR_USAGE') {
    const words = updateFailure(code, error);
    if (words !== 'the last update failed') return words;
  }
  // No known cause: its first clause, without file paths.
  const first = error.split(/: /)[0]!.replace(/\s\/\S+/g, ' a file').trim();
  return first.length > 90 ? `${first.slice(0, 89)}…` : first || 'failed';
}

/** An engine that would not take a version (engine/consumers.ts's messages), in words; undefined for other errors. */
function consumerWords(error: string): string | undefined {
  const check = /(\S+) refused ([a-z0-9][a-z0-9-]*) (\d+) at its check/.exec(error);
  if (check) return `${check[1]} would not load ${check[2]} ${check[3]}`;
  const before = /([a-z0-9][a-z0-9-]*) (\d+) was refused by (\S+) at /.exec(error);
  if (before) return `${before[3]} would not load ${before[1]} ${before[2]}`;
  const reload = /(\S+) did not reload ([a-z0-9][a-z0-9-]*) (\d+)/.exec(error);
  if (reload) return `${reload[1]} did not reload ${reload[2]} ${reload[3]}`;
  const health = /(\S+) failed its health probe with ([a-z0-9][a-z0-9-]*) (\d+)/.exec(error);
  if (health) return `${health[1]} failed its health probe with ${health[2]} ${health[3]}`;
  return undefined;
}

/**
 * A run's failure in words that keep which components failed: a run record's error reads
 * "<id>[, <id>…] failed: <the first one's error>", said as "Virus Pattern failed (its disk is
 * read-only)". Any other error is plainError's.
 */
export function runFailureWords(error: string, code?: string): string {
  const failed = /^([a-z0-9][a-z0-9_-]*(?:, [a-z0-9][a-z0-9_-]*)*) failed: ([\s\S]+)$/.exec(error);
  if (!failed) return plainError(error, code);
  return `${failed[1]!.split(', ').map((id) => componentInfo(id).name).join(', ')} failed (${plainError(failed[2]!, code)})`;
}

/** What the server itself is doing, in words (the engine's state). */
export function serverWords(engine: HeadlineInput['engine'], nameOf: (id: string) => string, neverUpdated: boolean): string {
  switch (engine.type) {
    case 'idle':
      return neverUpdated ? 'Not updated yet' : 'Up to date';
    case 'checking':
      return 'Checking for updates';
    case 'downloading':
      return `Updating ${(engine.index ?? 0) + 1} of ${engine.total ?? '?'}: ${nameOf(engine.component ?? '')}`;
    case 'applying':
      return `Updating ${(engine.index ?? 0) + 1} of ${engine.total ?? '?'}: ${nameOf(engine.component ?? '')} (installing)`;
    case 'distributing':
      return 'Handing the new components to the agents';
    case 'failed':
      return `Last update failed: ${updateFailure(engine.code, engine.error)}`;
    default:
      return engine.type;
  }
}

/** The whole installation in one line, the worst thing first. */
export function headline(input: HeadlineInput): Headline {
  const { engine, agents } = input;
  const counts = agents?.counts;
  if (!input.sourceSet && input.neverUpdated) return { tone: 'setup', text: 'Set up: choose an update source' };
  if (agents?.halted?.content?.component) {
    const { component, version, engine: by } = agents.halted.content;
    return { tone: 'error', text: `Rollout halted: ${component}${version !== undefined ? ` ${version}` : ''} failed to load in ${by ?? 'its engine'}` };
  }
  if (agents?.halted) {
    const reason = agents.halted.reason.replace(/ with release \d+.*$/, '');
    return { tone: 'error', text: /operator/.test(reason) ? 'Rollout halted by the operator' : `Rollout halted: ${reason}` };
  }
  if (engine.type === 'failed') return { tone: 'error', text: `Updates failing: ${updateFailure(engine.code, engine.error)}` };
  if (agents?.error) return { tone: 'error', text: 'Agents cannot connect to this server' };
  if (counts?.failed) return { tone: 'error', text: `${plural(counts.failed, 'agent')} failed to update` };
  const busy = engine.type !== 'idle';
  if (busy) return { tone: 'busy', text: serverWords(engine, input.nameOf, input.neverUpdated) };
  if (counts?.unreachable) return { tone: 'warning', text: `${plural(counts.unreachable, 'agent')} not heard from` };
  const behind = counts ? counts.outdated : 0;
  if (counts && behind > 0) {
    const since = agents?.outdatedSince ? input.now - Date.parse(agents.outdatedSince) : NaN;
    return { tone: 'warning', text: `${plural(behind, 'agent')} out of date${since >= 3_600_000 ? ` for ${roughSpan(since)}` : ''}` };
  }
  if (input.neverUpdated) return { tone: 'setup', text: 'Waiting for the first update' };
  if (counts?.updating && agents?.enabled) return { tone: 'busy', text: `Up to date; ${plural(counts.updating, 'agent')} updating` };
  if (!counts || counts.total === 0 || !agents?.enabled) return { tone: 'ok', text: 'Up to date' };
  const waiting = agents.held ? ` (${plural(agents.held, 'agent')} waiting for the rollout)` : '';
  const current = counts.current === counts.total ? `server and ${plural(counts.total, 'agent')}` : `server and ${counts.current} of ${plural(counts.total, 'agent')}`;
  return { tone: 'ok', text: `Up to date: ${current}${waiting}` };
}

/**
 * What a download saved against the full file, for the log and the console: "saved 99.6%" (rounded
 * down, so never "100.0%" while bytes were paid), "no saving" (or "compressed: no saving" for a full
 * file whose compressed form is not smaller); '' when the size of the full file is unknown.
 */
export function savedWords(method: string, bytes: number, fullBytes: number): string {
  if (!(fullBytes > 0)) return '';
  if (bytes >= fullBytes) return method === 'full' ? 'compressed: no saving' : 'no saving';
  const saved = (1 - bytes / fullBytes) * 100;
  if (saved < 0.1) return 'saved less than 0.1%';
  return `saved ${(Math.floor(saved * 10) / 10).toFixed(1)}%`;
}
