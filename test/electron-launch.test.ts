// scripts/launch.js (`npm start`, `npm run demo`): with the Electron binary it runs `electron .`,
// without it the headless server with the browser console; stdio inherited, signals passed on once,
// the child's exit code returned. Run in a copy of the project layout with stand-ins for Electron and
// bin/bulwark.js, and once for real (the headless server) in this checkout.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const LAUNCHER = path.join(ROOT, 'scripts', 'launch.js');
const posix = process.platform !== 'win32';

/** A stand-in for `bin/bulwark.js` or the Electron executable: records how it was run and what signals it got. */
const STAND_IN = `
const fs = require('node:fs');
// Written beside and renamed, so a test that sees the file never reads it half written.
fs.writeFileSync(process.env.RECORD + '.part', JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd(), demo: process.env.BULWARK_DEMO ?? null }));
fs.renameSync(process.env.RECORD + '.part', process.env.RECORD);
if (process.env.EXIT_NOW) process.exit(Number(process.env.EXIT_NOW));
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    fs.appendFileSync(process.env.SIGNALS, signal + '\\n');
    setTimeout(() => process.exit(Number(process.env.EXIT_CODE ?? 0)), 300);
  });
}
console.log('stand-in ready');
setInterval(() => {}, 1000);
`;

const tempDirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A project layout with the launcher, a built out/, a stand-in bin/bulwark.js and, optionally, a stand-in Electron. */
function fakeProject(options: { electron?: boolean } = {}): string {
  const root = tempDir('bulwark-launch-');
  const write = (file: string, text: string, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text, { mode });
  };
  write('scripts/launch.js', fs.readFileSync(LAUNCHER, 'utf8'));
  write('package.json', JSON.stringify({ name: 'bulwark', type: 'module' }));
  write('bin/bulwark.js', STAND_IN);
  // The stand-ins are CommonJS; keep the project's "type": "module" away from them.
  write('bin/package.json', JSON.stringify({ type: 'commonjs' }));
  for (const file of ['out/main/cli/main.js', 'out/main/electron/main.js', 'out/preload/preload.cjs', 'out/renderer/index.html', 'out/assets/icon.png']) write(file, '');
  if (options.electron) {
    write('node_modules/electron/path.txt', 'electron');
    write('node_modules/electron/dist/electron', `#!${process.execPath}\n${STAND_IN}`, 0o755);
    write('node_modules/electron/dist/package.json', JSON.stringify({ type: 'commonjs' }));
  }
  return root;
}

interface Launched {
  child: ChildProcess;
  stdout: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  record: string;
  signals: string;
}

