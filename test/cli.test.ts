import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readLockOwner } from '../src-main/engine/lock.js';
import { TURN_OFF, zstdPrefix } from '../src-main/engine/zstd-prefix.js';
import { CliProcess, ensureBuilt, killChildren, ROOT, runCli, type CliResult } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

const COMMANDS = ['publish', 'update', 'status', 'serve', 'settings', 'demo'];

beforeAll(() => {
  ensureBuilt();
}, 180_000);

afterEach(() => {
  killChildren();
});

const dirs: string[] = [];
function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A usage or work failure: exactly one line on stderr, starting with "bulwark", nothing on stdout. */
function expectOneLineError(result: CliResult, code: number, message: RegExp): void {
  expect(result.code).toBe(code);
  expect(result.stdout).toBe('');
  const lines = result.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^bulwark/);
  expect(lines[0]).toMatch(message);
}

describe('help and usage errors', () => {
  it('--help lists every command and exits 0', async () => {
    const results = await Promise.all([['--help'], ['-h'], ['help']].map((args) => runCli(args)));
    for (const result of results) {
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(/^Bulwark — security update server\n\nUsage: bulwark <command> \[options\]/);
      for (const command of COMMANDS) expect(result.stdout).toMatch(new RegExp(`^  ${command} +\\S`, 'm'));
    }
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${pkg.version}\n`);
  });

  for (const command of COMMANDS) {
    it(`${command} --help prints its usage and exits 0`, async () => {
      const results = await Promise.all([runCli([command, '--help']), runCli([command, '-h']), runCli(['help', command])]);
      for (const result of results) {
        expect(result.code).toBe(0);
        expect(result.stderr).toBe('');
        expect(result.stdout).toMatch(new RegExp(`^bulwark ${command}\\b`));
        expect(result.stdout).toMatch(/\n\s*Options:\n|\nKeys:\n/);
      }
      // --help wins over missing required flags
      expect(results[0]!.stdout).toBe(results[2]!.stdout);
    });
  }

  it('exits 2 with one line on stderr for an unknown command', async () => {
    const result = await runCli(['frobnicate', '--data', '/tmp/x']);
    expectOneLineError(result, 2, /^bulwark: unknown command "frobnicate" \(run bulwark --help for the list\)$/);
  });

  it('exits 2 with one line on stderr for an unknown flag', async () => {
    const data = scratch('bulwark-cli-flag-');
    const result = await runCli(['update', '--data', data, '--bogus']);
    expectOneLineError(result, 2, /^bulwark update: unknown option --bogus \(see bulwark update --help\)$/);
    expect(fs.existsSync(path.join(data, 'history.jsonl'))).toBe(false);

    const status = await runCli(['status', '--json=yes', '--data', data]);
    expectOneLineError(status, 2, /^bulwark status: /);
  });

  it('exits 2 when a required flag is missing or flags do not fit together', async () => {
    const data = scratch('bulwark-cli-usage-');
    const cases: [string[], RegExp][] = [
      [['update'], /^bulwark update: --data is required$/],
      [['update', '--json'], /^bulwark update: --data is required$/],
      [['status'], /^bulwark status: --data is required$/],
      [['serve'], /^bulwark serve: --data is required$/],
      [['publish', '--input', 'x'], /^bulwark publish: --out is required$/],
      [['update', '--data', data, '--source', 'http://127.0.0.1:1/'], /^bulwark update: --source and --trusted-root go together$/],
      [['status', '--data', path.join(data, 'missing')], /^bulwark status: data directory .*missing does not exist; create it with `bulwark init --data .*missing`/],
      [['demo', '--every', '5'], /^bulwark demo: --every must be a whole number of seconds from 10 to 3600$/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((result, i) => expectOneLineError(result, 2, cases[i]![1]));
    expect(fs.readdirSync(data)).toEqual([]);
  });
});

describe('publish', () => {
  it('exits 1 with a clear message for a file that is not a version, and writes nothing', async () => {
    const dir = scratch('bulwark-cli-publish-');
    const input = path.join(dir, 'input');
    fs.mkdirSync(path.join(input, 'virus-pattern'), { recursive: true });
    fs.writeFileSync(path.join(input, 'virus-pattern', '171'), 'pattern 171\n');
    fs.writeFileSync(path.join(input, 'virus-pattern', 'abc'), 'not a version\n');
    const out = path.join(dir, 'out');
    const keys = path.join(dir, 'keys');

    const result = await runCli(['publish', '--input', input, '--out', out, '--keys', keys, '--level', '3']);
    expectOneLineError(result, 1, /^bulwark publish: .*virus-pattern\/abc: file names must be integer versions \(e\.g\. 175\)$/);
    expect(fs.existsSync(path.join(out, 'metadata'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'root.json'))).toBe(false);
    expect(fs.existsSync(keys)).toBe(false);
  });

  it('publishes a valid input and prints JSON with --json', async () => {
    const dir = scratch('bulwark-cli-publish-ok-');
    const input = path.join(dir, 'input');
    fs.mkdirSync(path.join(input, 'scan-engine'), { recursive: true });
    fs.writeFileSync(path.join(input, 'scan-engine', '12'), crypto.randomBytes(2000));
    const out = path.join(dir, 'out');
    const result = await runCli(['publish', '--input', input, '--out', out, '--keys', path.join(dir, 'keys'), '--level', '3', '--json']);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { components: { id: string; latest: number }[] };
    expect(json.components.map((c) => [c.id, c.latest])).toEqual([['scan-engine', 12]]);
    expect(fs.existsSync(path.join(out, 'root.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'metadata', 'timestamp.json'))).toBe(true);
  });

  it('says in one line on stderr when it builds incrementals without native/zstd_prefix.node, and nothing when with it', async () => {
    const source = new TestSource(scratch('bulwark-cli-publish-prefix-'));
    source.addPattern('virus-pattern', { bytes: 30_000 });
    source.addPattern('virus-pattern');
    // Two publishes at once: each with its own output and keys.
    const publish = (out: string) => runCli(['publish', '--input', source.input, '--out', path.join(source.dir, out), '--keys', path.join(source.dir, `keys-${out}`), '--level', '3']);
    // The environment is copied when the child starts.
    process.env[TURN_OFF] = 'off';
    const without = publish('out-without');
    delete process.env[TURN_OFF];
    const [fallback, prefix] = await Promise.all([without, publish('out-with')]);
    expect(fallback.code).toBe(0);
    expect(fallback.stderr).toBe(`bulwark publish: byte-level incrementals are built through zstd-napi's loadDictionary, with the base's match tables held twice (turned off by ${TURN_OFF}=off)\n`);
    expect(fallback.stdout).toMatch(/virus-pattern \d+: .*1 incremental/);
    expect(prefix.code, prefix.stderr).toBe(0);
    // Built at npm install wherever a C compiler is (native/build.js), as in CI.
    if (!(zstdPrefix() instanceof Error) || process.env.CI) expect(prefix.stderr).toBe('');
  });
});

describe('settings', () => {
  it('refuses "every 7 minutes" with exit 2 and keeps the old schedule', async () => {
    const data = scratch('bulwark-cli-settings-');
    const set = await runCli(['settings', '--data', data, 'set', 'schedule', 'every 15 minutes']);
    expect(set.code).toBe(0);
    expect(set.stdout).toBe('schedule saved\n');

    const refused = await runCli(['settings', '--data', data, 'set', 'schedule', 'every 7 minutes']);
    expectOneLineError(refused, 2, /^bulwark settings: every 7 minutes is not offered; choose one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 minutes$/);

    const get = await runCli(['settings', '--data', data, 'get', 'schedule']);
    expect(get.code).toBe(0);
    expect(JSON.parse(get.stdout)).toEqual({ kind: 'interval', every: 15, unit: 'minutes' });

    const status = await runCli(['status', '--data', data, '--json']);
    expect((JSON.parse(status.stdout) as { schedule: string }).schedule).toBe('every 15 minutes');
  });

  it('refuses an unknown key and a bad source with exit 2', async () => {
    const data = scratch('bulwark-cli-settings-keys-');
    expectOneLineError(await runCli(['settings', '--data', data, 'set', 'colour', 'blue']), 2, /^bulwark settings: no setting named colour$/);
    expectOneLineError(await runCli(['settings', '--data', data, 'get', 'colour']), 2, /^bulwark settings: no setting named colour$/);
    expectOneLineError(
      await runCli(['settings', '--data', data, 'set', 'source', 'ftp://x', path.join(data, 'settings.json')]),
      2,
      /^bulwark settings: invalid source: the update source must be an http or https URL, not ftp:/,
    );
    const get = await runCli(['settings', '--data', data, 'get', 'source']);
    expect(JSON.parse(get.stdout)).toEqual({ url: '', trustedRoot: '' });
  });
});

describe('settings and flags named in their messages', () => {
  it('a junk proxy names the setting or the flag it came from', async () => {
    const data = scratch('bulwark-cli-proxy-junk-');
    expectOneLineError(await runCli(['settings', '--data', data, 'set', 'proxy', 'junk']), 2, /^bulwark settings: proxy "junk" must be HOST:PORT, e\.g\. proxy\.example\.com:3128 or \[2001:db8::1\]:3128$/);
    expectOneLineError(await runCli(['test-connection', '--data', data, '--proxy', 'junk']), 2, /^bulwark test-connection: --proxy "junk" must be HOST:PORT, e\.g\. proxy\.example\.com:3128 or \[2001:db8::1\]:3128$/);
    expectOneLineError(await runCli(['test-connection', '--data', data, '--proxy', 'proxy.example.com:0']), 2, /^bulwark test-connection: --proxy port must be from 1 to 65535$/);
    expectOneLineError(await runCli(['settings', '--data', data, 'set', 'proxy', 'proxy.example.com:0']), 2, /^bulwark settings: proxy port must be from 1 to 65535$/);
    const get = await runCli(['settings', '--data', data, 'get', 'proxy']);
    expect(JSON.parse(get.stdout)).toMatchObject({ enabled: false, host: '' });
  });

  it('settings get refuses names that only exist on the object prototype', async () => {
    const data = scratch('bulwark-cli-proto-');
    const keys = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'proxy.constructor', 'source.__proto__', 'schedule.toString'];
    const results = await Promise.all(keys.map((key) => runCli(['settings', '--data', data, 'get', key])));
    results.forEach((result, i) => expectOneLineError(result, 2, new RegExp(`^bulwark settings: no setting named ${keys[i]!.replace(/\./g, '\\.')}$`)));
    // Real nested keys still work.
    expect(JSON.parse((await runCli(['settings', '--data', data, 'get', 'proxy.port'])).stdout)).toBe(8080);
  });
});

describe('settings that cannot be written', () => {
  it('exits 1 with the OS reason when settings.json is a directory', async () => {
    const data = scratch('bulwark-cli-settings-dir-');
    fs.mkdirSync(path.join(data, 'settings.json'));
    const set = await runCli(['settings', '--data', data, 'set', 'schedule', 'every 15 minutes']);
    expectOneLineError(set, 1, /^bulwark settings: cannot read .*settings\.json: it is a directory, not a file \(EISDIR\)$/);
    expect(fs.statSync(path.join(data, 'settings.json')).isDirectory()).toBe(true);
  });

  describe('in a read-only data directory', () => {
    let data: string;
    let mounted = false;
    let cannotMount: string | undefined;

    beforeAll(() => {
      data = scratch('bulwark-cli-settings-ro-');
      if (process.getuid?.() !== 0) return;
      // root writes through file modes: only a read-only mount refuses it.
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', data], { stdio: 'pipe' });
        mounted = true;
      } catch (error) {
        cannotMount = `running as root, and cannot mount a tmpfs to make read-only: ${(error as Error).message.split('\n')[0]}`;
      }
    });

    afterAll(() => {
      if (mounted) execFileSync('umount', [data], { stdio: 'pipe' });
      else fs.chmodSync(data, 0o700);
    });

    it('settings set exits 1 with the OS reason, not as an invalid value, and keeps the file', async (ctx) => {
      if (cannotMount) return ctx.skip(cannotMount);
      // Saved once while writable, so opening it needs no write: the refusal comes from saving.
      const opened = await runCli(['settings', '--data', data, 'set', 'startAtLogin', 'false']);
      expect(opened.code).toBe(0);
      const before = fs.readFileSync(path.join(data, 'settings.json'));
      if (mounted) execFileSync('mount', ['-o', 'remount,ro', data], { stdio: 'pipe' });
      else fs.chmodSync(data, 0o500);

      const set = await runCli(['settings', '--data', data, 'set', 'schedule', 'every 15 minutes']);
      expectOneLineError(set, 1, mounted
        ? /^bulwark settings: cannot save schedule to .*settings\.json: it is on a file system mounted read-only \(EROFS\): remount that file system read-write/
        : /^bulwark settings: cannot save schedule to .*settings\.json: \S+ \(uid \d+\), the user running Bulwark, may not write it \(EACCES\)/);
      expect(fs.readFileSync(path.join(data, 'settings.json'))).toEqual(before);
    });
  });
});

describe('read-only commands never write settings.json', () => {
  /** settings.json with a valid source and a schedule written in words. */
  function invalidSchedule(data: string): { file: string; bytes: Buffer; mtimeMs: number } {
    const root = path.join(data, 'root.json');
    fs.writeFileSync(root, JSON.stringify({ signed: { _type: 'root' }, signatures: [] }));
    const file = path.join(data, 'settings.json');
    fs.writeFileSync(file, JSON.stringify({ source: { url: 'http://127.0.0.1:9/updates/', trustedRoot: root }, schedule: 'every blue moon' }, null, 2), { mode: 0o600 });
    // An mtime in the past, so a rewrite within the same clock tick would still show.
    fs.utimesSync(file, new Date('2024-01-01T00:00:00Z'), new Date('2024-01-01T00:00:00Z'));
    return { file, bytes: fs.readFileSync(file), mtimeMs: fs.statSync(file).mtimeMs };
  }

  const warning = /^bulwark: warning: .*settings\.json: "schedule" was invalid \("every blue moon"\); using the default hourly$/;

  it('status, settings get and test-connection leave an invalid settings.json byte-identical and use its valid settings', async () => {
    const data = scratch('bulwark-cli-readonly-');
    const { file, bytes, mtimeMs } = invalidSchedule(data);
    const unchanged = () => {
      expect(fs.readFileSync(file)).toEqual(bytes);
      expect(fs.statSync(file).mtimeMs).toBe(mtimeMs);
      expect(fs.readdirSync(data).filter((name) => name.startsWith('settings.json'))).toEqual(['settings.json']);
    };

    const status = await runCli(['status', '--data', data]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^Schedule: hourly; /m);
    expect(status.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(warning)]);
    unchanged();

    const get = await runCli(['settings', '--data', data, 'get', 'source']);
    expect(get.code).toBe(0);
    expect((JSON.parse(get.stdout) as { url: string }).url).toBe('http://127.0.0.1:9/updates/');
    expect(get.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(warning)]);
    unchanged();

    // Port 9 (discard) refuses on loopback: the test fails fast, through the source from the file.
    const test = await runCli(['test-connection', '--data', data, '--json']);
    expect(test.code).toBe(1);
    expect(test.stdout).toMatch(/127\.0\.0\.1:9/);
    expect(test.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(warning)]);
    unchanged();
  });

  it('status, settings get and test-connection create no settings.json', async () => {
    const data = scratch('bulwark-cli-readonly-none-');
    expect((await runCli(['status', '--data', data])).code).toBe(0);
    expect(JSON.parse((await runCli(['settings', '--data', data, 'get', 'schedule'])).stdout)).toEqual({ kind: 'interval', every: 1, unit: 'hours' });
    expect((await runCli(['test-connection', '--data', data, '--json'])).code).toBe(1);
    expect(fs.existsSync(path.join(data, 'settings.json'))).toBe(false);
  });
});

describe('command lines that are wrong change nothing', () => {
  function rootIn(dir: string): string {
    const file = path.join(dir, 'root.json');
    fs.writeFileSync(file, JSON.stringify({ signed: { _type: 'root' }, signatures: [] }));
    return file;
  }

  it('settings set source takes a trusted root path that contains spaces', async () => {
    const data = scratch('bulwark-cli-space-');
    const folder = path.join(data, 'Application Support');
    fs.mkdirSync(folder);
    const root = rootIn(folder);
    const set = await runCli(['settings', '--data', data, 'set', 'source', 'http://127.0.0.1:8080/', root]);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    const get = await runCli(['settings', '--data', data, 'get', 'source']);
    expect(JSON.parse(get.stdout)).toEqual({ url: 'http://127.0.0.1:8080/', trustedRoot: root });
  });

  it('serve with a refused --schedule exits 2 without saving its --source', async () => {
    const data = scratch('bulwark-cli-serve-refused-');
    const root = rootIn(data);
    const serve = await runCli(['serve', '--data', data, '--source', 'http://127.0.0.1:8080/', '--trusted-root', root, '--schedule', 'every 7 minutes']);
    expectOneLineError(serve, 2, /^bulwark serve: every 7 minutes is not offered/);
    const get = await runCli(['settings', '--data', data, 'get']);
    expect(JSON.parse(get.stdout)).toMatchObject({ source: { url: '', trustedRoot: '' }, schedule: { kind: 'interval', every: 1, unit: 'hours' } });
  });

  it('update and serve refuse a --trusted-root that is not a TUF root.json (exit 2) and save nothing', async () => {
    const data = scratch('bulwark-cli-not-root-');
    const notJson = path.join(data, 'passwd');
    fs.writeFileSync(notJson, 'root:x:0:0:root:/root:/bin/bash\n');
    const otherJson = path.join(data, 'targets.json');
    fs.writeFileSync(otherJson, JSON.stringify({ signed: { _type: 'targets' }, signatures: [] }));
    const source = ['--source', 'http://127.0.0.1:9/'];
    const cases: [string[], RegExp][] = [
      [['update', '--data', data, ...source, '--trusted-root', notJson], /^bulwark update: --trusted-root .*passwd is not a TUF root\.json \(not JSON\)/],
      [['update', '--data', data, ...source, '--trusted-root', otherJson], /^bulwark update: --trusted-root .*targets\.json is not a TUF root\.json \(its signed\._type is "targets", not "root"\)/],
      [['update', '--data', data, ...source, '--trusted-root', data], /^bulwark update: --trusted-root .* cannot be read: it is a directory, not a file \(EISDIR\)$/],
      [['update', '--data', data, ...source, '--trusted-root', path.join(data, 'missing.json')], /^bulwark update: --trusted-root .*missing\.json does not exist$/],
      [['serve', '--data', data, ...source, '--trusted-root', notJson], /^bulwark serve: --trusted-root .*passwd is not a TUF root\.json/],
      [['serve', '--data', data, ...source, '--trusted-root', otherJson, '--console'], /^bulwark serve: --trusted-root .*targets\.json is not a TUF root\.json/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((result, i) => expectOneLineError(result, 2, cases[i]![1]));
    expect(fs.readdirSync(data).sort()).toEqual(['passwd', 'targets.json']);
  });

  it('update with a --source that is not http(s) is a usage error (exit 2) and records no run', async () => {
    const data = scratch('bulwark-cli-bad-source-');
    const root = rootIn(data);
    const update = await runCli(['update', '--data', data, '--source', 'ftp://x', '--trusted-root', root]);
    expectOneLineError(update, 2, /^bulwark update: the update source must be an http or https URL, not ftp:$/);
    expect(fs.existsSync(path.join(data, 'history.jsonl'))).toBe(false);
  });
});

describe('against a real update source', () => {
  let source: TestSource;
  let data: string;

  beforeEach(async () => {
    source = await new TestSource().start();
    source.addPattern('virus-pattern', { bytes: 150_000 });
    source.writeVersion('scan-engine', 12, crypto.randomBytes(20_000));
    source.publish();
    data = scratch('bulwark-cli-data-');
  });

  afterEach(async () => {
    killChildren();
    await source.stop();
    fs.rmSync(source.dir, { recursive: true, force: true });
  });

  const sourceFlags = () => ['--source', source.url, '--trusted-root', source.rootFile];

  interface UpdateJson {
    result: string;
    bytes: number;
    error?: string;
    components: { id: string; previousVersion: number | null; version: number | null; method: string; reason: string; bytes: number }[];
  }

  function parseOneJson<T>(stdout: string): T {
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    return JSON.parse(lines[0]!) as T;
  }

  it('update --json prints one JSON object; status --json then lists the installed components', async () => {
    const first = await runCli(['update', '--data', data, ...sourceFlags(), '--json']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const run = parseOneJson<UpdateJson>(first.stdout);
    expect(run.result).toBe('ok');
    expect(run.error).toBeUndefined();
    expect(typeof run.bytes).toBe('number');
    expect(run.bytes).toBeGreaterThan(0);
    expect(run.components.map((c) => c.id).sort()).toEqual(['scan-engine', 'virus-pattern']);
    for (const c of run.components) {
      expect(Object.keys(c)).toEqual(expect.arrayContaining(['id', 'previousVersion', 'version', 'method', 'reason', 'bytes']));
      expect(typeof c.reason).toBe('string');
      expect(typeof c.bytes).toBe('number');
      expect(c.previousVersion).toBeNull();
      expect(c.method).toBe('full');
      expect(c.reason).toBe('no installed version');
      expect(c.bytes).toBeGreaterThan(0);
    }
    const byId = Object.fromEntries(run.components.map((c) => [c.id, c]));
    expect(byId['virus-pattern']!.version).toBe(source.series.get('virus-pattern')!.version);
    expect(byId['scan-engine']!.version).toBe(12);
    expect(run.bytes).toBeGreaterThanOrEqual(run.components.reduce((sum, c) => sum + c.bytes, 0));
    expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(false);

    const status = await runCli(['status', '--data', data, '--json']);
    expect(status.code).toBe(0);
    const report = parseOneJson<{
      state: { type: string };
      components: { id: string; version: number; sha256: string; path: string; installedAt: string }[];
      lastUpdate: { result: string; trigger: string } | null;
      nextUpdate: string | null;
      schedule: string;
    }>(status.stdout);
    expect(report.state).toEqual({ type: 'stopped' });
    expect(report.lastUpdate).toMatchObject({ result: 'ok', trigger: 'manual' });
    expect(report.nextUpdate).toBeNull();
    expect(report.schedule).toBe('hourly');
    expect(report.components.map((c) => [c.id, c.version]).sort()).toEqual([
      ['scan-engine', 12],
      ['virus-pattern', byId['virus-pattern']!.version],
    ]);
    for (const c of report.components) {
      expect(c.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(path.isAbsolute(c.path)).toBe(true);
      expect(c.path.startsWith(data)).toBe(true);
      expect(crypto.createHash('sha256').update(fs.readFileSync(c.path)).digest('hex')).toBe(c.sha256);
      expect(new Date(c.installedAt).toISOString()).toBe(c.installedAt);
    }
    const scanEngine = report.components.find((c) => c.id === 'scan-engine')!;
    expect(fs.readFileSync(scanEngine.path)).toEqual(fs.readFileSync(path.join(source.input, 'scan-engine', '12')));

    // A new version: the next update is incremental for the pattern and a no-op for the engine.
    const next = source.addPattern('virus-pattern');
    source.publish();
    const second = await runCli(['update', '--data', data, ...sourceFlags(), '--json']);
    expect(second.code).toBe(0);
    const run2 = parseOneJson<UpdateJson>(second.stdout);
    expect(run2.result).toBe('ok');
    const byId2 = Object.fromEntries(run2.components.map((c) => [c.id, c]));
    expect(byId2['virus-pattern']).toMatchObject({ previousVersion: byId['virus-pattern']!.version, version: next, method: 'incremental' });
    expect(byId2['scan-engine']).toMatchObject({ id: 'scan-engine', previousVersion: 12, version: 12, method: 'none', reason: 'up to date', bytes: 0 });
  });

  it('update exits 1 with the error when the source cannot be used', async () => {
    source.intercept = (req, res) => {
      if (!req.url?.endsWith('timestamp.json')) return false;
      res.writeHead(500).end();
      return true;
    };
    const result = await runCli(['update', '--data', data, ...sourceFlags(), '--json']);
    expect(result.code).toBe(1);
    const run = parseOneJson<UpdateJson>(result.stdout);
    expect(run.result).toBe('failed');
    expect(run.error).toMatch(/HTTP 500/);
    expect(run.components).toEqual([]);
  });

  async function startServe(): Promise<CliProcess> {
    const serve = new CliProcess(['serve', '--data', data, ...sourceFlags()]);
    await serve.waitFor(/Bulwark serving .*; schedule hourly/);
    return serve;
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`serve logs its start-up update and exits 0 on ${signal}, leaving no lock`, async () => {
      const serve = await startServe();
      await serve.waitFor(/install update done, .* received/);
      await serve.waitFor(/next update at \d{4}-\d\d-\d\dT\d\d:00:00\.000Z/);
      expect(serve.stdout).toMatch(/downloading virus-pattern \(\d of 2, full\)/);
      expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(true);
      expect(readLockOwner(data)?.pid).toBe(serve.pid);

      const stopped = await serve.stop(signal);
      expect(stopped).toMatchObject({ code: 0, signal: null });
      // It stops promptly rather than waiting out a timer; the bound is loose (loaded CI machines are slow).
      expect(stopped.ms).toBeLessThan(30_000);
      expect(serve.stdout).toContain(`${signal} received; stopping after the update in progress, if any`);
      expect(serve.stdout).toMatch(/ stopped\n$/);
      expect(serve.stderr).toBe('');
      expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(false);
      expect(fs.existsSync(path.join(data, 'state.json'))).toBe(false);

      // The source given on the command line was saved: a restart needs no flags, and its update is "startup".
      const again = new CliProcess(['serve', '--data', data]);
      await again.waitFor(/startup update done, .* received; all 2 components up to date/);
      expect((await again.stop(signal)).code).toBe(0);
      expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(false);
    });
  }

  it('serve stopped during its start-up update finishes that update first, then exits 0', async () => {
    const serve = await startServe();
    const stopped = await serve.stop('SIGTERM', 20_000);
    expect(stopped).toMatchObject({ code: 0, signal: null });
    expect(serve.stdout).toMatch(/SIGTERM received[^]*install update done[^]* stopped\n$/);
    const history = fs.readFileSync(path.join(data, 'history.jsonl'), 'utf8').split('\n').filter(Boolean);
    expect(history.map((line) => (JSON.parse(line) as { trigger: string; result: string }).result)).toEqual(['ok']);
    expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(false);
  });

  it('serve keeps running when it cannot record its runs in history.jsonl (a directory there), and says why', async () => {
    fs.mkdirSync(path.join(data, 'history.jsonl'));
    const serve = await startServe();
    await serve.waitFor(/cannot record the run in .*history\.jsonl: it is a directory, not a file \(EISDIR\)/);
    await serve.waitFor(/install update done, .* received/);
    await serve.waitFor(/next update at /);
    expect(serve.running).toBe(true);

    const status = await runCli(['status', '--data', data, '--json']);
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as { state: { type: string }; components: unknown[] };
    expect(report.state.type).toBe('idle');
    expect(report.components).toHaveLength(2);

    expect((await serve.stop('SIGTERM')).code).toBe(0);
    expect(serve.stderr).toBe('');
  });

  it('a second process on the same data directory is refused while serve runs', async () => {
    const serve = await startServe();
    await serve.waitFor(/next update at /);

    const update = await runCli(['update', '--data', data, ...sourceFlags()]);
    expectOneLineError(update, 1, new RegExp(`^bulwark update: another Bulwark process \\(PID ${serve.pid}\\) is using `));

    const second = await runCli(['serve', '--data', data]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^bulwark serve: another Bulwark process \\(PID ${serve.pid}\\) is using `, 'm'));

    // status reads what the running server published about itself.
    const status = await runCli(['status', '--data', data, '--json']);
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as { state: { type: string }; nextUpdate: string | null; components: unknown[] };
    expect(report.state.type).toBe('idle');
    expect(report.nextUpdate).toMatch(/T\d\d:00:00\.000Z$/);
    expect(report.components).toHaveLength(2);

    // The refused processes did not take the lock away from the server.
    expect(readLockOwner(data)?.pid).toBe(serve.pid);
    expect((await serve.stop('SIGTERM')).code).toBe(0);
    expect(fs.existsSync(path.join(data, 'bulwark.lock'))).toBe(false);

    // Once it has stopped, the one-off update runs.
    const after = await runCli(['update', '--data', data]);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/^manual update done, .*; all 2 components up to date\n$/);
  });
});
