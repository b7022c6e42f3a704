#!/usr/bin/env node
// The `bulwark` command: a thin launcher for the compiled CLI (built by `npm install` via "prepare").
import { main } from '../out/main/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
