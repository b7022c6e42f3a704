// The command line as an operator meets it: the README's own "Using it" sequence, run as written; a
// wrong command line (none, a typo, a flag without its value) said in our words with exit 2; a
// mistyped --data refused instead of created; failures on stderr; agents named unambiguously; the
// publisher's state kept out of the published site; the audit log of operator actions.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import sqlite3 from 'sqlite3';
import { AgentRegistry } from '../src-main/distribution/registry.js';
import { BIN, CliProcess, closedPort, ensureBuilt, killChildren, ROOT, runCli, until, type CliResult } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

beforeAll(() => ensureBuilt(), 180_000);
afterEach(() => killChildren());

const dirs: string[] = [];
const scratch = (prefix: string) => {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function usageError(result: CliResult, message: RegExp): void {
  expect(result.code, result.stderr).toBe(2);
  expect(result.stdout).toBe('');
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr.trim()).toMatch(message);
}

describe('a wrong command line is said in words, with exit 2', () => {
  it('bulwark alone lists the commands on stderr and exits 2; -v, --version and version print the version', async () => {
    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/^Usage: bulwark <command>/m);
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const args of [['-v'], ['--version'], ['version']]) {
      const result = await runCli(args);
      expect({ code: result.code, stdout: result.stdout }, args[0]).toEqual({ code: 0, stdout: `${version}\n` });
    }
  });

  it('a typo gets "did you mean", and the parser\'s own text is not shown', async () => {
    usageError(await runCli(['stauts', '--data', '/tmp/x']), /^bulwark: unknown command "stauts"; did you mean "status"\? \(run bulwark --help for the list\)$/);
    usageError(await runCli(['help', 'stauts']), /did you mean "status"\?/);
    usageError(await runCli(['status', '--data']), /^bulwark status: --data needs a value \(see bulwark status --help\)$/);
    usageError(await runCli(['status', '--dta', 'x']), /^bulwark status: unknown option --dta \(did you mean --data\?\) \(see bulwark status --help\)$/);
    usageError(await runCli(['status', '--json=yes', '--data', 'x']), /^bulwark status: --json takes no value/);
    const unexpected = await runCli(['update', 'now', '--data', 'x']);
    usageError(unexpected, /^bulwark update: unexpected argument now/);
    for (const result of [unexpected]) expect(result.stderr).not.toMatch(/Option '|<value>|positional/);
  });

  it('agent --server with something that is not a URL names the agent address, not an update source', async () => {
    usageError(
      await runCli(['agent', '--server', 'nothttp', '--token', 'bwx', '--data', scratch('bulwark-admin-agent-')]),
      /^bulwark agent: --server "nothttp" is not the server's agent address; it looks like http:\/\/server\.example:8470\//,
    );
  });
});

