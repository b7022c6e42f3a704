#!/usr/bin/env node
// Refresh vendor/liblzma-wasm/ from node-liblzma's npm package (see vendor/liblzma-wasm/README.md):
//   node scripts/vendor-liblzma-wasm.js 5.1.3
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const version = process.argv[2];
if (!version || !/^\d+\.\d+\.\d+$/.test(version)) {
  console.error('usage: node scripts/vendor-liblzma-wasm.js VERSION   (a node-liblzma release, e.g. 5.1.3)');
  process.exit(2);
}
const target = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'vendor', 'liblzma-wasm');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'liblzma-wasm-'));
try {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', `node-liblzma@${version}`, '--json', '--pack-destination', work], { encoding: 'utf8' }));
  execFileSync('tar', ['xzf', path.join(work, packed.filename), '-C', work, 'package/lib/wasm/liblzma.js', 'package/lib/wasm/liblzma.wasm']);
  for (const name of ['liblzma.js', 'liblzma.wasm']) {
    const data = fs.readFileSync(path.join(work, 'package', 'lib', 'wasm', name));
    fs.writeFileSync(path.join(target, name), data);
    console.log(`| ${name} | ${crypto.createHash('sha256').update(data).digest('hex')} |`);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
