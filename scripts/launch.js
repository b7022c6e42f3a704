#!/usr/bin/env node
// `npm start` / `npm run demo`: start the desktop app, or, where the Electron binary is not
// installed, the headless server with the browser console.
//
//   node scripts/launch.js [--demo]
//
// With Electron (node_modules/electron/path.txt names a file under node_modules/electron/dist that
// exists): runs `electron .` on the project (BULWARK_DEMO=1 with --demo) and exits with its code.
// Without it: says so in one line, then runs `node bin/bulwark.js demo --console` (--demo) or
// `node bin/bulwark.js serve --console --data <per-user data directory>`, exits with its code.
// Either way stdio is inherited and SIGINT/SIGTERM are passed on. The build is run first if the
// files the chosen mode needs are missing.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');

/** The Electron executable, if the electron package downloaded it (its install script writes path.txt). */
function electronBinary(root) {
  try {
    const relative = fs.readFileSync(path.join(root, 'node_modules', 'electron', 'path.txt'), 'utf8').trim();
    if (!relative) return undefined;
    const binary = path.join(root, 'node_modules', 'electron', 'dist', relative);
    return fs.statSync(binary).isFile() ? binary : undefined;
  } catch {
    return undefined;
  }
}

/** Per-user data directory for the headless server (XDG Base Directory; the platform's usual place elsewhere). */
function userDataDir(env = process.env) {
  if (process.platform === 'win32') return path.join(env.LOCALAPPDATA || path.join(os.homedir(), 'AppData', 'Local'), 'Bulwark');
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', 'Bulwark');
  const dataHome = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(os.homedir(), '.local', 'share');
  return path.join(dataHome, 'bulwark');
}

/** Build (npm run build) when a file the chosen mode runs is missing. */
function ensureBuilt(needed) {
  const missing = needed.filter((file) => !fs.existsSync(path.join(ROOT, file)));
  if (!missing.length) return;
  console.log(`Building first (missing ${missing.join(', ')})…`);
  const npmCli = process.env.npm_execpath;
  const result = npmCli
    ? spawnSync(process.execPath, [npmCli, 'run', 'build'], { cwd: ROOT, stdio: 'inherit' })
    : spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.status !== 0) {
    console.error('The build failed; see above.');
    process.exit(result.status ?? 1);
  }
}

/**
 * Run `command`, passing on SIGINT and SIGTERM, and exit with its code. On POSIX the child gets its
 * own process group, so a Ctrl+C in the terminal reaches it once, through us, rather than twice
 * (directly and forwarded; `npm run` forwards it once more): the second SIGINT would cut short the
 * server's clean stop. A repeat of a signal within a second is the same keypress arriving by two
 * paths and is not passed on; a later one is (press Ctrl+C again to insist).
 */
function run(command, args, env) {
  const child = spawn(command, args, { cwd: ROOT, stdio: 'inherit', env, detached: process.platform !== 'win32' });
  const lastForwarded = new Map();
  const forward = (signal) => {
    // Windows has no signals to pass on: the child shares our console and gets Ctrl+C from it, and
    // child.kill() there would terminate it outright, without its clean stop.
    if (process.platform === 'win32') return;
    const now = Date.now();
    if (now - (lastForwarded.get(signal) ?? -Infinity) < 1000) return;
    lastForwarded.set(signal, now);
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  // If this launcher goes first (an uncaught error), do not leave the child running on its own.
  const killChild = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  process.on('exit', killChild);
  child.on('error', (error) => {
    console.error(`Cannot start ${command}: ${error.message}`);
    process.off('exit', killChild);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    process.off('exit', killChild);
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    if (signal) {
      // Die the way the child did, so whoever started us sees the same.
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}

function main(argv) {
  const unknown = argv.filter((arg) => arg !== '--demo');
  if (unknown.length) {
    console.error(`usage: node scripts/launch.js [--demo]  (unknown: ${unknown.join(' ')})`);
    process.exit(2);
  }
  const demo = argv.includes('--demo');
  const electron = electronBinary(ROOT);

  if (electron) {
    ensureBuilt(['out/main/electron/main.js', 'out/preload/preload.cjs', 'out/renderer/index.html', 'out/assets']);
    const env = { ...process.env };
    if (demo) env.BULWARK_DEMO = '1';
    run(electron, ['.'], env);
    return;
  }

  console.log('The Electron binary is not installed here, so this starts the headless Bulwark server with the browser console instead.');
  ensureBuilt(['out/main/cli/main.js', 'out/renderer/index.html']);
  const bulwark = path.join(ROOT, 'bin', 'bulwark.js');
  const args = demo ? [bulwark, 'demo', '--console'] : [bulwark, 'serve', '--console', '--data', userDataDir()];
  run(process.execPath, args, process.env);
}

main(process.argv.slice(2));
