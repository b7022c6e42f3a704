// `bulwark publish`: turn a directory of full component files (DIR/<component-id>/<version>) into a
// static, TUF-signed update source that any web server or CDN can host:
//
//   OUT/root.json                      trusted root for clients to import
//   OUT/metadata/N.root.json           every root version (clients walk the chain)
//   OUT/metadata/N.targets.json        consistent snapshots: metadata addressed by version...
//   OUT/metadata/N.snapshot.json
//   OUT/metadata/timestamp.json        ...and the timestamp, written last: the commit point
//   OUT/targets/<id>/<sha256>.<name>   targets addressed by hash (catalogue, full files, incrementals)
//
// Re-running with new versions publishes incrementally: metadata versions only go up, compressed
// files and patches already built are reused, and files that left the metadata stay for
// TARGET_RETENTION_DAYS so clients midway through an update can still fetch them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { Ajv, type JSONSchemaType } from 'ajv';
import { CATALOGUE_TARGET, fullTarget, incrementalTarget, type Catalogue, type CatalogueComponent } from '../engine/catalogue.js';
import { compressFullBest, createRecordsPatch, Encoder, estimateFull, estimatePatch, FULL_CODECS, FULL_LEVEL, PATCH_LEVEL, patchBuilder, type FullCodec, type FullEstimate } from '../engine/codec.js';
import { COMPONENT_ID_PATTERN, componentInfo, isValidVersion, type ComponentDeclaration, type ComponentInfo } from '../engine/components.js';
import { PublishError } from '../engine/errors.js';
import { sha256, writeFileAtomic } from '../engine/files.js';
import {
  DEFAULT_EXPIRY_DAYS,
  DEFAULT_LIMITS,
  INCREMENTAL_HISTORY,
  INCREMENTAL_WORTH_RATIO,
  TARGET_RETENTION_DAYS,
} from '../engine/limits.js';
import { xzAvailable } from '../engine/xz.js';
import { loadOrCreateKeys, ROLES, type RoleName, type SigningKey } from './signing-keys.js';

const SPEC_VERSION = '1.0.31';
/** Files above this size have their full file's codec and size estimated from a sample before incrementals are built. */
const ESTIMATE_FROM_BYTES = 8 * 1024 * 1024;
/**
 * The zstd level of the full file kept beside an xz one for older clients, when the xz one was chosen
 * from a sample (files over 24 MiB): seconds rather than a minute and tens of MB of tables rather than
 * hundreds, so the publish's CPU and memory stay those of xz (docs/benchmarks.md).
 */
const COMPAT_LEVEL = 9;
/** An incremental's byte-level build is skipped only when its estimate is over the limit by this factor. */
const ESTIMATE_MARGIN = 1.15;
const DAY_MS = 86_400_000;

export interface PublishOptions {
  input: string;
  out: string;
  keys: string;
  expiryDays?: Partial<Record<RoleName, number>>;
  /** zstd level for full files (FULL_LEVEL by default; the demo and tests use less). */
  level?: number;
  /** zstd level for incremental patterns (PATCH_LEVEL by default). */
  patchLevel?: number;
  /**
   * Codecs a full file may be published in; the smallest is chosen per file (all by default). The demo
   * publishes zstd only: its source, server and agents share one process, and xz's encoder needs ~94 MiB.
   */
  fullCodecs?: readonly FullCodec[];
  now?: Date;
  log?: (line: string) => void;
  /** For what costs more than it should here (the CLI writes it on stderr). */
  warn?: (line: string) => void;
}

export interface PublishedComponent {
  id: string;
  latest: number;
  fullBytes: number;
  compressedBytes: number;
  /** How the full file is coded ('zstd' or 'xz'). */
  codec: string;
  incrementals: { from: number; bytes: number; format: string }[];
  /**
   * Incrementals not published because they were not clearly smaller than the compressed full file;
   * `estimated` when its size was estimated and it was never built.
   */
  skipped: { from: number; bytes: number; estimated?: boolean }[];
}

export interface PublishResult {
  versions: { targets: number; snapshot: number; timestamp: number; root: number };
  components: PublishedComponent[];
}

interface BuiltFile {
  sha256: string;
  length: number;
  name: string;
  codec?: string;
  estimated?: boolean;
}

