// Failed enrollments and refused credentials, counted per source address: past a limit in a window,
// that address's further attempts of the kind are answered 429 (with Retry-After) without being
// checked, until the window ends; and they are logged in groups, not one line each — the first
// refusal of a window at once (a mistyped token is seen at once), the rest as one line per address
// when the window ends ("37 enrollments refused from 10.0.0.5 in the last minute"). Memory is bounded:
// past MAX_ADDRESSES tracked, further addresses are counted together.

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
  private counts = new Map<string, Count>();
  private windowStart = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: (line: string) => void,
    private readonly limits: RefusalLimits = DEFAULT_REFUSAL_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.windowStart = now();
    this.timer = setInterval(() => this.flush(), limits.windowMs);
    this.timer.unref();
  }

  private key(kind: RefusalKind, address: string): string {
    const key = `${kind} ${sourceOf(address)}`;
    return this.counts.has(key) || this.counts.size < MAX_ADDRESSES ? key : `${kind} ${OTHERS}`;
  }

  /** Seconds until `address` may try `kind` again, when it is over the limit now; undefined when it may try. */
  retryAfter(kind: RefusalKind, address: string): number | undefined {
    const count = this.counts.get(this.key(kind, address));
    if (!count || count.refused < this.limits.perAddress) return undefined;
    count.refused++;
    count.limited++;
    return Math.max(1, Math.ceil((this.windowStart + this.limits.windowMs - this.now()) / 1000));
  }

  /** A refusal from `address`; `detail` says what was refused (already made safe to print). The first of a window is logged at once. */
  refused(kind: RefusalKind, address: string, detail: string): void {
    const key = this.key(kind, address);
    const count = this.counts.get(key);
    if (count) {
      count.refused++;
      return;
    }
    this.counts.set(key, { refused: 1, limited: 0, first: detail });
    const [one, , why] = WHAT[kind];
    this.log(`agents: refused ${one} from ${key.slice(kind.length + 1)} (${why})${detail ? `: ${detail}` : ''}; more from there this minute are logged together`);
  }

  /** Log the window's refusals, one line per address and kind beyond the first, and start a new window. */
  flush(): void {
    const seconds = Math.round((this.now() - this.windowStart) / 1000);
    for (const [key, count] of this.counts) {
      if (count.refused <= 1) continue;
      const kind = key.slice(0, key.indexOf(' ')) as RefusalKind;
      const [, many, why] = WHAT[kind];
      const limited = count.limited ? `; ${count.limited} of them answered 429 unchecked, over the limit of ${this.limits.perAddress} a minute` : '';
      this.log(`agents: ${count.refused} ${many} refused from ${key.slice(kind.length + 1)} in the last ${seconds >= 55 && seconds <= 65 ? 'minute' : `${seconds} s`} (${why}${limited})`);
    }
    this.counts = new Map();
    this.windowStart = this.now();
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