describe('--data must be an existing data directory', () => {
  it('settings, update, status, test-connection, component, rollout and agents refuse a missing one, create nothing, and say how to make it', async () => {
    const parent = scratch('bulwark-admin-data-');
    const missing = path.join(parent, 'typo');
    const commands = [
      ['settings', '--data', missing, 'set', 'schedule', 'hourly'],
      ['settings', '--data', missing],
      ['update', '--data', missing],
      ['status', '--data', missing],
      ['test-connection', '--data', missing],
      ['component', 'pin', 'virus-pattern', '--data', missing],
      ['rollout', 'status', '--data', missing],
      ['agents', 'list', '--data', missing],
      ['agents', 'token', '--data', missing],
    ];
    const results = await Promise.all(commands.map((args) => runCli(args)));
    results.forEach((result, i) =>
      usageError(result, new RegExp(`^bulwark ${commands[i]![0]}: data directory ${missing} does not exist; create it with \`bulwark init --data ${missing}\` \\(or the first \`bulwark serve --data ${missing}\`\\)$`)),
    );
    expect(fs.readdirSync(parent)).toEqual([]);

    // init makes it (its owner's only), and then the same commands work.
    const init = await runCli(['init', '--data', missing, '--schedule', 'every 6 hours']);
    expect(init.code, init.stderr).toBe(0);
    expect(fs.statSync(missing).mode & 0o777).toBe(0o700);
    const schedule = await runCli(['settings', '--data', missing, 'get', 'schedule']);
    expect(JSON.parse(schedule.stdout)).toEqual({ kind: 'interval', every: 6, unit: 'hours' });
    // An update without a source is a wrong command line too (exit 2), and says so on stderr.
    const update = await runCli(['update', '--data', missing]);
    expect(update.code).toBe(2);
    expect(update.stdout).toBe('');
    expect(update.stderr).toMatch(/no update source is configured/);
  });

  it('setting the source is how one starts (as update --source is): it makes the directory, its owner\'s only; a refused source leaves none', async () => {
    const parent = scratch('bulwark-admin-start-');
    const source = new TestSource(path.join(parent, 'source'));
    source.addPattern('virus-pattern', { bytes: 10_000 });
    source.publish();
    const data = path.join(parent, 'new');
    const refused = await runCli(['settings', '--data', data, 'set', 'source', `http://127.0.0.1:9/ ${path.join(parent, 'missing.json')}`]);
    usageError(refused, /^bulwark settings: trusted root .*missing\.json does not exist$/);
    expect(fs.existsSync(data)).toBe(false);
    const set = await runCli(['settings', '--data', data, 'set', 'source', `http://127.0.0.1:9/ ${source.rootFile}`]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toBe(`made the data directory ${data} (it did not exist)\n`);
    expect(fs.statSync(data).mode & 0o777).toBe(0o700);
    const saved = await runCli(['settings', '--data', data, 'get', 'source']);
    expect(JSON.parse(saved.stdout)).toMatchObject({ url: 'http://127.0.0.1:9/' });
  });
});

describe("the README's \"Using it\" sequence, as written", () => {
  it('publish, update --source, serve, status, the agent commands, test-connection, rollback and rollout all work in that order', async () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const block = /## Using it\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const lines = block!
      .split('\n')
      .map((line) => line.replace(/\s+#.*$/, '').trim())
      .filter((line) => line.startsWith('npx bulwark '));
    expect(lines.length).toBeGreaterThanOrEqual(10);

    const work = scratch('bulwark-admin-readme-');
    const source = new TestSource(path.join(work, 'source'));
    const older = source.addPattern('virus-pattern', { bytes: 30_000 });
    let newer = 0;
    source.addPattern('scan-engine', { bytes: 20_000 });
    let server: CliProcess | undefined;
    let agent: CliProcess | undefined;
    await source.start();
    try {
      const values: Record<string, string> = {
        'patterns/': source.input + '/',
        'site/': source.out + '/',
        'keys/': source.keys + '/',
        '/var/lib/bulwark-agent': path.join(work, 'agent'),
        '/var/lib/bulwark': path.join(work, 'server'),
        'https://updates.example.com/': source.url,
        ' root.json': ' ' + source.rootFile,
        'virus-pattern 175': `virus-pattern ${older}`,
      };
      const words = (line: string) => {
        let text = line.replace(/^npx bulwark /, '');
        for (const [from, to] of Object.entries(values)) text = text.split(from).join(to);
        return [...text.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      };
      for (const line of lines) {
        const args = words(line);
        if (args[0] === 'publish') {
          // The README publishes the version this test published last: both are in the input already.
          const result = await runCli([...args, '--level', '3'], 120_000);
          expect(result.code, `${line}\n${result.stderr}`).toBe(0);
          expect(fs.existsSync(path.join(source.out, 'publish-state.json'))).toBe(false);
        } else if (args[0] === 'serve') {
          // Time passes: the vendor publishes the next virus pattern, which serve's start-up update installs
          // (so the server keeps two versions, one to roll back to).
          newer = source.addPattern('virus-pattern');
          expect((await runCli(['publish', '--input', source.input, '--out', source.out, '--keys', source.keys, '--level', '3'], 120_000)).code).toBe(0);
          // The one change: agents on a free loopback port, not every address's 8470 (tests run side by side).
          server = new CliProcess([...args, '--agents-listen', '127.0.0.1:0']);
          const [, agentsUrl] = await server.waitFor(/serving agents at (http:\/\/\S+?),?\s/, 30_000);
          values['http://server.example:8470/'] = agentsUrl!;
          await server.waitFor(/next update at /, 30_000);
          expect(server.stdout).not.toMatch(/no update source/i);
          expect(server.stdout).toMatch(/^Console: http:\/\/127\.0\.0\.1:\d+\/\?token=/m);
        } else if (args[0] === 'agent') {
          agent = new CliProcess(args.map((a) => (a === 'JOIN' ? values.JOIN! : a)));
          await agent.waitFor(/ agent running in /, 30_000);
        } else {
          const result = await runCli(args, 60_000);
          expect(result.code, `${line}\n${result.stdout}${result.stderr}`).toBe(0);
          if (args[0] === 'update') expect(JSON.parse(result.stdout)).toMatchObject({ result: 'ok' });
          // The join string: alone on the last line.
          if (args[0] === 'agents' && args[1] === 'token') values.JOIN = result.stdout.trim().split('\n').at(-1)!.trim();
          if (args[0] === 'agents' && args[1] === 'list') expect(result.stdout).toMatch(/^1 agent: 1 current/);
          if (args[0] === 'component' && args[1] === 'rollback') expect(result.stdout).toContain(`rolled back from ${newer} to ${older}`);
        }
      }
      expect(server?.running, 'serve ran').toBe(true);
      expect(agent?.running, 'the agent ran').toBe(true);
      // The operator's actions are in the audit log, as the command line's.
      const audit = fs.readFileSync(path.join(work, 'server', 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { via: string; action: string; target: string; reason?: string });
      expect(audit.map((a) => [a.via, a.action, a.target])).toEqual([
        ['cli', 'rollback', 'virus-pattern'],
        ['cli', 'unpin', 'virus-pattern'],
      ]);
      expect(audit[0]!.reason).toBe('false positives');
    } finally {
      await agent?.stop('SIGTERM').catch(() => undefined);
      await server?.stop('SIGTERM').catch(() => undefined);
      await source.stop();
    }
  }, 180_000);
});

describe('a failed update', () => {
  it('goes to stderr, not stdout, and exits 1; a source given with it is saved once it works, or where there was none', async () => {
    const work = scratch('bulwark-admin-failed-');
    const source = new TestSource(path.join(work, 'source'));
    source.addPattern('scan-engine', { bytes: 10_000 });
    source.publish();
    await source.start();
    const data = path.join(work, 'data');
    const saved = () => (JSON.parse(fs.readFileSync(path.join(data, 'settings.json'), 'utf8')) as { source: unknown }).source;
    const dead = `http://127.0.0.1:${await closedPort()}/`;
    // A new data directory keeps the source it is given even if the first update fails: nothing is
    // replaced, and the next serve tries it again.
    expect((await runCli(['update', '--data', data, '--source', dead, '--trusted-root', source.rootFile])).code).toBe(1);
    expect(saved()).toEqual({ url: dead, trustedRoot: source.rootFile });
    // A source that works replaces it...
    expect((await runCli(['update', '--data', data, '--source', source.url, '--trusted-root', source.rootFile])).code).toBe(0);
    expect(saved()).toEqual({ url: source.url, trustedRoot: source.rootFile });
    // ...and one that fails does not replace a working one.
    const wrong = await runCli(['update', '--data', data, '--source', dead, '--trusted-root', source.rootFile]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`bulwark update: the settings keep their source (${source.url}); the one given is saved once an update with it succeeds`);
    expect(saved()).toEqual({ url: source.url, trustedRoot: source.rootFile });
    await source.stop();
    const failed = await runCli(['update', '--data', data]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toBe('');
    expect(failed.stderr).toMatch(/manual update FAILED/);
  });
});

describe('agents are named without ambiguity', () => {
  it('ring and remove refuse a name two agents share, listing their ids, and take the id; both are audited', async () => {
    const data = scratch('bulwark-admin-agents-');
    const registry = await AgentRegistry.open(data);
    const token = await registry.enrollmentToken();
    const first = await registry.enroll(token, { name: 'twin', hostname: 'host-a', address: '192.0.2.1', pollSeconds: 300 });
    const second = await registry.enroll(token, { name: 'twin', hostname: 'host-b', address: '192.0.2.2', pollSeconds: 300 });
    expect(second.name).toBe('twin-2'); // names are unique now...
    await registry.close();
    // ...but a registry from before they were can hold two agents of one name.
    await new Promise<void>((resolve, reject) => {
      const db = new sqlite3.Database(path.join(data, 'agents.sqlite'));
      db.run(`UPDATE agents SET name = 'twin' WHERE id = ?`, [second.id], (error) => db.close(() => (error ? reject(error) : resolve())));
    });

    const refused = await runCli(['agents', 'ring', 'twin', 'canary', '--data', data]);
    usageError(refused, /^bulwark agents: 2 agents are named "twin"; give the id of the one you mean: /);
    for (const id of [first.id, second.id]) expect(refused.stderr).toContain(id.slice(0, 8));
    expect(refused.stderr).toMatch(/host-a, 192\.0\.2\.1/);

    const moved = await runCli(['agents', 'ring', first.id.slice(0, 8), 'canary', '--data', data]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toBe(`twin (${first.id.slice(0, 8)}) is now in canary\n`);
    const listed = JSON.parse((await runCli(['agents', 'list', '--data', data, '--json'])).stdout) as { agents: { id: string; ring: string }[] };
    expect(Object.fromEntries(listed.agents.map((a) => [a.id, a.ring]))).toEqual({ [first.id]: 'canary', [second.id]: 'broad' });
    // The plain list shows the short ids to pick from.
    expect((await runCli(['agents', 'list', '--data', data])).stdout).toContain(`  ${second.id.slice(0, 8)}  twin`);

    usageError(await runCli(['agents', 'remove', 'twin', '--data', data]), /2 agents are named "twin"/);
    usageError(await runCli(['agents', 'remove', 'nobody', '--data', data]), /no agent is named or numbered "nobody"/);
    const removed = await runCli(['agents', 'remove', second.id, '--data', data]);
    expect(removed.code, removed.stderr).toBe(0);
    const after = JSON.parse((await runCli(['agents', 'list', '--data', data, '--json'])).stdout) as { agents: { id: string }[] };
    expect(after.agents.map((a) => a.id)).toEqual([first.id]);
    // With one left, the name is enough again.
    expect((await runCli(['agents', 'ring', 'twin', 'early', '--data', data])).code).toBe(0);
    expect((await runCli(['agents', 'token', '--rotate', '--data', data])).code).toBe(0);

    const audit = fs.readFileSync(path.join(data, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { via: string; who: string; action: string; target: string; detail?: string });
    expect(audit.map((a) => [a.via, a.action, a.target, a.detail])).toEqual([
      ['cli', 'ring', 'twin', `${first.id.slice(0, 8)}: broad → canary`],
      ['cli', 'remove-agent', 'twin', second.id.slice(0, 8)],
      ['cli', 'ring', 'twin', `${first.id.slice(0, 8)}: canary → early`],
      ['cli', 'rotate-token', 'enrollment token of the broad ring', undefined],
    ]);
    expect(audit[0]!.who).toMatch(/^\S+@\S+$/);
  });
});

describe('bulwark publish', () => {
  it('keeps its own state beside the keys, out of the published site, and moves an old one out of it', async () => {
    const work = scratch('bulwark-admin-publish-');
    const source = new TestSource(path.join(work, 'source'));
    source.addPattern('virus-pattern', { bytes: 20_000 });
    source.publish();
    const inSite = fs.readdirSync(source.out, { recursive: true, encoding: 'utf8' });
    expect(inSite.filter((f) => /publish-state/.test(f))).toEqual([]);
    const kept = fs.readdirSync(source.keys).filter((f) => /^publish-state-[0-9a-f]{16}\.json$/.test(f));
    expect(kept).toHaveLength(1);
    expect(fs.statSync(path.join(source.keys, kept[0]!)).mode & 0o777).toBe(0o600);

    // A site published by an older version: its state is taken over and leaves the site.
    const state = fs.readFileSync(path.join(source.keys, kept[0]!));
    fs.rmSync(path.join(source.keys, kept[0]!));
    fs.writeFileSync(path.join(source.out, 'publish-state.json'), state);
    source.addPattern('virus-pattern');
    const result = source.publish();
    expect(result.components[0]!.incrementals.length).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(source.out, 'publish-state.json'))).toBe(false);
    expect(fs.existsSync(path.join(source.keys, kept[0]!))).toBe(true);
  });
});

describe('the console access under systemd', () => {
  it('is not written to the journal: serve prints the address without its token, console-url prints the sign-in address', async () => {
    const data = scratch('bulwark-admin-journal-');
    // systemd sets JOURNAL_STREAM for a service whose output goes to the journal.
    const child = spawn(process.execPath, [BIN, 'serve', '--data', data, '--console', '--agents-listen', 'off'], { cwd: ROOT, env: { ...process.env, JOURNAL_STREAM: '8:12345' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
    try {
      const line = await until(() => /^Console: .*$/m.exec(output)?.[0], 20_000, 'the Console line');
      expect(line).toMatch(/^Console: http:\/\/127\.0\.0\.1:\d+\/ \(sign in with the address `bulwark console-url --data .*` prints\)$/);
      const printed = await runCli(['console-url', '--data', data]);
      expect(printed.code, printed.stderr).toBe(0);
      const url = new URL(printed.stdout.trim());
      expect(line).toContain(url.origin);
      const token = url.searchParams.get('token')!;
      expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(output).not.toContain(token);
      expect(fs.statSync(path.join(data, 'console.json')).mode & 0o777).toBe(0o600);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('close', resolve));
    }
    expect(output).not.toMatch(/token=/);
  });
});
