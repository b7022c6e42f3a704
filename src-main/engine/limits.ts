// Default limits and retention, in one documented place (like tuf-js's defaultConfig).

export interface Limits {
  /** Largest component file (uncompressed) the engine will build or accept. */
  maxFileBytes: number;
  /** Largest catalogue target accepted from a source. */
  maxCatalogueBytes: number;
  /** Largest TUF metadata files accepted (passed to tuf-js). */
  maxRootBytes: number;
  maxTimestampBytes: number;
  maxSnapshotBytes: number;
  maxTargetsBytes: number;
  /** Network timeout for one request, in milliseconds (connect, headers, and between body chunks). */
  requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxFileBytes: 1024 * 1024 * 1024,
  maxCatalogueBytes: 1024 * 1024,
  maxRootBytes: 512 * 1024,
  maxTimestampBytes: 16 * 1024,
  maxSnapshotBytes: 1024 * 1024,
  maxTargetsBytes: 8 * 1024 * 1024,
  requestTimeoutMs: 30_000,
};

/** How many versions of each component the store keeps: bases for agents' incrementals and rollback. */
export const KEEP_VERSIONS = 15;

/** How many earlier versions get an incremental pattern to the latest when publishing. */
export const INCREMENTAL_HISTORY = 14;

/**
 * An incremental is published (and used) only when it is clearly smaller than the compressed full file:
 * at most this share of its size.
 */
export const INCREMENTAL_WORTH_RATIO = 0.8;

/** Default metadata lifetimes, in days (TUF roles). */
export const DEFAULT_EXPIRY_DAYS = { timestamp: 1, snapshot: 7, targets: 30, root: 365 } as const;

/** Published target files stay on the source this long after they leave the metadata. */
export const TARGET_RETENTION_DAYS = 7;
