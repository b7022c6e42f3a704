// The npm package as a user gets it: `npm pack`, installed into a clean prefix with
// `npm install -g --prefix`, and the installed `bulwark` run from there (help, publish, update over
// HTTP from a source on 127.0.0.1, serve stopping on SIGTERM). Also: bin/bulwark.js run before any
// build says what to do in one line.
//
// The install compiles the native modules (sqlite3, zstd-napi) from source, as it does on any machine without
// their prebuilt binaries: this file takes minutes, not seconds. As root it installs as on a Debian machine
// without liblzma-dev (its headers, library and pkg-config file hidden in a private mount namespace): npm
// then leaves the optional node-liblzma out (under Node 20 it does so anyway: its engines say 22 or later),
// and xz full files go through the liblzma WebAssembly build Bulwark carries.
import { execFileSync } from 'node:child_process';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/**
 * `command args` as on a machine without liblzma-dev: lzma.h, liblzma.so/.a and liblzma.pc hidden by
 * overlay whiteouts in a private mount namespace (root only; undefined where that cannot be made).
 */
function withoutLiblzmaDev(command: string, args: string[]): [string, string[]] | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const hide = `set -e
W=$(mktemp -d)
hide() { d=$1; shift; mkdir -p "$W$d/upper" "$W$d/work"; for f in "$@"; do mkdir -p "$(dirname "$W$d/upper/$f")"; mknod "$W$d/upper/$f" c 0 0; done
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$W$d/upper,workdir=$W$d/work" "$d"; }
hide /usr/include lzma.h lzma
hide /usr/lib/$(gcc -dumpmachine) liblzma.a liblzma.so pkgconfig/liblzma.pc
exec "$@"`;
  const wrap = (cmd: string, cmdArgs: string[]): [string, string[]] => ['unshare', ['-m', '--propagation', 'private', 'sh', '-c', hide, 'sh', cmd, ...cmdArgs]];
  try {
    const [probe, probeArgs] = wrap('sh', ['-c', '! pkg-config --exists liblzma && ! test -e /usr/include/lzma.h']);
    execFileSync(probe, probeArgs, { stdio: 'ignore' });
    return wrap(command, args);
  } catch {
    return undefined;
  }
}

/** Run a command to completion without blocking this process (the update source is served from it). */
function run(command: string, args: string[], options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const child = spawn(command, args, { cwd: options.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...options.env } });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('bin/bulwark.js before a build', () => {
  it('says in one line what to run and exits 1, without a stack trace', async () => {
    // A checkout with no out/: the launcher alone, next to nothing.
    const checkout = scratch('bulwark-unbuilt-');
    fs.mkdirSync(path.join(checkout, 'bin'));
    fs.copyFileSync(path.join(ROOT, 'bin', 'bulwark.js'), path.join(checkout, 'bin', 'bulwark.js'));
    for (const args of [['--help'], ['status', '--data', checkout], ['serve', '--data', checkout]]) {
      const result = await run(process.execPath, [path.join(checkout, 'bin', 'bulwark.js'), ...args], { cwd: checkout });
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(`bulwark: not built yet — run npm install (or npm run build) in ${checkout}\n`);
    }
  });
});