/** What the publisher remembers between runs (beside the keys: publishStateFile); never read by clients. */
interface PublishState {
  /**
   * Built files by content: "<kind>:<sha256 of input(s)>" -> target file hash, length and name, and how it
   * is coded; an incremental never built because its estimate was not worth it has no hash and `estimated`.
   */
  built: Record<string, BuiltFile>;
  /** Target files and metadata no longer referenced, with when they were retired. */
  retired: Record<string, string>;
}

const stateSchema: JSONSchemaType<PublishState> = {
  type: 'object',
  required: ['built', 'retired'],
  properties: {
    built: {
      type: 'object',
      required: [],
      additionalProperties: {
        type: 'object',
        required: ['sha256', 'length', 'name'],
        properties: {
          sha256: { type: 'string' },
          length: { type: 'integer' },
          name: { type: 'string' },
          codec: { type: 'string', nullable: true },
          estimated: { type: 'boolean', nullable: true },
        },
      },
    },
    retired: { type: 'object', required: [], additionalProperties: { type: 'string' } },
  },
};
const compileStateSchema = () => new Ajv().compile(stateSchema);
/** Compiled on first use, not at import. */
let validateState: ReturnType<typeof compileStateSchema> | undefined;

interface InputComponent {
  id: string;
  versions: number[];
  dir: string;
  info: ComponentInfo;
}

/** Optional DIR/<component-id>/component.json: what the source declares about its component. */
export const COMPONENT_FILE = 'component.json';

const declarationSchema: JSONSchemaType<ComponentDeclaration> = {
  type: 'object',
  required: [],
  additionalProperties: false,
  properties: {
    // Bounds as in the catalogue's schema, which clients check.
    name: { type: 'string', minLength: 1, maxLength: 100, nullable: true },
    duplication: { type: 'boolean', nullable: true },
  },
};
const compileDeclarationSchema = () => new Ajv().compile(declarationSchema);
/** Compiled on first use, not at import. */
let validateDeclaration: ReturnType<typeof compileDeclarationSchema> | undefined;

function readDeclaration(file: string): ComponentDeclaration {
  const expected = 'expected {"name": "...", "duplication": true or false}, both optional';
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new PublishError(`${file} is not valid JSON (${(cause as Error).message}); ${expected}`, { cause });
  }
  validateDeclaration ??= compileDeclarationSchema();
  if (!validateDeclaration(data)) {
    const problem = validateDeclaration.errors?.[0];
    const where = problem?.instancePath ? `"${problem.instancePath.slice(1)}" ` : '';
    const extra = problem?.keyword === 'additionalProperties' ? ` ("${String(problem.params.additionalProperty)}")` : '';
    throw new PublishError(`${file}: ${where}${problem?.message ?? 'is not valid'}${extra}; ${expected}`);
  }
  return data;
}

/**
 * Read DIR/<component-id>/<version> and the optional DIR/<component-id>/component.json; refuse anything
 * that does not fit that layout.
 */
export function readInput(input: string): InputComponent[] {
  if (!fs.existsSync(input) || !fs.statSync(input).isDirectory()) {
    throw new PublishError(`input directory ${input} does not exist`);
  }
  const components: InputComponent[] = [];
  for (const id of fs.readdirSync(input).sort()) {
    if (id.startsWith('.')) continue;
    const dir = path.join(input, id);
    if (!fs.statSync(dir).isDirectory()) throw new PublishError(`${dir} is not a directory (expected <component-id>/<version>)`);
    if (!COMPONENT_ID_PATTERN.test(id)) {
      throw new PublishError(`${dir}: component ids use lower-case letters, digits and dashes (e.g. virus-pattern)`);
    }
    const versions: number[] = [];
    let declared: ComponentDeclaration = {};
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      if (name === COMPONENT_FILE) {
        declared = readDeclaration(path.join(dir, name));
        continue;
      }
      const version = /^[1-9][0-9]*$/.test(name) ? Number(name) : NaN;
      if (!isValidVersion(version)) throw new PublishError(`${path.join(dir, name)}: file names must be integer versions (e.g. 175)`);
      if (!fs.statSync(path.join(dir, name)).isFile()) throw new PublishError(`${path.join(dir, name)} is not a file`);
      versions.push(version);
    }
    if (versions.length === 0) throw new PublishError(`${dir} holds no versions`);
    components.push({ id, versions: versions.sort((a, b) => a - b), dir, info: componentInfo(id, declared) });
  }
  if (components.length === 0) throw new PublishError(`input directory ${input} holds no components`);
  return components;
}

