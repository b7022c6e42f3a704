// The server's releases for its agents. After each run that refreshed the signed metadata, the engine
// calls distribute(): it gathers what the server verified and switches the agents' view to it in one
// step. On disk, under DATA/distribution:
//
//   metadata/<N>.root.json            every root version the server verified (agents walk the chain)
//   metadata/<v>.snapshot.json        the upstream's snapshot and targets, byte for byte as verified
//   metadata/<v>.targets.json         (consistent snapshots: a version names one content)
//   targets/<dir>/<sha256>.<name>     signed targets the server downloaded and verified (relayed as is)
//   made/<id>/…                       files the server makes on request (made-files.ts)
//   release.json                      the current release: its timestamp, and the advisory index
//
// release.json is replaced atomically, and only after every file it refers to is in place, so agents
// see either the previous release or the new one, never a mix. The index is unsigned advice (which
// signed files the server holds, which versions it can make incrementals from); everything an agent
// installs is checked against the signed metadata.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { CATALOGUE_TARGET, parseCatalogue } from '../engine/catalogue.js';
import type { Distributor } from '../engine/engine.js';
import { sha256, writeFileAtomic } from '../engine/files.js';
import type { RunRecord } from '../engine/history.js';
import { INCREMENTAL_HISTORY } from '../engine/limits.js';
import type { UpdateSource } from '../engine/source.js';
import type { ComponentStore } from '../engine/store.js';
import type { IndexComponent, ReleaseIndex } from '../protocol/agent-protocol.js';
import { MadeFiles, type KeptVersion } from './made-files.js';

export interface Release {
  index: ReleaseIndex;
  /** The upstream's timestamp.json, byte for byte. */
  timestamp: Buffer;
  /** Relayed files (paths under targets/, hashed names) this release refers to, the catalogue included. */
  relayed: string[];
  /** What agents would install: a change of it is worth notifying them. */
  contentKey: string;
}

interface StoredRelease {
  index: ReleaseIndex;
  timestamp: string;
  relayed: string[];
  contentKey: string;
  /** The previous release's files stay servable for agents midway through an update. */
  previousRelayed?: string[];
  previousIndex?: ReleaseIndex;
}

export interface DistributionEvents {
  /** A new release is served; `news` when its content changed (not only fresher metadata). */
  release: [Release, { news: boolean }];
}

const METADATA_NAME = /^(?:\d{1,10}\.(?:root|snapshot|targets)\.json|timestamp\.json)$/;
/** Metadata versions kept besides the current ones: agents midway through an update still find theirs. */
const KEEP_METADATA_VERSIONS = 3;

export class Distribution extends EventEmitter<DistributionEvents> implements Distributor {
  readonly dir: string;
  readonly made: MadeFiles;
  private release: Release | undefined;
  private previous: Pick<Release, 'index' | 'relayed'> | undefined;
  /** SHA-256 of kept store files, by path and stat, so each is hashed once. */
  private readonly hashes = new Map<string, { key: string; sha256: string }>();

  constructor(
    dataDir: string,
    private readonly store: ComponentStore,
    private readonly log: (line: string) => void = () => {},
  ) {
    super();
    this.dir = path.join(dataDir, 'distribution');
    this.made = new MadeFiles(path.join(this.dir, 'made'), (id, sha) => this.kept(id, sha));
    this.load();
  }

  /** The release served now, if any. */
  current(): Release | undefined {
    return this.release;
  }

  /** The last release a server made in `dataDir`, read without checking its files (for read-only commands). */
  static readCurrent(dataDir: string): Release | undefined {
    try {
      const stored = JSON.parse(fs.readFileSync(path.join(dataDir, 'distribution', 'release.json'), 'utf8')) as StoredRelease;
      return { index: stored.index, timestamp: Buffer.from(stored.timestamp, 'utf8'), relayed: stored.relayed, contentKey: stored.contentKey };
    } catch {
      return undefined;
    }
  }

  /** The server's newest verified root (what an enrolling agent pins when it brings none). */
  newestRoot(): Buffer | undefined {
    const dir = path.join(this.dir, 'metadata');
    const versions = fs.existsSync(dir) ? fs.readdirSync(dir).flatMap((n) => /^(\d+)\.root\.json$/.exec(n)?.[1] ?? []).map(Number) : [];
    return versions.length ? fs.readFileSync(path.join(dir, `${Math.max(...versions)}.root.json`)) : undefined;
  }

  /** The file for GET /metadata/<name>, if the server has it (timestamp.json comes from the release). */
  metadataFile(name: string): string | undefined {
    if (!METADATA_NAME.test(name) || name === 'timestamp.json') return undefined;
    const file = path.join(this.dir, 'metadata', name);
    return fs.existsSync(file) ? file : undefined;
  }

