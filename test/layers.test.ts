// The source's layers: no import (static, type-only or dynamic) runs from a lower layer up to a
// higher one, and the agent and the server's distribution never import each other: what they share
// is the protocol (src-main/protocol), the contract at the bottom.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

/** Lowest first; directories on one line are siblings, which must not import each other. */
const LAYERS: string[][] = [['protocol'], ['engine'], ['publisher', 'distribution', 'agent'], ['console'], ['server'], ['demo'], ['cli', 'electron']];
const SRC = path.join(ROOT, 'src-main');

function rank(dir: string): number {
  const found = LAYERS.findIndex((layer) => layer.includes(dir));
  if (found < 0) throw new Error(`src-main/${dir} has no layer: add it to LAYERS in test/layers.test.ts`);
  return found;
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    return entry.isDirectory() ? sources(file) : /\.c?ts$/.test(entry.name) ? [file] : [];
  });
}

/** Every module a file imports, relative to src-main: "engine/errors.js". */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"](\.[^'"]+)['"]/g)].map((m) => m[1]!);
  return specifiers.map((s) => path.relative(SRC, path.resolve(path.dirname(file), s))).filter((s) => !s.startsWith('..'));
}

describe('layers', () => {
  it('no import runs upward or between siblings', () => {
    const wrong: string[] = [];
    for (const file of sources(SRC)) {
      const from = path.relative(SRC, file).split(path.sep)[0]!;
      for (const target of importsOf(file)) {
        const to = target.split(path.sep)[0]!;
        if (to === from) continue;
        if (rank(to) >= rank(from)) wrong.push(`${path.relative(SRC, file)} imports ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('the protocol imports nothing of Bulwark', () => {
    for (const file of sources(path.join(SRC, 'protocol'))) expect(importsOf(file), path.relative(SRC, file)).toEqual([]);
  });
});
