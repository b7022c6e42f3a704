// Consumers without a daemon: the consumers file's validation (errors name the file and the entry),
// commands run without a shell and killed with their process group at the deadline, and a real YARA
// handed each version of a rule file by the Engine (a rule that does not compile is refused before it
// is placed; the previous rules stay, in place and active). A failure of the machine's own (the
// target's folder missing) is local and is tried again next run; a refused version is not.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../src-main/engine/engine.js';
import { loadConsumerConfig } from '../src-main/engine/consumer-config.js';
import { runCommand, trimOutput } from '../src-main/engine/consumer-command.js';
import { ConsumerConfigError } from '../src-main/engine/errors.js';
import { Settings } from '../src-main/engine/settings.js';
import { ensureBuilt, runCli } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

let dir: string;
beforeEach(() => {
  dir = tempDir('bulwark-consumers-');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function writeConfig(config: unknown, name = 'consumers.json'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 1));
  return file;
}

describe('the consumers file', () => {
  it('reads argument lists and command objects, with deadlines and exit codes', () => {
    const file = writeConfig({
      'clamav-test-sigs': {
        path: '/var/lib/clamav/bulwark.hsb',
        mode: '0640',
        check: ['clamscan', '--no-summary', '-d', '{file}', '/var/lib/bulwark/empty'],
        reload: { command: ['clamdscan', '--reload'], timeoutSeconds: 5 },
        health: { command: ['clamdscan', '--no-summary', '/probe-{version}'], exitCodes: [1] },
      },
    });
    const consumer = loadConsumerConfig(file).consumers.get('clamav-test-sigs')!;
    expect(consumer).toMatchObject({
      id: 'clamav-test-sigs',
      engine: 'clamdscan',
      path: '/var/lib/clamav/bulwark.hsb',
      mode: 0o640,
      check: { argv: ['clamscan', '--no-summary', '-d', '{file}', '/var/lib/bulwark/empty'], timeoutMs: 120_000, exitCodes: [0] },
      reload: { timeoutMs: 5_000, exitCodes: [0] },
      health: { timeoutMs: 30_000, exitCodes: [1] },
    });
  });

  it.each([
    ['not JSON', '{ "a": ', /consumers\.json: is not valid JSON/],
    ['an array', '[]', /consumers\.json: must be a JSON object with one entry per component id/],
    ['a bad id', { 'Bad Id': { path: '/x' } }, /consumers\.json, entry "Bad Id": is not a component id/],
    ['no path', { 'yara-rules': { check: ['yara', '{file}', '/e'] } }, /entry "yara-rules": path is required/],
    ['a relative path', { 'yara-rules': { path: 'rules.yar' } }, /entry "yara-rules": path must be absolute/],
    ['a shell string', { 'yara-rules': { path: '/r.yar', check: 'yara {file} /e' } }, /entry "yara-rules": check must be a list of strings \(the program and its arguments, run without a shell\)/],
    ['an unknown field', { 'yara-rules': { path: '/r.yar', reloads: ['true'] } }, /entry "yara-rules": unknown field "reloads"/],
    ['an unknown placeholder', { 'yara-rules': { path: '/r.yar', check: ['yara', '{path}', '/e'] } }, /entry "yara-rules": check: unknown placeholder \{path\} \(only \{file\} and \{version\} are substituted\)/],
    ['a missing program', { 'yara-rules': { path: '/r.yar', reload: ['no-such-scanner-reload', '--now'] } }, /entry "yara-rules": reload: the program "no-such-scanner-reload" is not found on PATH/],
    ['a missing absolute program', { 'yara-rules': { path: '/r.yar', check: ['/opt/nowhere/yara', '{file}'] } }, /entry "yara-rules": check: the program \/opt\/nowhere\/yara does not exist/],
    ['a bad mode', { 'yara-rules': { path: '/r.yar', mode: '644x' } }, /entry "yara-rules": mode must be octal permissions as a string/],
    ['an unknown owner', { 'yara-rules': { path: '/r.yar', owner: 'no-such-user-here' } }, /entry "yara-rules": owner: no user named "no-such-user-here"/],
    ['a shared path', { a: { path: '/same' }, b: { path: '/same' } }, /entry "b": its path \/same is also "a"'s/],
  ])('refuses %s, naming the file and the entry', (_, config, message) => {
    const file = writeConfig(config);
    let error: unknown;
    try {
      loadConsumerConfig(file);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConsumerConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message.startsWith(file)).toBe(true);
  });

  it('a missing binary stops `bulwark agent --consumers` and `bulwark consumers check` with exit 2, naming file and entry', async () => {
    ensureBuilt();
    const file = writeConfig({ 'yara-rules': { path: path.join(dir, 'rules.yar'), check: ['yara-not-installed', '{file}', '/e'] } });
    const agent = await runCli(['agent', '--server', 'http://127.0.0.1:9/', '--token', 'x', '--data', path.join(dir, 'agent'), '--consumers', file]);
    expect(agent.code).toBe(2);
    expect(agent.stderr).toContain(`${file}, entry "yara-rules": check: the program "yara-not-installed" is not found on PATH`);
    fs.mkdirSync(path.join(dir, 'data'));
    const check = await runCli(['consumers', 'check', '--data', path.join(dir, 'data'), '--consumers', file]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('entry "yara-rules": check: the program "yara-not-installed" is not found on PATH');
  });
});

describe('consumer commands', () => {
  it('run without a shell, output captured', async () => {
    const result = await runCommand(['echo', '$HOME', '`id`', '|', 'x'], { timeoutMs: 5_000 });
    expect(result).toMatchObject({ code: 0, timedOut: false });
    expect(result.output).toBe('$HOME `id` | x\n');
  });

  it('a command that hangs is killed at its deadline, with everything it started', async () => {
    const pids = path.join(dir, 'pids');
    // A wrapper that starts a child of its own and waits: both must go at the deadline.
    const script = writeConfig(`#!/bin/sh\nsleep 300 &\necho $$ $! > ${pids}\necho "loading, please wait"\nwait\n`, 'hang.sh');
    fs.chmodSync(script, 0o755);
    const started = Date.now();
    const result = await runCommand([script], { timeoutMs: 1_000 });
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGKILL');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.output).toContain('loading, please wait');
    // Gone, or a zombie waiting to be reaped by whoever inherited it (it no longer runs).
    const alive = (pid: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    const [shell, child] = fs.readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    expect(alive(shell!)).toBe(false);
    expect(alive(child!)).toBe(false);
  });

  it('a program that cannot be started says so', async () => {
    const result = await runCommand([path.join(dir, 'missing')], { timeoutMs: 5_000 });
    expect(result.spawnError).toBe('ENOENT');
  });

  it('trims output to its last lines, without control characters', () => {
    expect(trimOutput('line 1\n\x1b[31mred\x1b[0m\r\nERROR: Malformed database\n')).toBe('line 1 | red | ERROR: Malformed database');
    const long = trimOutput(Array.from({ length: 100 }, (_, i) => `line ${i} ${'x'.repeat(40)}`).join('\n'), 200);
    expect(long.length).toBeLessThanOrEqual(210);
    expect(long).toMatch(/^… \| .*line 99 x+$/);
  });
});

describe('YARA rules handed over by the engine', () => {
  let source: TestSource;
  beforeAll(() => {
    if (!fs.existsSync('/usr/bin/yara')) throw new Error('yara is not installed (apt-get install yara)');
  });
  beforeEach(async () => {
    source = await new TestSource(path.join(dir, 'source')).start();
  });
  afterEach(async () => {
    await source.stop();
  });

  const rule = (version: number, body = `strings: $a = "bulwark-${version}" condition: $a`) => `rule bulwark_${version} { ${body} }\n`;

  it('places rules that compile, refuses one that does not before it is placed (and not again until a newer one), then takes the next', async () => {
    const dataDir = path.join(dir, 'data');
    const rulesDir = path.join(dir, 'rules');
    fs.mkdirSync(rulesDir);
    const target = path.join(rulesDir, 'bulwark.yar');
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '');
    const consumers = writeConfig({ 'yara-rules': { engine: 'yara', path: target, mode: '0640', check: ['yara', '{file}', empty] } });
    const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot: source.rootFile }, consumers });

    source.writeVersion('yara-rules', 1, rule(1));
    source.publish();
    const first = await engine.runOnce('schedule');
    expect(first.result).toBe('ok');
    expect(fs.readFileSync(target, 'utf8')).toBe(rule(1));
    expect(fs.statSync(target).mode & 0o777).toBe(0o640);
    // Nothing is left beside the rules (the temporary file and the kept previous version are gone).
    expect(fs.readdirSync(rulesDir)).toEqual(['bulwark.yar']);

    // Version 2 does not compile: refused by its check; the rules in place and the active version stay 1.
    source.writeVersion('yara-rules', 2, rule(2, 'strings: $a = "x" condition: $b'));
    source.publish();
    const refused = await engine.runOnce('schedule');
    expect(refused.result).toBe('failed');
    expect(refused.components[0]).toMatchObject({ id: 'yara-rules', previousVersion: 1, version: 1, result: 'failed', consumer: { version: 2, engine: 'yara', stage: 'check', kind: 'content' } });
    expect(refused.components[0]!.error).toMatch(/yara refused yara-rules 2 at its check \(yara exit 1\): .*error: rule "bulwark_2" in .*bulwark\.yar\(1\): undefined string/);
    expect(refused.failure).toMatchObject({ kind: 'content', component: 'yara-rules', version: 2, engine: 'yara', stage: 'check', message: expect.stringMatching(/undefined string/) });
    expect(fs.readFileSync(target, 'utf8')).toBe(rule(1));
    expect(engine.store.active('yara-rules')?.version).toBe(1);
    expect(fs.readdirSync(rulesDir)).toEqual(['bulwark.yar']);
    // The status says so.
    expect(engine.status().consumers).toEqual([
      { id: 'yara-rules', engine: 'yara', path: target, version: 1, active: true, failure: expect.objectContaining({ version: 2, stage: 'check', kind: 'content' }) },
    ]);

    // The next poll does not try version 2 again (its check is not run: the refusal stands, with its time).
    const again = await engine.runOnce('schedule');
    expect(again.components[0]).toMatchObject({ result: 'failed', reason: 'refused by yara (check); waiting for a newer version', consumer: { at: refused.components[0]!.consumer!.at } });
    expect(again.failure?.at).toBe(refused.failure!.at);

    // Version 3 compiles again: placed and active.
    source.writeVersion('yara-rules', 3, rule(3));
    source.publish();
    const fixed = await engine.runOnce('schedule');
    expect(fixed.result).toBe('ok');
    expect(fixed.components[0]).toMatchObject({ previousVersion: 1, version: 3 });
    expect(fs.readFileSync(target, 'utf8')).toBe(rule(3));
    expect(engine.status().consumers).toEqual([{ id: 'yara-rules', engine: 'yara', path: target, version: 3, active: true }]);

    // `bulwark consumers check` loads the active version with yara.
    ensureBuilt();
    const check = await runCli(['consumers', 'check', '--data', dataDir, '--consumers', consumers]);
    expect(check.stdout).toContain('ok     yara-rules 3 (yara): yara loads it');
    expect(check.code).toBe(0);
  });

  it('a target that cannot be written is a local failure, tried again next run; the engine gets the active version once it can', async () => {
    const dataDir = path.join(dir, 'data');
    const target = path.join(dir, 'not-yet', 'bulwark.yar');
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '');
    const consumers = writeConfig({ 'yara-rules': { engine: 'yara', path: target, check: ['yara', '{file}', empty] } });
    const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url: source.url, trustedRoot: source.rootFile }, consumers });
    source.writeVersion('yara-rules', 1, rule(1));
    source.publish();
    const failed = await engine.runOnce('schedule');
    expect(failed.result).toBe('failed');
    expect(failed.failure).toMatchObject({ kind: 'local', stage: 'place', message: expect.stringMatching(/cannot place yara-rules 1 at .*not-yet\/bulwark\.yar: the directory .* does not exist/) });
    expect(engine.store.active('yara-rules')).toBeUndefined();

    // The folder appears: the next (automatic) run places it.
    fs.mkdirSync(path.dirname(target));
    const placed = await engine.runOnce('schedule');
    expect(placed.result).toBe('ok');
    expect(fs.readFileSync(target, 'utf8')).toBe(rule(1));

    // Someone removes the placed file: the next run hands the active version over again.
    fs.rmSync(target);
    const settled = await engine.runOnce('schedule');
    expect(settled.result).toBe('ok');
    expect(settled.components[0]!.reason).toMatch(/handed to its engine again/);
    expect(fs.readFileSync(target, 'utf8')).toBe(rule(1));
  });
});