  /** The file for GET /targets/<target>: a relayed signed target, by its hashed name. */
  targetFile(target: string): string | undefined {
    if (!/^(?:[a-z0-9][a-z0-9-]{0,63}\/)?[0-9a-f]{64}\.[A-Za-z0-9_.]{1,80}$/.test(target)) return undefined;
    const file = path.join(this.dir, 'targets', ...target.split('/'));
    return fs.existsSync(file) ? file : undefined;
  }

  /** Keep a signed target verified during a run, under its hashed name, for relaying. */
  keepVerifiedTarget(target: string, file: string): string {
    const data = fs.readFileSync(file);
    const relative = hashedTarget(target, sha256(data));
    const out = path.join(this.dir, 'targets', ...relative.split('/'));
    if (!fs.existsSync(out)) {
      fs.mkdirSync(path.dirname(out), { recursive: true });
      writeFileAtomic(out, data);
    }
    return relative;
  }

  /** Gather what the last run verified and switch the agents to it (see the file's comment). */
  async distribute(_run: RunRecord, source: UpdateSource): Promise<void> {
    const metadataDir = path.join(this.dir, 'metadata');
    fs.mkdirSync(metadataDir, { recursive: true });
    const verified = (name: string) => fs.readFileSync(path.join(source.metadataDir, name));
    const versionOf = (bytes: Buffer) => (JSON.parse(bytes.toString('utf8')) as { signed: { version: number } }).signed.version;
    const keep = (name: string, bytes: Buffer) => {
      const file = path.join(metadataDir, name);
      if (!fs.existsSync(file)) writeFileAtomic(file, bytes);
    };

    // TUF spec §5.3: every root from the one the server was given to the newest it verified.
    for (const bytes of [source.trustedRootBytes, ...source.newRoots.values(), verified('root.json')]) keep(`${versionOf(bytes)}.root.json`, bytes);
    const snapshot = verified('snapshot.json');
    const targets = verified('targets.json');
    const snapshotVersion = versionOf(snapshot);
    keep(`${snapshotVersion}.snapshot.json`, snapshot);
    keep(`${versionOf(targets)}.targets.json`, targets);
    const signedTargets = (JSON.parse(targets.toString('utf8')) as { signed: { targets: Record<string, { hashes: { sha256?: string } }> } }).signed.targets;
    const relayed = [this.keepVerifiedTarget(CATALOGUE_TARGET, source.catalogueFile)];
    const catalogue = parseCatalogue(fs.readFileSync(source.catalogueFile));

    const components: IndexComponent[] = [];
    for (const entry of catalogue.components) {
      const active = this.store.active(entry.id);
      if (!active) continue;
      // Hashed before agents are pointed at it (once per file: the hash is kept by size, time and inode).
      if (this.hashOf(active.path) !== active.sha256) {
        this.log(`distribution: ${entry.id} ${active.version} does not match its recorded SHA-256; not offered to agents until it is repaired`);
        continue;
      }
      /** A signed target of this release that the server holds (downloaded and verified, now or in an earlier run). */
      const held = (target: string) => {
        const hash = signedTargets[target]?.hashes.sha256;
        if (hash === undefined || this.targetFile(hashedTarget(target, hash)) === undefined) return false;
        relayed.push(hashedTarget(target, hash));
        return true;
      };
      components.push({
        id: entry.id,
        version: active.version,
        sha256: active.sha256,
        length: active.length,
        // Agents older than xz full files skip the compact one and take `target` or the server's own full file.
        signed: active.version === entry.latest ? [...(entry.full.compact ? [entry.full.compact.target] : []), entry.full.target, ...entry.incrementals.map((i) => i.target)].filter(held) : [],
        bases: this.store
          .versions(entry.id)
          .filter((v) => v < active.version)
          .slice(-INCREMENTAL_HISTORY)
          .map((version) => ({ version, sha256: this.hashOf(this.store.pathOf(entry.id, version)) })),
      });
    }

    const timestamp = verified('timestamp.json');
    const contentKey = sha256(Buffer.from(JSON.stringify([snapshotVersion, components.map((c) => [c.id, c.version, c.signed])])));
    const current = this.release;
    if (current && current.contentKey === contentKey && current.timestamp.equals(timestamp)) return;
    const index: ReleaseIndex = { release: (current?.index.release ?? 0) + 1, publishedAt: new Date().toISOString(), snapshotVersion, components };
    const stored: StoredRelease = {
      index,
      timestamp: timestamp.toString('utf8'),
      relayed,
      contentKey,
      ...(current ? { previousIndex: current.index, previousRelayed: current.relayed } : {}),
    };
    // The switch: one atomic rename, after every file the release refers to is in place.
    writeFileAtomic(path.join(this.dir, 'release.json'), JSON.stringify(stored));
    this.previous = current ? { index: current.index, relayed: current.relayed } : undefined;
    this.release = { index, timestamp, relayed, contentKey };
    const news = current?.contentKey !== contentKey;
    if (news) this.log(`distribution: release ${index.release} (snapshot ${snapshotVersion}): ${components.map((c) => `${c.id} ${c.version}`).join(', ')}`);
    this.emit('release', this.release, { news });
    this.prune(snapshotVersion);
  }

