// Benchmark inputs, cached under .bench/ (git-ignored) so reruns do not regenerate or re-download them:
//   .bench/synthetic/<name>/<version>   PatternSeries versions (deterministic from the seed)
//   .bench/npm/*.tgz                    `npm pack` tarballs
//   .bench/real/<pkg>/<version>         the big file extracted from each tarball
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PatternSeries } from '../out/main/demo/patterns.js';
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