function launch(root: string, args: string[], env: Record<string, string> = {}): Launched {
  const record = path.join(root, 'record.json');
  const signals = path.join(root, 'signals.txt');
  const child = spawn(process.execPath, [path.join(root, 'scripts', 'launch.js'), ...args], {
    cwd: root,
    env: { ...process.env, RECORD: record, SIGNALS: signals, XDG_DATA_HOME: path.join(root, 'xdg-data'), npm_execpath: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, exit, record, signals };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const recorded = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as { argv: string[]; cwd: string; demo: string | null };

describe('launcher without the Electron binary', () => {
  it('says so in one line, then serves with the browser console on the per-user data directory', async () => {
    const root = fakeProject();
    const run = launch(root, []);
    await waitFor(() => run.stdout().includes('stand-in ready'), 'the server to start');

    const lines = run.stdout().trim().split('\n');
    expect(lines).toEqual([
      'The Electron binary is not installed here, so this starts the headless Bulwark server with the browser console instead.',
      'stand-in ready',
    ]);
    expect(recorded(run.record)).toEqual({
      argv: ['serve', '--console', '--data', path.join(root, 'xdg-data', 'bulwark')],
      cwd: fs.realpathSync(root),
      demo: null,
    });
    run.child.kill('SIGTERM');
    expect(await run.exit).toEqual({ code: 0, signal: null });
  });

  it('falls back to ~/.local/share/bulwark when XDG_DATA_HOME is not an absolute path', async () => {
    const root = fakeProject();
    const home = tempDir('bulwark-home-');
    const run = launch(root, [], { XDG_DATA_HOME: 'relative', HOME: home });
    await waitFor(() => fs.existsSync(run.record), 'the server to start');
    expect(recorded(run.record).argv).toEqual(['serve', '--console', '--data', path.join(home, '.local', 'share', 'bulwark')]);
    run.child.kill('SIGTERM');
    await run.exit;
  });

  it('--demo runs `bulwark demo --console`', async () => {
    const root = fakeProject();
    const run = launch(root, ['--demo']);
    await waitFor(() => fs.existsSync(run.record), 'the demo to start');
    expect(recorded(run.record).argv).toEqual(['demo', '--console']);
    run.child.kill('SIGINT');
    expect(await run.exit).toEqual({ code: 0, signal: null });
  });

  it.skipIf(!posix)('passes a signal on once, even when it arrives twice (terminal and npm), and returns the exit code', async () => {
    const root = fakeProject();
    const run = launch(root, [], { EXIT_CODE: '3' });
    await waitFor(() => run.stdout().includes('stand-in ready'), 'the server to start');

    run.child.kill('SIGINT');
    run.child.kill('SIGINT');

    expect(await run.exit).toEqual({ code: 3, signal: null });
    expect(fs.readFileSync(run.signals, 'utf8')).toBe('SIGINT\n');
  });

  it('returns the exit code of a server that stops by itself', async () => {
    const root = fakeProject();
    const run = launch(root, [], { EXIT_NOW: '5' });
    expect(await run.exit).toEqual({ code: 5, signal: null });
  });

  it('refuses unknown arguments', async () => {
    const run = launch(fakeProject(), ['--nope']);
    expect(await run.exit).toEqual({ code: 2, signal: null });
    expect(run.stdout()).toMatch(/usage: node scripts\/launch\.js \[--demo\]/);
  });
});

describe.skipIf(!posix)('launcher with the Electron binary', () => {
  it('runs `electron .` on the project and returns its exit code', async () => {
    const root = fakeProject({ electron: true });
    const run = launch(root, [], { EXIT_NOW: '7' });
    expect(await run.exit).toEqual({ code: 7, signal: null });
    expect(recorded(run.record)).toEqual({ argv: ['.'], cwd: fs.realpathSync(root), demo: null });
    expect(run.stdout()).not.toMatch(/not installed/);
  });

  it('--demo sets BULWARK_DEMO=1, and signals reach Electron', async () => {
    const root = fakeProject({ electron: true });
    const run = launch(root, ['--demo']);
    await waitFor(() => run.stdout().includes('stand-in ready'), 'Electron to start');
    expect(recorded(run.record)).toMatchObject({ argv: ['.'], demo: '1' });
    run.child.kill('SIGTERM');
    expect(await run.exit).toEqual({ code: 0, signal: null });
    expect(fs.readFileSync(run.signals, 'utf8')).toBe('SIGTERM\n');
  });
});

const electronInstalled = (() => {
  try {
    const relative = fs.readFileSync(path.join(ROOT, 'node_modules', 'electron', 'path.txt'), 'utf8').trim();
    return relative !== '' && fs.existsSync(path.join(ROOT, 'node_modules', 'electron', 'dist', relative));
  } catch {
    return false;
  }
})();

describe.skipIf(electronInstalled || !posix)('launcher in this checkout (no Electron binary here)', () => {
  it('`npm start` brings up the real headless server with its console, and stops it cleanly', async () => {
    const dataHome = tempDir('bulwark-launch-data-');
    const child = spawn(process.execPath, [LAUNCHER], {
      cwd: ROOT,
      env: { ...process.env, XDG_DATA_HOME: dataHome, npm_execpath: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

    await waitFor(() => /Console: http:\/\/127\.0\.0\.1:\d+\//.test(out), 'the console URL', 120_000);
    expect(out.split('\n')[0]).toBe('The Electron binary is not installed here, so this starts the headless Bulwark server with the browser console instead.');
    expect(fs.existsSync(path.join(dataHome, 'bulwark', 'bulwark.lock'))).toBe(true);

    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(out).toMatch(/stopped/);
    expect(fs.existsSync(path.join(dataHome, 'bulwark', 'bulwark.lock'))).toBe(false);
  }, 150_000);
});