describe('the npm package, installed into a clean prefix', () => {
  let prefix: string;
  let bulwark: string;
  let packed: string[];
  let withoutHeaders = false;

  beforeAll(async () => {
    ensureBuilt();
    if (!fs.existsSync(path.join(ROOT, 'out', 'renderer', 'index.html')) || !fs.existsSync(path.join(ROOT, 'out', 'assets'))) {
      throw new Error('out/ is incomplete: run `npm run build` first (npm test does)');
    }
    const work = scratch('bulwark-npm-');
    // --ignore-scripts: "prepare" would rebuild out/ under the other test files running now; the
    // build is checked above instead.
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { timeoutMs: 120_000 });
    expect(pack.code, pack.stderr).toBe(0);
    const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    packed = info!.files.map((f) => f.path);
    prefix = path.join(work, 'prefix');
    // JOBS=max: node-gyp compiles each native module's files in parallel.
    const npmInstall = ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', path.join(work, info!.filename)];
    const hidden = withoutLiblzmaDev('npm', npmInstall);
    withoutHeaders = hidden !== undefined;
    const install = await run(...(hidden ?? ['npm', npmInstall]), { timeoutMs: 20 * 60_000, env: { JOBS: 'max' } });
    expect(install.code, install.stdout + install.stderr).toBe(0);
    bulwark = path.join(prefix, 'bin', 'bulwark');
  }, 25 * 60_000);
  const installedRoot = () => path.join(prefix, 'lib', 'node_modules', 'bulwark');

  it('holds the built command line, console and systemd units, and no sources or tests', () => {
    for (const file of ['package.json', 'LICENSE', 'bin/bulwark.js', 'out/main/cli/main.js', 'out/renderer/index.html', 'out/assets/bulwark-server.service', 'out/assets/bulwark-agent.service']) {
      expect(packed).toContain(file);
    }
    // Our native modules as sources, built by the package's install script on the user's machine, never a binary of ours.
    expect(packed.filter((f) => f.startsWith('native/')).sort()).toEqual(['native/agent_front.c', 'native/binding.gyp', 'native/build.js', 'native/zstd_prefix.c']);
    // The licence package.json names, and the fields a deb (and npm's page) takes its maintainer and URL from.
    const installed = path.join(prefix, 'lib', 'node_modules', 'bulwark');
    const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as { license: string; author: { email?: string }; homepage: string; repository: { url: string } };
    expect(pkg.license).toBe('MIT');
    expect(fs.readFileSync(path.join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} Bulwark contributors\n/);
    expect(pkg.author.email).toMatch(/^\S+@\S+$/);
    expect(pkg.homepage).toMatch(/^https:\/\//);
    expect(pkg.repository.url).toMatch(/^git\+https:\/\//);
    expect(packed.filter((f) => /^(src-main|src-renderer|test|scripts|node_modules)\//.test(f))).toEqual([]);
    // Installed with its production dependencies, native modules compiled for this machine.
    const modules = path.join(prefix, 'lib', 'node_modules', 'bulwark', 'node_modules');
    expect(fs.existsSync(path.join(modules, 'zstd-napi', 'build', 'Release', 'binding.node'))).toBe(true);
    expect(fs.existsSync(path.join(modules, 'sqlite3', 'build', 'Release', 'node_sqlite3.node'))).toBe(true);
    expect(fs.existsSync(path.join(installedRoot(), 'native', 'build', 'Release', 'zstd_prefix.node'))).toBe(true);
    expect(fs.existsSync(path.join(installedRoot(), 'native', 'build', 'Release', 'agent_front.node'))).toBe(true);
    // node-liblzma is optional: left out where its build failed (without liblzma-dev) or under Node 20.
    if (withoutHeaders || Number(process.versions.node.split('.')[0]) < 22) expect(fs.existsSync(path.join(modules, 'node-liblzma'))).toBe(false);
    // What decodes xz then: liblzma's WebAssembly build, installed with Bulwark.
    expect(fs.statSync(path.join(installedRoot(), 'out', 'vendor', 'liblzma-wasm', 'liblzma.wasm')).size).toBeGreaterThan(50_000);
    for (const devTool of ['typescript', 'vite', 'vitest', 'svelte-check', '@playwright/test', 'electron', 'electron-builder']) {
      expect(fs.existsSync(path.join(modules, devTool)), devTool).toBe(false);
    }
  });

  // One line per command whose --help must work from the installed package.
  const helps: string[][] = [
    ['--help'],
    ['publish', '--help'],
    ['update', '--help'],
    ['serve', '--help'],
    ['agent', '--help'],
    ['agents', '--help'],
  ];

  it.each(helps.map((args) => [args.join(' '), args] as const))('bulwark %s exits 0 with its usage', async (_, args) => {
    const result = await run(bulwark, args);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(args.length === 1 ? /^Usage: bulwark <command>/m : new RegExp(`^bulwark ${args[0]}\\b`));
  });

  it('publishes a source, then updates from it over HTTP on 127.0.0.1, in full and then by incremental', async () => {
    const source = new TestSource(scratch('bulwark-npm-source-'));
    try {
      const first = source.addPattern('virus-pattern', { bytes: 60_000 });
      const publish = () => run(bulwark, ['publish', '--input', source.input, '--out', source.out, '--keys', source.keys, '--level', '3', '--json']);
      const published = await publish();
      expect(published.stderr).toBe('');
      expect(published.code).toBe(0);
      // The pattern's full file is smaller in xz: coded, and below decoded, by the build installed here.
      expect(fs.readdirSync(path.join(source.out, 'targets', 'virus-pattern')).filter((f) => f.endsWith(`.${first}.xz`))).toHaveLength(1);
      await source.start();

      const data = scratch('bulwark-npm-data-');
      const update = async () => {
        const result = await run(bulwark, ['update', '--data', data, '--source', source.url, '--trusted-root', source.rootFile, '--json']);
        expect(result.stderr).toBe('');
        expect(result.code).toBe(0);
        return JSON.parse(result.stdout) as { result: string; components: { id: string; version: number; method: string }[] };
      };
      const installed = async () => {
        const result = await run(bulwark, ['status', '--data', data, '--json']);
        expect(result.code).toBe(0);
        return (JSON.parse(result.stdout) as { components: { id: string; version: number; sha256: string }[] }).components;
      };
      const sha256 = (version: number) => crypto.createHash('sha256').update(fs.readFileSync(path.join(source.input, 'virus-pattern', String(version)))).digest('hex');

      const full = await update();
      expect(full.result).toBe('ok');
      expect(full.components).toEqual([expect.objectContaining({ id: 'virus-pattern', version: first, method: 'full' })]);
      expect(await installed()).toEqual([expect.objectContaining({ id: 'virus-pattern', version: first, sha256: sha256(first) })]);

      const next = source.addPattern('virus-pattern');
      // Its byte-level incremental is built with the installed native/zstd_prefix.node: nothing said on stderr.
      const second = await publish();
      expect(second.stderr).toBe('');
      expect(second.code).toBe(0);
      const incremental = await update();
      expect(incremental.result).toBe('ok');
      expect(incremental.components).toEqual([expect.objectContaining({ id: 'virus-pattern', version: next, method: 'incremental' })]);
      expect(await installed()).toEqual([expect.objectContaining({ id: 'virus-pattern', version: next, sha256: sha256(next) })]);
    } finally {
      await source.stop();
    }
  });

  it('serve runs and stops cleanly on SIGTERM (the units stop it with SIGTERM)', async () => {
    const data = scratch('bulwark-npm-serve-');
    const child = spawn(bulwark, ['serve', '--data', data], { cwd: data, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.resume();
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 30_000;
    while (!/Bulwark serving /.test(stdout)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start: ${stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(stdout).toMatch(/SIGTERM received/);
    expect(stdout).toMatch(/ stopped\n$/);
  });
});
