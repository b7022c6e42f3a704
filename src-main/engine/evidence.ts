// The vendor's word for each installed version, kept with it. A rollback is the one time Bulwark
// installs a lower version, so it must rest on the vendor's signature rather than on the store's own
// records: with each version installed, the signed targets metadata and the catalogue that listed its
// hash are kept, and a rollback re-verifies them (signatures by the trusted root's targets keys; the
// catalogue's hash in that metadata; the file's hash in that catalogue). Freshness is not asked of
// them: they vouch for content, not for being current.
//
//   DATA/evidence/<sha256>.targets.json     signed targets metadata, byte for byte as verified
//   DATA/evidence/<sha256>.catalogue.json   the catalogue it listed
//   DATA/store/<id>/<version>.evidence.json which of them vouched for that version, and the source's
//                                           metadata cache whose newest verified root checks them
import fs from 'node:fs';
import path from 'node:path';
import { Metadata, MetadataKind, type Root, type Targets } from '@tufjs/models';
import { CATALOGUE_TARGET, parseCatalogue } from './catalogue.js';
import { MetadataError, VerificationError } from './errors.js';
import { sha256, writeFileAtomic } from './files.js';
import type { InstallMethod } from './store.js';

/** Versions per component whose evidence is kept (longer than their files: a pruned version can be fetched again). */
export const KEEP_EVIDENCE = 50;

interface Pointer {
  targets: string;
  catalogue: string;
  /** The source's metadata cache (under DATA/tuf): its root.json is the newest root verified for it. */
  source: string;
  /** How the version arrived (it arrived the same way when it is re-activated by a rollback). */
  method?: InstallMethod;
}

export class Evidence {
  readonly dir: string;

  constructor(
    private readonly dataDir: string,
    private readonly storeDir = path.join(dataDir, 'store'),
  ) {
    this.dir = path.join(dataDir, 'evidence');
  }

  private pointerFile(id: string, version: number): string {
    return path.join(this.storeDir, id, `${version}.evidence.json`);
  }

  /** Keep the signed metadata and catalogue that vouched for `id` `version` (as just verified from the source cached in `metadataDir`). */
  keep(id: string, version: number, signed: { targets: Buffer; catalogue: Buffer; metadataDir: string }, method?: InstallMethod): void {
    fs.mkdirSync(this.dir, { recursive: true });
    const names = { targets: `${sha256(signed.targets)}.targets.json`, catalogue: `${sha256(signed.catalogue)}.catalogue.json` };
    for (const [kind, name] of Object.entries(names) as ['targets' | 'catalogue', string][]) {
      const file = path.join(this.dir, name);
      if (!fs.existsSync(file)) writeFileAtomic(file, signed[kind]);
    }
    const pointer: Pointer = { ...names, source: path.basename(signed.metadataDir), ...(method ? { method } : {}) };
    writeFileAtomic(this.pointerFile(id, version), JSON.stringify(pointer) + '\n');
    this.prune(id, version);
  }

  /** How a version arrived, as recorded when it was installed. */
  method(id: string, version: number): InstallMethod | undefined {
    try {
      return (JSON.parse(fs.readFileSync(this.pointerFile(id, version), 'utf8')) as Pointer).method;
    } catch {
      return undefined;
    }
  }

  has(id: string, version: number): boolean {
    return this.read(id, version) !== undefined;
  }

  /** The evidence kept for a version, with the root that checks it. */
  read(id: string, version: number): { targets: Buffer; catalogue: Buffer; root: Buffer } | undefined {
    try {
      const pointer = JSON.parse(fs.readFileSync(this.pointerFile(id, version), 'utf8')) as Pointer;
      return {
        targets: fs.readFileSync(path.join(this.dir, path.basename(pointer.targets))),
        catalogue: fs.readFileSync(path.join(this.dir, path.basename(pointer.catalogue))),
        root: fs.readFileSync(path.join(this.dataDir, 'tuf', path.basename(pointer.source), 'root.json')),
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Check that the vendor vouched for `id` `version` with content `fileSha256`: its targets metadata
   * signed by the trusted root's targets keys (TUF spec §5.6.3), the catalogue matching the hash that
   * metadata gives it (§5.7.3), and the catalogue giving this version this hash. Throws why not.
   */
  verify(id: string, version: number, fileSha256: string, held = this.read(id, version)): void {
    if (!held) throw new VerificationError(`no signed metadata is kept for ${id} ${version}: a rollback to it cannot be verified`);
    const trustedRoot = held.root;
    let root: Metadata<Root>;
    let targets: Metadata<Targets>;
    try {
      root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(trustedRoot.toString('utf8')));
      targets = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(held.targets.toString('utf8')));
      root.verifyDelegate('targets', targets);
    } catch (cause) {
      throw new MetadataError(`the signed metadata kept for ${id} ${version} does not verify against the trusted root`, { cause });
    }
    const catalogueInfo = targets.signed.targets[CATALOGUE_TARGET];
    if (!catalogueInfo || catalogueInfo.length !== held.catalogue.length || catalogueInfo.hashes.sha256 !== sha256(held.catalogue)) {
      throw new VerificationError(`the catalogue kept for ${id} ${version} is not the one its signed metadata lists`);
    }
    const entry = parseCatalogue(held.catalogue).components.find((c) => c.id === id);
    if (!entry || entry.latest !== version || entry.full.sha256 !== fileSha256) {
      throw new VerificationError(`the vendor's catalogue does not vouch for ${id} ${version} with this content`);
    }
  }

  /** Keep the pointers of the newest KEEP_EVIDENCE versions of `id`, and the files still pointed at. */
  private prune(id: string, newest: number): void {
    const dir = path.join(this.storeDir, id);
    const versions = fs
      .readdirSync(dir)
      .flatMap((n) => /^(\d+)\.evidence\.json$/.exec(n)?.[1] ?? [])
      .map(Number)
      .sort((a, b) => b - a);
    const dropped = versions.filter((v) => v !== newest).slice(KEEP_EVIDENCE - 1);
    for (const version of dropped) fs.rmSync(this.pointerFile(id, version), { force: true });
    // Shared files lose their last pointer only when a pointer goes.
    if (!dropped.length) return;
    const pointed = new Set<string>();
    for (const component of fs.readdirSync(this.storeDir)) {
      const componentDir = path.join(this.storeDir, component);
      if (!fs.statSync(componentDir).isDirectory()) continue;
      for (const name of fs.readdirSync(componentDir).filter((n) => n.endsWith('.evidence.json'))) {
        try {
          const pointer = JSON.parse(fs.readFileSync(path.join(componentDir, name), 'utf8')) as Pointer;
          pointed.add(pointer.targets).add(pointer.catalogue);
        } catch {
          // a damaged pointer: its version simply has no evidence
        }
      }
    }
    for (const name of fs.readdirSync(this.dir)) if (!pointed.has(name)) fs.rmSync(path.join(this.dir, name), { force: true });
  }
}
