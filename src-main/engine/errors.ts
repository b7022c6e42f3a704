// Errors Bulwark reports. Each has a string-literal `code` that the CLI, the history and the console
// can match on, and keeps the underlying error as `cause`.

export type BulwarkErrorCode =
  | 'ERR_USAGE'
  | 'ERR_SETTINGS'
  | 'ERR_SOURCE'
  | 'ERR_NETWORK'
  | 'ERR_HTTP'
  | 'ERR_PROXY_AUTH'
  | 'ERR_COOLDOWN'
  | 'ERR_METADATA'
  | 'ERR_CORRUPT'
  | 'ERR_VERIFY'
  | 'ERR_DOWNGRADE'
  | 'ERR_STORE'
  | 'ERR_PUBLISH'
  | 'ERR_BUSY'
  | 'ERR_FILE'
  | 'ERR_CONSUMER'
  | 'ERR_CONSUMER_CONFIG';

export class BulwarkError extends Error {
  constructor(
    readonly code: BulwarkErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A command line or API call was malformed. */
export class UsageError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_USAGE', message, options);
  }
}

/** A setting was invalid; the previous value is kept. `field` names it, e.g. "proxy.port". */
export class SettingsError extends BulwarkError {
  readonly field: string | undefined;

  constructor(message: string, options?: { cause?: unknown; field?: string }) {
    super('ERR_SETTINGS', message, options);
    this.field = options?.field;
  }
}

/** The update source is misconfigured or published something unusable (e.g. a bad catalogue). */
export class SourceError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SOURCE', message, options);
  }
}

/** The source could not be reached (DNS, connection, TLS, timeout); `familyMismatch` when IPv4 met IPv6-only or the reverse. */
export class NetworkError extends BulwarkError {
  readonly familyMismatch: boolean;

  constructor(message: string, options?: { cause?: unknown; familyMismatch?: boolean }) {
    super('ERR_NETWORK', message, options);
    this.familyMismatch = options?.familyMismatch ?? false;
  }
}

/** The source answered with an HTTP error status (through a proxy, `via` names it: a 5xx may be the proxy's own). */
export class HttpStatusError extends BulwarkError {
  constructor(
    readonly status: number,
    readonly url: string,
    options?: { cause?: unknown; via?: string },
  ) {
    super(
      'ERR_HTTP',
      options?.via && status >= 500 && status <= 504
        ? `the ${options.via} could not fetch ${url} (HTTP ${status}): the proxy failed to reach the update source, or the source failed`
        : `HTTP ${status} for ${url}`,
      options,
    );
  }
}

/** The proxy refused our credentials (407, or the 401 some proxies such as tinyproxy send instead). */
export class ProxyAuthError extends BulwarkError {
  readonly status: number;

  constructor(message: string, options: { cause?: unknown; status: number }) {
    super('ERR_PROXY_AUTH', message, options);
    this.status = options.status;
  }
}

/** The source asked us to wait (403/429 with Retry-After): `status` is set on the answer that started it. */
export class CooldownError extends BulwarkError {
  constructor(
    readonly until: Date,
    options?: { cause?: unknown; origin?: string; status?: number },
  ) {
    const who = options?.origin ?? 'the update source';
    super(
      'ERR_COOLDOWN',
      options?.status
        ? `${who} answered HTTP ${options.status} and asked Bulwark to wait; the next try is at ${until.toISOString()}`
        : `${who} asked to wait until ${until.toISOString()}; no request is sent before then`,
      options,
    );
  }
}

/** TUF metadata failed to load or verify (expired, bad signature, rollback...). */
export class MetadataError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_METADATA', message, options);
  }
}

/** Downloaded or stored data could not be decoded. */
export class CorruptDataError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CORRUPT', message, options);
  }
}

/** A file did not match its signed length or hash. */
export class VerificationError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VERIFY', message, options);
  }
}

/** The source offers a version lower than the installed one. */
export class DowngradeError extends BulwarkError {
  constructor(
    readonly installed: number,
    readonly offered: number,
  ) {
    super('ERR_DOWNGRADE', `the source offers version ${offered}, lower than the installed ${installed}; refused`);
  }
}

/** The local store could not be read or written. */
export class StoreError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STORE', message, options);
  }
}

/** `bulwark publish` could not build the update source. */
export class PublishError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PUBLISH', message, options);
  }
}

/** Another process holds the data directory. */
export class BusyError extends BulwarkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BUSY', message, options);
  }
}

/** A file in the data directory could not be read or written (permissions, disk full, not a file). */
export class FileError extends BulwarkError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_FILE', message, options);
  }
}

/** Where a consumer hand-off failed: checking the candidate, placing it, reloading the engine, or probing it. */
export type ConsumerStage = 'check' | 'place' | 'reload' | 'health';

/**
 * Whose failure it is: 'content' (the engine would not take this version: its check, reload or health
 * failed) halts a rollout; 'local' (this machine's: a full or read-only disk, permissions, a program
 * missing) marks only the machine it happened on.
 */
export type FailureKind = 'content' | 'local';

/** A component could not be handed to the engine that uses it (consumers.ts); the previous version stays. */
export class ConsumerError extends BulwarkError {
  /** The engine's own words (its command's output, trimmed), when it said something. */
  readonly engineMessage: string | undefined;
  /** When it happened (for a version refused earlier: when it was refused). */
  readonly at: string;

  constructor(
    readonly stage: ConsumerStage,
    readonly kind: FailureKind,
    /** The engine's name, for messages: "clamd". */
    readonly engine: string,
    message: string,
    options?: { cause?: unknown; engineMessage?: string; at?: string },
  ) {
    super('ERR_CONSUMER', message, options);
    this.engineMessage = options?.engineMessage;
    this.at = options?.at ?? new Date().toISOString();
  }
}

/** A consumers file is not valid: `file` and `entry` (a component id, when one is at fault) name the place. */
export class ConsumerConfigError extends BulwarkError {
  constructor(
    readonly file: string,
    readonly entry: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_CONSUMER_CONFIG', `${file}${entry ? `, entry "${entry}"` : ''}: ${message}`, options);
  }
}

/** One line for a person: the message, plus the cause's when it adds something. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && !error.message.includes(cause) ? `${error.message}: ${cause}` : error.message;
}