  /** A kept version, by content, if the current release serves it (the latest or a base). */
  kept(id: string, sha: string): KeptVersion | undefined {
    const component = this.release?.index.components.find((c) => c.id === id);
    if (!component) return undefined;
    const latest = component.sha256 === sha;
    const version = latest ? component.version : component.bases.find((b) => b.sha256 === sha)?.version;
    return version === undefined ? undefined : { id, version, sha256: sha, file: this.store.pathOf(id, version), latest, passed: this.passedVersions()[id] === version };
  }

  /** The versions of the last release that passed the server's rollout (held agents take them); the server sets it. */
  passedVersions: () => Record<string, number> = () => ({});

  private hashOf(file: string): string {
    const stat = fs.statSync(file);
    const key = `${stat.size}:${stat.mtimeMs}:${stat.ino}`;
    const cached = this.hashes.get(file);
    if (cached?.key === key) return cached.sha256;
    const hash = sha256(fs.readFileSync(file));
    this.hashes.set(file, { key, sha256: hash });
    return hash;
  }

  /** Serve the release of the last run at once after a restart, if its files are all still there. */
  private load(): void {
    let stored: StoredRelease;
    try {
      stored = JSON.parse(fs.readFileSync(path.join(this.dir, 'release.json'), 'utf8')) as StoredRelease;
    } catch {
      return; // none yet, or damaged: the start-up update makes a new one
    }
    // Serve only what is still verified: a relayed file whose content no longer matches its hashed
    // name is dropped (the next update downloads it again, or agents take another way).
    const intact = (relative: string) => {
      const file = this.targetFile(relative);
      return file !== undefined && sha256(fs.readFileSync(file)) === path.posix.basename(relative).slice(0, 64);
    };
    const relayed = stored.relayed.filter(intact);
    const kept = new Set(relayed.map(unhashedTarget));
    for (const component of stored.index.components) component.signed = component.signed.filter((t) => kept.has(t));
    this.release = { index: stored.index, timestamp: Buffer.from(stored.timestamp, 'utf8'), relayed, contentKey: stored.contentKey };
    if (stored.previousIndex && stored.previousRelayed) this.previous = { index: stored.previousIndex, relayed: stored.previousRelayed };
  }

  /** Drop metadata, relayed targets and made files that neither this release nor the previous one uses. */
  private prune(snapshotVersion: number): void {
    const metadataDir = path.join(this.dir, 'metadata');
    for (const name of fs.readdirSync(metadataDir)) {
      const match = /^(\d+)\.(snapshot|targets)\.json$/.exec(name);
      if (match && Number(match[1]) < snapshotVersion - KEEP_METADATA_VERSIONS) fs.rmSync(path.join(metadataDir, name), { force: true });
    }
    const releases = [this.release!, ...(this.previous ? [this.previous] : [])];
    const wanted = new Set(releases.flatMap((r) => r.relayed));
    const targetsDir = path.join(this.dir, 'targets');
    // A file kept during a run that is not yet in a release (the run failed later) is left for an hour.
    const walk = (dir: string, relative: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        const name = relative ? `${relative}/${entry.name}` : entry.name;
        if (entry.isDirectory()) walk(file, name);
        else if (!wanted.has(name) && Date.now() - fs.statSync(file).mtimeMs > 3_600_000) fs.rmSync(file, { force: true });
      }
    };
    if (fs.existsSync(targetsDir)) walk(targetsDir, '');
    // Made files lead to the releases served, and to the last release that passed the rollout.
    const passed = this.passedVersions();
    const passedShas = releases.flatMap((r) => r.index.components.flatMap((c) => [c, ...c.bases].filter((v) => v.version === passed[c.id]).map((v) => v.sha256)));
    this.made.prune(new Set([...releases.flatMap((r) => r.index.components.map((c) => c.sha256)), ...passedShas]));
  }
}

/** A target's file name under consistent snapshots: <dir>/<sha256>.<name> (TUF spec §5.7.3). */
export function hashedTarget(target: string, hash: string): string {
  const dir = path.posix.dirname(target);
  return `${dir === '.' ? '' : `${dir}/`}${hash}.${path.posix.basename(target)}`;
}

/** The target path of a hashed file name: virus-pattern/<sha256>.175.zst → virus-pattern/175.zst. */
export function unhashedTarget(relative: string): string {
  const dir = path.posix.dirname(relative);
  return `${dir === '.' ? '' : `${dir}/`}${path.posix.basename(relative).slice(65)}`;
}
