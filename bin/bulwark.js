#!/usr/bin/env node
// The `bulwark` command: a thin launcher for the compiled CLI (built by `npm install` via "prepare").
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../out/main/cli/main.js', import.meta.url);

// A checkout where nothing was built yet (or `out/` was cleaned): say what to do in one line rather
// than let the import below fail with a module-not-found stack trace.
if (!fs.existsSync(cli)) {
  const dir = fileURLToPath(new URL('..', import.meta.url)).replace(/[\\/]$/, '');
  process.stderr.write(`bulwark: not built yet — run npm install (or npm run build) in ${dir}\n`);
  process.exit(1);
}

// A reader that went away (`bulwark status | head`) is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

const { main } = await import(cli.href);
process.exitCode = await main(process.argv.slice(2));
