// Failed enrollments and refused credentials, counted per source address, in a window that starts
// with its first refusal: past a limit in the window, that address's further attempts of the kind
// are answered 429 (with Retry-After) without being checked, until the window ends; and they are
// logged in groups, not one line each — the first refusal at once (a mistyped token is seen at
// once), the rest as one line when the window ends ("37 enrollments refused from 10.0.0.5 in the
// last minute"). Memory is bounded: past MAX_ADDRESSES tracked, further addresses are counted together.

export type RefusalKind = 'enrollment' | 'credential';

export interface RefusalLimits {
  /** Refusals of one kind from one address in a window, past which it is answered 429 unchecked. */
  perAddress: number;
  windowMs: number;
}

/** About one enrollment attempt every 3 s from each address; an agent tries far less often. */
export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = { perAddress: 20, windowMs: 60_000 };

/** Addresses tracked at once; the rest share one count (and one limit) until the window ends. */
const MAX_ADDRESSES = 10_000;
const OTHERS = '(other addresses)';

const WHAT: Record<RefusalKind, [string, string, string]> = {
  // [one, many, why]
  enrollment: ['an enrollment', 'enrollments', 'wrong or rotated enrollment token, or a malformed request'],
  credential: ['a request with an agent credential', 'requests with agent credentials', 'unknown agent or wrong credential'],
};

interface Count {
  /** When its window began: its first refusal. */
  start: number;
  refused: number;
  /** Of them, answered 429 without being checked. */
  limited: number;
  /** The first refusal's detail, logged at once. */
  first: string;
}

/**
 * Where a request comes from, as counted: an IPv4 address, or an IPv6 address's /64 (one host
 * commonly has a whole /64 to pick addresses from).
 */
export function sourceOf(address: string): string {
  if (!address.includes(':')) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class Refusals {
  private readonly counts = new Map<string, Count>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: (line: string) => void,
    private readonly limits: RefusalLimits = DEFAULT_REFUSAL_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    // Windows end within a twelfth of their length of when they should.
    this.timer = setInterval(() => this.flush(), Math.max(1_000, limits.windowMs / 12));
    this.timer.unref();
  }

  private key(kind: RefusalKind, address: string): string {
    const key = `${kind} ${sourceOf(address)}`;
    return this.counts.has(key) || this.counts.size < MAX_ADDRESSES ? key : `${kind} ${OTHERS}`;
  }

  /** Seconds until `address` may try `kind` again, when it is over the limit now; undefined when it may try. */
  retryAfter(kind: RefusalKind, address: string): number | undefined {
    const count = this.counts.get(this.key(kind, address));
    if (!count || count.refused < this.limits.perAddress || this.now() - count.start >= this.limits.windowMs) return undefined;
    count.refused++;
    count.limited++;
    return Math.max(1, Math.ceil((count.start + this.limits.windowMs - this.now()) / 1000));
  }

  /** A refusal from `address`; `detail` says what was refused (already made safe to print). The first of a window is logged at once. */
  refused(kind: RefusalKind, address: string, detail: string): void {
    const key = this.key(kind, address);
    const count = this.counts.get(key);
    if (count && this.now() - count.start < this.limits.windowMs) {
      count.refused++;
      return;
    }
    if (count) this.report(key, count);
    this.counts.set(key, { start: this.now(), refused: 1, limited: 0, first: detail });
    const [one, , why] = WHAT[kind];
    this.log(`agents: refused ${one} from ${key.slice(kind.length + 1)} (${why})${detail ? `: ${detail}` : ''}; more from there this minute are logged together`);
  }

  /** End the windows that are over (`all`: every window), each logged as one line when it had more than its first refusal. */
  flush(all = false): void {
    for (const [key, count] of this.counts) {
      if (!all && this.now() - count.start < this.limits.windowMs) continue;
      this.report(key, count);
      this.counts.delete(key);
    }
  }

  private report(key: string, count: Count): void {
    if (count.refused <= 1) return;
    const kind = key.slice(0, key.indexOf(' ')) as RefusalKind;
    const [, many, why] = WHAT[kind];
    const span = (ms: number) => (ms === 60_000 ? 'minute' : `${Math.round(ms / 1000)} s`);
    const limited = count.limited ? `; ${count.limited} of them answered 429 unchecked, over the limit of ${this.limits.perAddress} a ${span(this.limits.windowMs)}` : '';
    this.log(`agents: ${count.refused} ${many} refused from ${key.slice(kind.length + 1)} in the last ${span(Math.min(this.now() - count.start, this.limits.windowMs))} (${why}${limited})`);
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush(true);
  }
}
