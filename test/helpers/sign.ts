// Re-signing a published source's metadata, for tests that need content the publisher would never
// produce but that carries valid signatures all the same: a catalogue with hostile component ids,
// metadata that has expired, or metadata signed with keys the client does not trust. The new
// metadata and catalogue are written to a separate directory (same layout as the source: metadata/,
// targets/), to be served in front of the source; the published source itself is left as it is.
import fs from 'node:fs';
import path from 'node:path';
import { Metadata, MetadataKind, MetaFile, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { CATALOGUE_TARGET } from '../../src-main/engine/catalogue.js';
import { sha256 } from '../../src-main/engine/files.js';
import { loadOrCreateKeys } from '../../src-main/publisher/signing-keys.js';

type Role = 'targets' | 'snapshot' | 'timestamp';
type Json = Parameters<typeof Metadata.fromJSON>[1];

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Json;

/** What a source currently publishes, followed from its timestamp: versions and the catalogue's bytes. */
export function readPublished(out: string): { timestamp: number; snapshot: number; targets: number; catalogue: Buffer } {
  const metadata = path.join(out, 'metadata');
  const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, readJson(path.join(metadata, 'timestamp.json')));
  const snapshotVersion = timestamp.signed.snapshotMeta.version;
  const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, readJson(path.join(metadata, `${snapshotVersion}.snapshot.json`)));
  const targetsVersion = snapshot.signed.meta['targets.json']!.version;
  const targets = Metadata.fromJSON(MetadataKind.Targets, readJson(path.join(metadata, `${targetsVersion}.targets.json`)));
  const hash = targets.signed.targets[CATALOGUE_TARGET]!.hashes.sha256!;
  return {
    timestamp: timestamp.signed.version,
    snapshot: snapshotVersion,
    targets: targetsVersion,
    catalogue: fs.readFileSync(path.join(out, 'targets', `${hash}.${CATALOGUE_TARGET}`)),
  };
}

export interface ResignOptions {
  /** The published source (read only). */
  out: string;
  /** The key directory to sign with: the source's own, or another (created with fresh keys if missing). */
  keys: string;
  /** Where the new metadata and catalogue are written (metadata/, targets/). */
  into: string;
  /** A new catalogue: its bytes, or an object serialized as JSON. The published one by default. */
  catalogue?: Buffer | object;
  /** Expiry per role; a week ahead by default. A date in the past makes expired metadata. */
  expires?: Partial<Record<Role, Date>>;
  /** How far each role's version goes above the published one (default 10: newer than anything a client saw). */
  bump?: number;
}

function expiry(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function bytesOf(metadata: Metadata<Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(metadata.toJSON()));
}

/**
 * Sign new targets, snapshot and timestamp metadata for `out` (consistent snapshots, as the
 * publisher writes them), listing `catalogue` in place of the published one. Returns the new
 * timestamp's bytes and the catalogue's target file name.
 */
export function resign(options: ResignOptions): { timestamp: Buffer; catalogueFile: string; catalogue: Buffer } {
  const published = readPublished(options.out);
  const keys = loadOrCreateKeys(options.keys);
  const bump = options.bump ?? 10;
  const weekAhead = new Date(Date.now() + 7 * 86_400_000);
  const expires = (role: Role) => expiry(options.expires?.[role] ?? weekAhead);
  const catalogue = options.catalogue === undefined ? published.catalogue : Buffer.isBuffer(options.catalogue) ? options.catalogue : Buffer.from(JSON.stringify(options.catalogue));
  const catalogueHash = sha256(catalogue);

  const metadataDir = path.join(options.into, 'metadata');
  const targetsDir = path.join(options.into, 'targets');
  fs.mkdirSync(metadataDir, { recursive: true });
  fs.mkdirSync(targetsDir, { recursive: true });
  const catalogueFile = path.join(targetsDir, `${catalogueHash}.${CATALOGUE_TARGET}`);
  fs.writeFileSync(catalogueFile, catalogue);

  const old = Metadata.fromJSON(MetadataKind.Targets, readJson(path.join(options.out, 'metadata', `${published.targets}.targets.json`)));
  const files: Record<string, TargetFile> = { ...old.signed.targets };
  files[CATALOGUE_TARGET] = new TargetFile({ path: CATALOGUE_TARGET, length: catalogue.length, hashes: { sha256: catalogueHash } });
  const versions = { targets: published.targets + bump, snapshot: published.snapshot + bump, timestamp: published.timestamp + bump };

  const targets = new Metadata(new Targets({ version: versions.targets, specVersion: old.signed.specVersion, expires: expires('targets'), targets: files }));
  targets.sign(keys.targets.sign);
  fs.writeFileSync(path.join(metadataDir, `${versions.targets}.targets.json`), bytesOf(targets));

  const snapshot = new Metadata(new Snapshot({ version: versions.snapshot, specVersion: old.signed.specVersion, expires: expires('snapshot'), meta: { 'targets.json': new MetaFile({ version: versions.targets }) } }));
  snapshot.sign(keys.snapshot.sign);
  const snapshotBytes = bytesOf(snapshot);
  fs.writeFileSync(path.join(metadataDir, `${versions.snapshot}.snapshot.json`), snapshotBytes);

  const timestamp = new Metadata(
    new Timestamp({
      version: versions.timestamp,
      specVersion: old.signed.specVersion,
      expires: expires('timestamp'),
      snapshotMeta: new MetaFile({ version: versions.snapshot, length: snapshotBytes.length, hashes: { sha256: sha256(snapshotBytes) } }),
    }),
  );
  timestamp.sign(keys.timestamp.sign);
  const timestampBytes = bytesOf(timestamp);
  fs.writeFileSync(path.join(metadataDir, 'timestamp.json'), timestampBytes);
  return { timestamp: timestampBytes, catalogueFile, catalogue };
}