function readJson<T>(file: string): T | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (cause) {
    throw new PublishError(`cannot read ${file}; the output directory is damaged`, { cause });
  }
}

/**
 * Where the publisher keeps its state for `out`: beside its signing keys (private, never published),
 * one file per site. Versions before this kept it in the site itself (OUT/publish-state.json), where
 * any web server would hand it out: it is moved from there at the next publish.
 */
export function publishStateFile(keysDir: string, out: string): string {
  const site = crypto.createHash('sha256').update(path.resolve(out)).digest('hex').slice(0, 16);
  return path.join(keysDir, `publish-state-${site}.json`);
}

function readState(file: string, out: string): PublishState {
  const legacy = path.join(out, 'publish-state.json');
  const state = readJson<unknown>(fs.existsSync(file) ? file : legacy);
  if (state === undefined) return { built: {}, retired: {} };
  validateState ??= compileStateSchema();
  if (!validateState(state)) throw new PublishError(`${fs.existsSync(file) ? file : legacy} is damaged`);
  return state;
}

function expiry(now: Date, days: number): string {
  return new Date(now.getTime() + days * DAY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function sign<T extends Root | Targets | Snapshot | Timestamp>(signed: T, key: SigningKey): Metadata<T> {
  const metadata = new Metadata(signed);
  metadata.sign(key.sign);
  return metadata;
}

function metadataBytes(metadata: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(metadata.toJSON()));
}

/** The current root, re-signed with a higher version when it nears expiry or its keys changed. */
function currentRoot(
  metadataDir: string,
  keys: Record<RoleName, SigningKey>,
  expiryDays: Record<RoleName, number>,
  now: Date,
): { root: Metadata<Root>; changed: boolean } {
  const versions = fs.existsSync(metadataDir)
    ? fs.readdirSync(metadataDir).flatMap((n) => /^(\d+)\.root\.json$/.exec(n)?.[1] ?? []).map(Number)
    : [];
  const latest = versions.length ? Math.max(...versions) : 0;
  const roleKeys = (role: RoleName) => keys[role].key;
  if (latest > 0) {
    const previous = Metadata.fromJSON('root' as never, readJson(path.join(metadataDir, `${latest}.root.json`))!) as Metadata<Root>;
    const sameKeys = ROLES.every((role) => previous.signed.roles[role]?.keyIDs.includes(roleKeys(role).keyID));
    const remaining = new Date(previous.signed.expires).getTime() - now.getTime();
    if (sameKeys && remaining > (expiryDays.root * DAY_MS) / 4) return { root: previous, changed: false };
  }
  const root = new Root({
    version: latest + 1,
    specVersion: SPEC_VERSION,
    expires: expiry(now, expiryDays.root),
    consistentSnapshot: true,
  });
  for (const role of ROLES) root.addKey(roleKeys(role), role);
  const metadata = new Metadata(root);
  metadata.sign(keys.root.sign);
  // TUF spec §6.1: a new root must also be signed by the keys of the previous root. Keys live in one
  // directory, so a rotation is an operator replacing a key file; the old signature is then absent and
  // clients refuse the rotation, which is the safe outcome.
  return { root: metadata, changed: true };
}

/**
 * Reads files into one buffer, grown with headroom as needed (pattern files grow a little with every
 * version); what it returns is valid until the next read. A publish reads up to 14 bases per component
 * and every latest version twice; a new buffer for each would stay in memory until a garbage collection,
 * next to zstd's tables.
 */
class ReusableReader {
  private buffer = Buffer.alloc(0);

  read(file: string): Buffer {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size > this.buffer.length) this.buffer = Buffer.allocUnsafe(Math.ceil(size * 1.25));
      let length = 0;
      while (length < size) {
        const n = fs.readSync(fd, this.buffer, length, size - length, length);
        if (n === 0) break;
        length += n;
      }
      return this.buffer.subarray(0, length);
    } finally {
      fs.closeSync(fd);
    }
  }
}

