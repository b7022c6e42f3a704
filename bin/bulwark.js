#!/usr/bin/env node
// The `bulwark` command: a thin launcher for the compiled CLI (built by `npm install` via "prepare").
import { main } from '../out/main/cli/main.js';

// A reader that went away (`bulwark status | head`) is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
