// The publisher's signing keys (src-main/publisher/signing-keys.ts): made once per keys directory, even
// by publishes started at the same moment, which then sign with the same keys.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/fixtures.js';

const KEYS_MODULE = path.join(ROOT, 'out', 'main', 'publisher', 'signing-keys.js');
// Waits for the go file, then loads or makes the keys and prints each role's key id (or the error).
const CHILD = `
import fs from 'node:fs';
const [dir, go] = process.argv.slice(1);
const { loadOrCreateKeys } = await import(${JSON.stringify(KEYS_MODULE)});
while (!fs.existsSync(go)) {}
try {
  const keys = loadOrCreateKeys(dir);
  console.log(JSON.stringify(Object.fromEntries(Object.entries(keys).map(([role, key]) => [role, key.key.keyID]))));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message) + ' ' + String(error?.cause?.message ?? '') }));
}
`;

let scratch: string;
beforeAll(() => {
  ensureBuilt();
  scratch = tempDir('bulwark-keys-');
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function loadAt(dir: string, go: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, dir, go], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', () => resolve(out.trim()));
  });
}

describe('loadOrCreateKeys', () => {
  it('four publishes making one new keys directory at once all get the same, whole keys', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = path.join(scratch, `keys-${round}`);
      const go = path.join(scratch, `go-${round}`);
      const loads = Array.from({ length: 4 }, () => loadAt(dir, go));
      await new Promise((resolve) => setTimeout(resolve, 700)); // every child has loaded the module and waits
      fs.writeFileSync(go, '');
      const answers = await Promise.all(loads);
      for (const answer of answers) expect(answer).toBe(answers[0]);
      expect(Object.keys(JSON.parse(answers[0]!) as object).sort()).toEqual(['root', 'snapshot', 'targets', 'timestamp']);
      expect(fs.readdirSync(dir).sort()).toEqual(['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
    }
  });
});