export function publish(options: PublishOptions): PublishResult {
  const now = options.now ?? new Date();
  const log = options.log ?? (() => {});
  const warn = options.warn ?? (() => {});
  const level = options.level ?? FULL_LEVEL;
  const patchLevel = options.patchLevel ?? PATCH_LEVEL;
  if (options.fullCodecs && (options.fullCodecs.length === 0 || options.fullCodecs.some((c) => !FULL_CODECS.includes(c)))) {
    throw new PublishError(`full codecs must be among ${FULL_CODECS.join(', ')}`);
  }
  // xz goes through node-liblzma's native binding, or liblzma's WebAssembly build where that is missing
  // (xz.ts); only a runtime without WebAssembly has neither, and then publishes zstd.
  if (options.fullCodecs?.includes('xz') && !xzAvailable()) throw new PublishError('xz was asked for, but neither node-liblzma nor liblzma\'s WebAssembly build can be loaded here');
  const fullCodecs = options.fullCodecs ?? FULL_CODECS.filter((c) => c !== 'xz' || xzAvailable());
  if (!xzAvailable()) log('xz is not available here (neither node-liblzma nor WebAssembly): full files are published in zstd');
  const expiryDays = { ...DEFAULT_EXPIRY_DAYS, ...options.expiryDays };
  for (const [role, days] of Object.entries(expiryDays)) {
    if (!(Number.isFinite(days) && days > 0 && days <= 3650)) throw new PublishError(`expiry for ${role} must be between 0 and 3650 days`);
  }
  const components = readInput(options.input);
  const keys = loadOrCreateKeys(options.keys);
  const metadataDir = path.join(options.out, 'metadata');
  const targetsDir = path.join(options.out, 'targets');
  fs.mkdirSync(metadataDir, { recursive: true });
  fs.mkdirSync(targetsDir, { recursive: true });
  const stateFile = publishStateFile(options.keys, options.out);
  const state = readState(stateFile, options.out);
  // One compression context for the whole publish: see Encoder for why not one per file.
  const encoder = new Encoder();
  const bases = new ReusableReader();
  const latests = new ReusableReader();

  const targetFiles: Record<string, TargetFile> = {};
  const referenced = new Set<string>();
  /** Where a target is stored: under its hashed name (TUF spec §5.7.3 consistent snapshots). */
  const hashedName = (targetPath: string, hash: string) => `${path.posix.dirname(targetPath)}/${hash}.${path.posix.basename(targetPath)}`.replace(/^\.\//, '');
  const storedFile = (targetPath: string, hash: string) => path.join(targetsDir, hashedName(targetPath, hash));
  /** Store a target's bytes; `created` says whether this run wrote the file. */
  const store = (targetPath: string, data: Buffer) => {
    const built = { sha256: sha256(data), length: data.length };
    const file = storedFile(targetPath, built.sha256);
    const created = !fs.existsSync(file);
    if (created) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeFileAtomic(file, data);
    }
    return { ...built, created };
  };
  /** List a stored target in the targets metadata. */
  const addTarget = (targetPath: string, built: { sha256: string; length: number }) => {
    if (!fs.existsSync(storedFile(targetPath, built.sha256))) {
      throw new PublishError(`${storedFile(targetPath, built.sha256)} went missing; delete ${stateFile} to rebuild`);
    }
    referenced.add(path.join('targets', hashedName(targetPath, built.sha256)));
    targetFiles[targetPath] = new TargetFile({ path: targetPath, length: built.length, hashes: { sha256: built.sha256 } });
  };
  /** Build once per distinct input: compressing 50 MB takes a minute or more. */
  const buildOnce = (cacheKey: string, build: () => { targetPath: string; data: Buffer; codec: string }) => {
    const cached = state.built[cacheKey];
    if (cached?.sha256 && fs.existsSync(storedFile(cached.name, cached.sha256))) return { ...cached, codec: cached.codec ?? 'zstd', created: false };
    const { targetPath, data, codec } = build();
    const built = store(targetPath, data);
    state.built[cacheKey] = { sha256: built.sha256, length: built.length, name: targetPath, codec };
    return { ...built, name: targetPath, codec };
  };
  const readLatest = (component: InputComponent) => {
    const latest = component.versions.at(-1)!;
    const bytes = latests.read(path.join(component.dir, String(latest)));
    if (bytes.length > DEFAULT_LIMITS.maxFileBytes) throw new PublishError(`${component.id} ${latest} is larger than the ${DEFAULT_LIMITS.maxFileBytes}-byte limit`);
    return { latest, bytes, hash: sha256(bytes) };
  };
  /** Whether the first byte-level build has said how it is built (only the fallback is said). */
  let builderSaid = false;
  /**
   * The incremental from `base` to `latest` in the format that makes it smallest: the record-aware one for
   * text lists of records (cheap to build), the byte-level zstd patch for anything. The byte-level build is
   * skipped when an estimate of it shows it could not be worth publishing, or could not beat the record one.
   */
  const buildIncremental = (
    component: InputComponent,
    from: number,
    base: Buffer,
    latest: { latest: number; bytes: Buffer },
    limit: number | undefined,
    fullRatio: number | undefined,
  ): { estimated: number } | { targetPath: string; data: Buffer; codec: string } => {
    const targetPath = incrementalTarget(component.id, from, latest.latest);
    const records = createRecordsPatch(base, latest.bytes);
    if (fullRatio !== undefined && limit !== undefined) {
      // A margin over the estimate: skipping one that would have been worth it costs more than a wasted build.
      const estimate = estimatePatch(base, latest.bytes, fullRatio);
      if ((!records || records.length > limit) && estimate > limit * ESTIMATE_MARGIN) return { estimated: estimate };
      if (records && estimate > records.length * ESTIMATE_MARGIN) return { targetPath, data: records, codec: 'records' };
    }
    if (!builderSaid) {
      builderSaid = true;
      const builder = patchBuilder();
      if (builder.path === 'dictionary') warn(`byte-level incrementals are built through zstd-napi's loadDictionary, with the base's match tables held twice (${builder.reason})`);
    }
    const zstd = encoder.createPatch(base, latest.bytes, patchLevel);
    return records && records.length < zstd.length ? { targetPath, data: records, codec: 'records' } : { targetPath, data: zstd, codec: 'zstd' };
  };

  // Incrementals of every component first, full files after. Where the prefix addon is missing, one zstd
  // context codes everything and keeps the largest workspace it has needed; a full file's (at FULL_LEVEL,
  // tables for the whole file) is larger than an incremental's for files up to about 30 MB, so building
  // it first would leave it under every incremental's tables (with the addon, each file's context is
  // freed as the file is made). Whether an incremental is worth publishing is only known for certain once its
  // full file is: a new one is stored now and removed again if it is not. For large files (where a
  // byte-level build costs seconds and hundreds of MB) a sample of the latest version tells the full
  // file's codec and size beforehand, so incrementals that could not be worth it are not built at all.
  const patches = new Map<string, { from: number; key: string; length: number; created: boolean; estimated?: boolean }[]>();
  const estimates = new Map<string, FullEstimate>();
  for (const component of components.filter((c) => c.info.duplication)) {
    const latest = readLatest(component);
    const estimate = latest.bytes.length > ESTIMATE_FROM_BYTES ? estimateFull(latest.bytes, encoder, fullCodecs) : undefined;
    if (estimate) estimates.set(component.id, estimate);
    const limit = estimate ? latest.bytes.length * estimate.ratio * INCREMENTAL_WORTH_RATIO : undefined;
    const built: { from: number; key: string; length: number; created: boolean; estimated?: boolean }[] = [];
    // Newest base first: bases grow with the versions, so zstd's largest tables are allocated first and
    // the smaller ones fit where they were (oldest first left the allocator's heap 20-40 MB larger).
    for (const from of component.versions.slice(0, -1).slice(-INCREMENTAL_HISTORY).reverse()) {
      const baseBytes = bases.read(path.join(component.dir, String(from)));
      const key = `incremental:${patchLevel}:${sha256(baseBytes)}:${latest.hash}`;
      const cached = state.built[key];
      // Known from an earlier run (published, or measured or estimated as not worth it): nothing to build.
      if (cached) {
        built.push({ from, key, length: cached.length, created: false, ...(cached.estimated ? { estimated: true } : {}) });
        continue;
      }
      const result = buildIncremental(component, from, baseBytes, latest, limit, estimate?.ratio);
      if ('estimated' in result) {
        state.built[key] = { sha256: '', length: result.estimated, name: incrementalTarget(component.id, from, latest.latest), estimated: true };
        built.push({ from, key, length: result.estimated, created: false, estimated: true });
      } else {
        built.push({ from, key, ...buildOnce(key, () => result) });
      }
    }
    patches.set(component.id, built.reverse());
  }

  const catalogue: Catalogue = { schema: 1, published: now.toISOString(), components: [] };
  const published: PublishedComponent[] = [];
  for (const component of components) {
    const { info } = component;
    const { latest, bytes: latestBytes, hash: latestHash } = readLatest(component);
    let zstdTried: Buffer | undefined;
    const full = buildOnce(`full:${level}:${[...fullCodecs].sort().join('+')}:${latestHash}`, () => {
      const { codec, data, zstd } = compressFullBest(latestBytes, encoder, level, estimates.get(component.id), fullCodecs);
      zstdTried = zstd;
      return { targetPath: fullTarget(component.id, latest, codec), data, codec };
    });
    addTarget(full.name, full);
    // An xz full file comes with a zstd one that every earlier Bulwark decodes (the catalogue's `target`;
    // the xz one is its `compact`): the one compressed for the comparison when there was one, else a
    // quick one (COMPAT_LEVEL: older clients get a larger file rather than none).
    const compat =
      full.codec === 'zstd'
        ? undefined
        : buildOnce(`full-compat:${COMPAT_LEVEL}:${latestHash}`, () => ({
            targetPath: fullTarget(component.id, latest, 'zstd'),
            data: zstdTried ?? encoder.compressFull(latestBytes, COMPAT_LEVEL),
            codec: 'zstd',
          }));
    if (compat) addTarget(compat.name, compat);
    const entry: CatalogueComponent = {
      id: component.id,
      name: info.name,
      duplication: info.duplication,
      latest,
      full: compat
        ? { target: compat.name, length: latestBytes.length, sha256: latestHash, compact: { target: full.name, codec: full.codec } }
        : { target: full.name, length: latestBytes.length, sha256: latestHash, codec: full.codec },
      incrementals: [],
    };
    const summary: PublishedComponent = { id: component.id, latest, fullBytes: latestBytes.length, compressedBytes: full.length, codec: full.codec, incrementals: [], skipped: [] };
    for (const { from, key, length, created, estimated } of patches.get(component.id) ?? []) {
      const target = incrementalTarget(component.id, from, latest);
      if (length > full.length * INCREMENTAL_WORTH_RATIO) {
        summary.skipped.push({ from, bytes: length, ...(estimated ? { estimated } : {}) });
        if (created) {
          fs.rmSync(storedFile(target, state.built[key]!.sha256), { force: true });
          state.built[key] = { sha256: '', length, name: target }; // its length is remembered: not built again
        }
        continue;
      }
      // Built in an earlier run but its file went missing, measured then as not worth it, or only estimated: build it now.
      const built = buildOnce(key, () => {
        const result = buildIncremental(component, from, bases.read(path.join(component.dir, String(from))), { latest, bytes: latestBytes }, undefined, undefined);
        if ('estimated' in result) throw new Error('unreachable: no estimate without a limit');
        return result;
      });
      addTarget(target, built);
      entry.incrementals.push({ from, target, format: built.codec });
      summary.incrementals.push({ from, bytes: built.length, format: built.codec });
    }
    log(
      `${component.id} ${latest}: full ${latestBytes.length} B, compressed ${full.length} B (${full.codec}${compat ? `; ${compat.length} B in zstd for older clients` : ''})` +
        (info.duplication ? `, ${summary.incrementals.length} incremental(s)` : '') +
        (summary.skipped.length ? `, ${summary.skipped.length} not worth publishing` : ''),
    );
    catalogue.components.push(entry);
    published.push(summary);
  }
  addTarget(CATALOGUE_TARGET, store(CATALOGUE_TARGET, Buffer.from(JSON.stringify(catalogue, null, 1))));

  // Metadata, signed bottom-up: root (if new), targets, snapshot, then timestamp as the commit point.
  const { root, changed: rootChanged } = currentRoot(metadataDir, keys, expiryDays, now);
  const previousTimestamp = readJson<{ signed: { version: number } }>(path.join(metadataDir, 'timestamp.json'));
  const previousVersion = (role: 'targets' | 'snapshot') =>
    Math.max(0, ...fs.readdirSync(metadataDir).flatMap((n) => new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(n)?.[1] ?? []).map(Number));
  const versions = {
    root: root.signed.version,
    targets: previousVersion('targets') + 1,
    snapshot: previousVersion('snapshot') + 1,
    timestamp: (previousTimestamp?.signed.version ?? 0) + 1,
  };
  if (rootChanged) {
    const bytes = metadataBytes(root);
    writeFileAtomic(path.join(metadataDir, `${root.signed.version}.root.json`), bytes);
  }
  const targets = sign(new Targets({ version: versions.targets, specVersion: SPEC_VERSION, expires: expiry(now, expiryDays.targets), targets: targetFiles }), keys.targets);
  const targetsBytes = metadataBytes(targets);
  writeFileAtomic(path.join(metadataDir, `${versions.targets}.targets.json`), targetsBytes);
  const snapshot = sign(
    new Snapshot({
      version: versions.snapshot,
      specVersion: SPEC_VERSION,
      expires: expiry(now, expiryDays.snapshot),
      meta: { 'targets.json': new MetaFile({ version: versions.targets }) },
    }),
    keys.snapshot,
  );
  const snapshotBytes = metadataBytes(snapshot);
  writeFileAtomic(path.join(metadataDir, `${versions.snapshot}.snapshot.json`), snapshotBytes);
  const timestamp = sign(
    new Timestamp({
      version: versions.timestamp,
      specVersion: SPEC_VERSION,
      expires: expiry(now, expiryDays.timestamp),
      snapshotMeta: new MetaFile({ version: versions.snapshot, length: snapshotBytes.length, hashes: { sha256: sha256(snapshotBytes) } }),
    }),
    keys.timestamp,
  );
  writeFileAtomic(path.join(metadataDir, 'timestamp.json'), metadataBytes(timestamp));
  writeFileAtomic(path.join(options.out, 'root.json'), metadataBytes(root));

  retireOldFiles(options.out, state, referenced, versions, now);
  writeFileAtomic(stateFile, JSON.stringify(state, null, 1), 0o600);
  // Out of the published site (see publishStateFile), once it is safe beside the keys.
  fs.rmSync(path.join(options.out, 'publish-state.json'), { force: true });
  log(`published targets v${versions.targets}, snapshot v${versions.snapshot}, timestamp v${versions.timestamp} (root v${versions.root})`);
  return { versions, components: published };
}

/**
 * Files that left the metadata are deleted TARGET_RETENTION_DAYS after they were retired, so a client
 * that read the previous snapshot can finish its update. Root versions are never deleted.
 */
function retireOldFiles(
  out: string,
  state: PublishState,
  referenced: Set<string>,
  versions: { targets: number; snapshot: number },
  now: Date,
): void {
  const current = new Set(referenced);
  current.add(path.join('metadata', `${versions.targets}.targets.json`));
  current.add(path.join('metadata', `${versions.snapshot}.snapshot.json`));
  const candidates: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(out, rel), { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (!entry.name.startsWith('.')) candidates.push(child);
    }
  };
  walk('targets');
  for (const name of fs.readdirSync(path.join(out, 'metadata'))) {
    if (/^\d+\.(targets|snapshot)\.json$/.test(name)) candidates.push(path.join('metadata', name));
  }
  for (const file of candidates) {
    if (current.has(file)) {
      delete state.retired[file];
      continue;
    }
    const since = state.retired[file] ?? (state.retired[file] = now.toISOString());
    if (now.getTime() - new Date(since).getTime() >= TARGET_RETENTION_DAYS * DAY_MS) {
      fs.rmSync(path.join(out, file), { force: true });
      delete state.retired[file];
    }
  }
}
