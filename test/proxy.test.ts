// Updates through real HTTP proxies on loopback: squid (plain, and with Basic auth through
// basic_ncsa_auth) and tinyproxy (BasicAuth), a real signed source over HTTP and over HTTPS (a test
// CA made with openssl), the engine in-process and the compiled CLI as a child process.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConnection } from '../src-main/engine/connection-test.js';
import { Engine } from '../src-main/engine/engine.js';
import { Settings, type ProxySetting } from '../src-main/engine/settings.js';
import { BIN, CliProcess, closedPort, ensureBuilt, killChildren, ROOT } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';
import { cleanEnv, runCommand, type CommandResult } from './helpers/netns.js';
import { freePort, hasCommand, SQUID_AUTH_HELPER, startLaggingRelay, startSquid, startTinyproxy, stopAllProxies, type RunningProxy } from './helpers/proxies.js';
import { makeCertificates, serveHttps, type RunningHttpsServer, type TestCertificates } from './helpers/tls.js';

const missing = [...['squid', 'tinyproxy', 'openssl'].filter((c) => !hasCommand(c)), ...(SQUID_AUTH_HELPER ? [] : ['squid basic_ncsa_auth'])];
const skipReason = missing.length ? `needs ${missing.join(', ')} (apt-get install squid tinyproxy openssl)` : '';
if (skipReason) console.warn(`proxy tests SKIPPED: ${skipReason}`);

const USER = 'alice';
/** Distinctive, so a leak anywhere is found by a plain search. */
const PASSWORD = `pw${crypto.randomBytes(12).toString('hex')}`;
const WRONG = `wrong${crypto.randomBytes(12).toString('hex')}`;

let work: string;
let source: TestSource;
let certs: TestCertificates;
let httpsSource: RunningHttpsServer;
/** No auth; CONNECT only to the HTTPS source's port, like Debian's stock squid.conf. */
let squid: RunningProxy;
let squidAuth: RunningProxy;
let tinyproxy: RunningProxy;
/** Data directories made by the tests, removed in afterAll. */
const dataDirs: string[] = [];

beforeAll(async () => {
  if (skipReason) return;
  ensureBuilt();
  work = tempDir('bulwark-proxy-');
  source = await new TestSource(path.join(work, 'source')).start();
  source.addPattern('virus-pattern');
  source.addPattern('virus-pattern');
  source.writeVersion('scan-engine', 20, Buffer.alloc(5000, 7));
  source.publish();
  certs = makeCertificates(path.join(work, 'tls'), ['localhost', '127.0.0.1']);
  httpsSource = await serveHttps(source.out, certs);
  const httpsPort = Number(new URL(httpsSource.url).port);
  const auth = { username: USER, password: PASSWORD };
  [squid, squidAuth, tinyproxy] = await Promise.all([
    startSquid({ dir: path.join(work, 'squid'), hosts: ['127.0.0.1'], port: await freePort(), connectPorts: [httpsPort] }),
    startSquid({ dir: path.join(work, 'squid-auth'), hosts: ['127.0.0.1'], port: await freePort(), auth }),
    startTinyproxy({ dir: path.join(work, 'tinyproxy'), hosts: ['127.0.0.1'], port: await freePort(), auth }),
  ]);
}, 60_000);

afterAll(async () => {
  killChildren();
  await stopAllProxies();
  await httpsSource?.close();
  await source?.stop();
  for (const dir of [work, ...dataDirs]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function proxySetting(proxy: RunningProxy | { port: number }, credentials?: { username: string; password: string }): ProxySetting {
  return { enabled: true, host: '127.0.0.1', port: proxy.port, username: credentials?.username ?? '', password: credentials?.password ?? '' };
}

/** A fresh data directory whose settings name `url` (trusting the source's root.json) and `proxy`. */
function dataDirFor(url: string, proxy?: ProxySetting): string {
  const dataDir = tempDir('bulwark-data-');
  dataDirs.push(dataDir);
  const trustedRoot = path.join(dataDir, 'imported-root.json');
  fs.copyFileSync(source.rootFile, trustedRoot);
  const settings = Settings.open(dataDir);
  settings.set('source', { url, trustedRoot });
  if (proxy) settings.set('proxy', proxy);
  return dataDir;
}

function engineOn(dataDir: string): Engine {
  return new Engine({ dataDir, settings: Settings.open(dataDir) });
}

function setProxy(dataDir: string, proxy: ProxySetting): void {
  Settings.open(dataDir).set('proxy', proxy);
}

/** The lines a proxy logged while `action` ran. */
async function loggedDuring(proxy: RunningProxy, action: () => Promise<unknown>): Promise<string> {
  const before = proxy.accessLog().length;
  await action();
  // squid logs a transaction when it ends (a tunnel when it closes): wait until the log stops growing.
  let seen = -1;
  for (const deadline = Date.now() + 3000; Date.now() < deadline; ) {
    const now = proxy.accessLog().length;
    if (now === seen) break;
    seen = now;
    await new Promise((r) => setTimeout(r, 200));
  }
  return proxy.accessLog().slice(before);
}

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CommandResult> {
  return runCommand(undefined, [process.execPath, BIN, ...args], { env: cleanEnv(env), cwd: ROOT, timeoutMs: 60_000 });
}

const sourcePath = (url: string, p: string) => new URL(p, url).href;

describe.skipIf(Boolean(skipReason))(`through a real proxy on loopback${skipReason ? ` (SKIPPED: ${skipReason})` : ''}`, () => {
  it('updates through squid, which logs the absolute-form GETs of an http source', async () => {
    const dataDir = dataDirFor(source.url, proxySetting(squid));
    const requestsBefore = source.requests.length;
    let run!: Awaited<ReturnType<Engine['runOnce']>>;
    const logged = await loggedDuring(squid, async () => (run = await engineOn(dataDir).runOnce()));
    expect(run.result, run.error).toBe('ok');
    expect(run.components.map((c) => [c.id, c.version, c.method])).toEqual(
      expect.arrayContaining([
        ['virus-pattern', 173, 'full'],
        ['scan-engine', 20, 'full'],
      ]),
    );
    // Absolute-form requests (not CONNECT tunnels), one for every file the source served.
    expect(logged).toContain(` GET ${sourcePath(source.url, 'metadata/timestamp.json')} `);
    expect(logged).not.toMatch(/ CONNECT /);
    const fetched = source.requests.slice(requestsBefore);
    expect(fetched.length).toBeGreaterThan(3);
    for (const p of fetched) expect(logged).toContain(` GET ${sourcePath(source.url, p)} `);
    // The connection test takes the same road.
    const test = await testConnection({ url: source.url, proxy: proxySetting(squid) });
    expect(test).toMatchObject({ ok: true, stage: 'ok' });
    expect(test.message).toContain(`through http://127.0.0.1:${squid.port}`);
  });

  describe.each([
    // squid answers missing and wrong credentials alike with 407 (RFC 9110 §15.5.8).
    { name: 'squid (basic_ncsa_auth)', proxyOf: () => squidAuth, wrongStatus: 407 },
    // tinyproxy 1.11 answers missing credentials with 407 but wrong ones with 401 and WWW-Authenticate.
    { name: 'tinyproxy (BasicAuth)', proxyOf: () => tinyproxy, wrongStatus: 401 },
  ])('a proxy that wants credentials: $name', ({ proxyOf, wrongStatus }) => {
    let dataDir: string;
    beforeAll(() => {
      dataDir = dataDirFor(source.url);
    });

    it('without credentials: 407, test stage "auth", the update fails naming 407, nothing installed, "proxy-auth" reminder', async () => {
      const proxy = proxyOf();
      setProxy(dataDir, proxySetting(proxy));
      const test = await testConnection({ url: source.url, proxy: proxySetting(proxy) });
      expect(test).toMatchObject({ ok: false, stage: 'auth' });
      expect(test.message).toContain(`the proxy http://127.0.0.1:${proxy.port} `);
      expect(test.message).toMatch(/\(407\)/);
      const engine = engineOn(dataDir);
      const run = await engine.runOnce();
      expect(run.result).toBe('failed');
      expect(run.error).toMatch(/\b407\b/);
      expect(engine.store.list()).toEqual([]);
      const reminder = engine.status().reminders.find((r) => r.id === 'proxy-auth');
      expect(reminder).toMatchObject({ severity: 'error', title: 'The proxy wants a valid user name and password' });
    });

    it('without credentials: the test asks for them instead of calling them wrong', async () => {
      const test = await testConnection({ url: source.url, proxy: proxySetting(proxyOf()) });
      expect(test.message).toMatch(/requires authentication \(407\)/);
      expect(test.action).toBe('Enter the proxy user name and password.');
    });

    it(`with a wrong password (HTTP ${wrongStatus}): the update fails, nothing installed, and the messages point at the proxy credentials`, async () => {
      const proxy = proxyOf();
      const wrong = proxySetting(proxy, { username: USER, password: WRONG });
      setProxy(dataDir, wrong);
      const engine = engineOn(dataDir);
      const run = await engine.runOnce();
      expect(run.result).toBe('failed');
      expect(run.error).toMatch(new RegExp(`\\b${wrongStatus}\\b`));
      // Whatever status the proxy chose, the message says what went wrong in words.
      expect(run.error).toMatch(/authentication/i);
      expect(engine.store.list()).toEqual([]);
      const test = await testConnection({ url: source.url, proxy: wrong });
      expect(test.ok).toBe(false);
      expect({ stage: test.stage, action: test.action }, test.message).toEqual({ stage: 'auth', action: 'Check the proxy user name and password.' });
      expect(test.message).toContain(`the proxy http://127.0.0.1:${proxy.port} `);
      expect(test.message).toMatch(/authentication failed/);
      expect(engine.status().reminders.map((r) => r.id)).toContain('proxy-auth');
    });

    it('with the right password: the update succeeds and the reminder clears', async () => {
      const proxy = proxyOf();
      const right = proxySetting(proxy, { username: USER, password: PASSWORD });
      setProxy(dataDir, right);
      expect(await testConnection({ url: source.url, proxy: right })).toMatchObject({ ok: true, stage: 'ok' });
      const engine = engineOn(dataDir);
      let run!: Awaited<ReturnType<Engine['runOnce']>>;
      const logged = await loggedDuring(proxy, async () => (run = await engine.runOnce()));
      expect(run.result, run.error).toBe('ok');
      expect(engine.store.list().map((c) => [c.id, c.version])).toEqual(
        expect.arrayContaining([
          ['virus-pattern', 173],
          ['scan-engine', 20],
        ]),
      );
      expect(logged).toContain(`GET ${sourcePath(source.url, 'metadata/timestamp.json')}`);
      expect(engine.status().reminders).toEqual([]);
    });
  });

  it('a proxy that closes every connection after its response without saying so (tinyproxy) costs no update', async () => {
    // tinyproxy answers HTTP/1.1 with no "Connection: close" yet closes the connection, so a client
    // may reuse it as the close arrives: "other side closed". A relay that passes the close 100 ms
    // late makes that race certain instead of a rare failure on a loaded machine.
    const relay = await startLaggingRelay({ host: '127.0.0.1', port: tinyproxy.port }, 100);
    try {
      const dataDir = dataDirFor(source.url, proxySetting({ port: relay.port }, { username: USER, password: PASSWORD }));
      const run = await engineOn(dataDir).runOnce();
      expect(run.result, run.error).toBe('ok');
      expect(run.components.find((c) => c.id === 'virus-pattern')).toMatchObject({ version: 173, result: 'ok' });
    } finally {
      await relay.close();
    }
  });

  it('a proxy nobody listens on: test stage "proxy", the update fails with a reminder to check the proxy', async () => {
    const proxy = proxySetting({ port: await closedPort() });
    const test = await testConnection({ url: source.url, proxy });
    expect(test).toMatchObject({ ok: false, stage: 'proxy' });
    expect(test.message).toBe(`the proxy http://127.0.0.1:${proxy.port} is unreachable (ECONNREFUSED)`);
    const dataDir = dataDirFor(source.url, proxy);
    const engine = engineOn(dataDir);
    const run = await engine.runOnce();
    expect(run).toMatchObject({ result: 'failed', errorCode: 'ERR_NETWORK' });
    expect(engine.store.list()).toEqual([]);
    const reminder = engine.status().reminders.find((r) => r.id === 'source-unreachable');
    expect(reminder?.action).toMatch(/Check the proxy in Settings › Proxy/);
  });

  describe('HTTPS source (test CA) through CONNECT', () => {
    it('an update in a child process with NODE_EXTRA_CA_CERTS tunnels through squid and succeeds', async () => {
      const dataDir = dataDirFor(httpsSource.url, proxySetting(squid));
      let result!: CommandResult;
      const logged = await loggedDuring(squid, async () => (result = await cli(['update', '--data', dataDir, '--json'], { NODE_EXTRA_CA_CERTS: certs.caFile })));
      expect(result.code, result.stderr).toBe(0);
      const json = JSON.parse(result.stdout) as { result: string; components: { id: string; version: number }[] };
      expect(json.result).toBe('ok');
      expect(json.components).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'virus-pattern', version: 173 })]));
      const { host } = new URL(httpsSource.url);
      expect(logged).toContain(` CONNECT ${host} `);
      expect(logged).not.toMatch(/ GET /);
      expect(httpsSource.requests).toContain('/metadata/timestamp.json');
    });

    it('without the CA: test stage "tls", directly and through the tunnel', async () => {
      const direct = await testConnection({ url: httpsSource.url, proxy: { ...proxySetting(squid), enabled: false }, env: {} });
      expect(direct).toMatchObject({ ok: false, stage: 'tls' });
      expect(direct.message).toMatch(/certificate/i);
      const tunnelled = await testConnection({ url: httpsSource.url, proxy: proxySetting(squid) });
      expect(tunnelled).toMatchObject({ ok: false, stage: 'tls', action: 'Check the server certificate and the system time.' });
      // The CLI says the same, and with the CA it passes.
      const dataDir = dataDirFor(httpsSource.url, proxySetting(squid));
      const without = await cli(['test-connection', '--data', dataDir, '--json']);
      expect(without.code).toBe(1);
      expect(JSON.parse(without.stdout)).toMatchObject({ ok: false, stage: 'tls' });
      const withCa = await cli(['test-connection', '--data', dataDir, '--json'], { NODE_EXTRA_CA_CERTS: certs.caFile });
      expect(withCa.code, withCa.stdout + withCa.stderr).toBe(0);
      expect(JSON.parse(withCa.stdout)).toMatchObject({ ok: true, stage: 'ok' });
    });
  });

  describe('the proxy from the environment (no proxy in the settings)', () => {
    it('HTTPS_PROXY carries an https source through a CONNECT tunnel; NO_PROXY sends it direct', async () => {
      const dataDir = dataDirFor(httpsSource.url);
      const env = { HTTPS_PROXY: squid.url, NODE_EXTRA_CA_CERTS: certs.caFile };
      let result!: CommandResult;
      const logged = await loggedDuring(squid, async () => (result = await cli(['update', '--data', dataDir, '--json'], env)));
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ result: 'ok' });
      expect(logged).toContain(` CONNECT ${new URL(httpsSource.url).host} `);

      const bypass = dataDirFor(httpsSource.url);
      const direct = await loggedDuring(squid, async () => (result = await cli(['update', '--data', bypass, '--json'], { ...env, NO_PROXY: '127.0.0.1' })));
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ result: 'ok' });
      expect(direct).toBe('');
    });

    it('HTTPS_PROXY with credentials in its URL reaches an authenticating squid', async () => {
      const dataDir = dataDirFor(httpsSource.url);
      const url = `http://${USER}:${PASSWORD}@127.0.0.1:${squidAuth.port}`;
      let result!: CommandResult;
      const logged = await loggedDuring(squidAuth, async () => (result = await cli(['update', '--data', dataDir, '--json'], { HTTPS_PROXY: url, NODE_EXTRA_CA_CERTS: certs.caFile })));
      expect(result.code, result.stderr).toBe(0);
      expect(logged).toMatch(new RegExp(` CONNECT ${new URL(httpsSource.url).host} ${USER} `));
      for (const text of [result.stdout, result.stderr, ...['history.jsonl', 'network.json'].map((f) => fs.readFileSync(path.join(dataDir, f), 'utf8'))]) expect(text).not.toContain(PASSWORD);
    });

    it('HTTP_PROXY carries an http source in absolute form, as a configured proxy does', async () => {
      // A stock squid refuses CONNECT to anything but its SSL ports, so the http source must go as
      // absolute-form GETs, exactly as with the proxy in the settings.
      const dataDir = dataDirFor(source.url);
      let result!: CommandResult;
      const logged = await loggedDuring(squid, async () => (result = await cli(['update', '--data', dataDir, '--json'], { HTTP_PROXY: squid.url })));
      expect(logged).toContain(` GET ${sourcePath(source.url, 'metadata/timestamp.json')} `);
      expect(result.code, result.stdout + result.stderr).toBe(0);
    });

    it('testConnection({ env }) uses the proxy of the environment it is given', async () => {
      let test!: Awaited<ReturnType<typeof testConnection>>;
      const logged = await loggedDuring(squid, async () => (test = await testConnection({ url: source.url, proxy: { ...proxySetting(squid), enabled: false }, env: { HTTP_PROXY: squid.url } })));
      expect(test).toMatchObject({ ok: true });
      expect(logged).toContain(sourcePath(source.url, 'metadata/timestamp.json'));
    });
  });

  it('never writes the proxy password: CLI output, logs, history.jsonl, state.json, network.json', async () => {
    const dataDir = dataDirFor(source.url);
    const outputs: string[] = [];
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const result = await cli(args, env);
      outputs.push(result.stdout, result.stderr);
      return result;
    };
    // The password comes from the environment, never from the command line.
    expect((await run(['settings', '--data', dataDir, 'set', 'proxy', `127.0.0.1:${squidAuth.port} ${USER}`], { BULWARK_PROXY_PASSWORD: WRONG })).code).toBe(0);
    const failed = await run(['update', '--data', dataDir, '--json']);
    expect(failed.code).toBe(1);
    expect((JSON.parse(failed.stdout) as { error: string }).error).toMatch(/\b407\b/);
    const failedTest = await run(['test-connection', '--data', dataDir]);
    expect(failedTest.stdout).toMatch(/^FAILED \(auth\): /);
    const failedStatus = await run(['status', '--data', dataDir, '--json']);
    expect((JSON.parse(failedStatus.stdout) as { reminders: { id: string }[] }).reminders.map((r) => r.id)).toContain('proxy-auth');

    expect((await run(['settings', '--data', dataDir, 'set', 'proxy', `127.0.0.1:${squidAuth.port} ${USER}`], { BULWARK_PROXY_PASSWORD: PASSWORD })).code).toBe(0);
    const get = await run(['settings', '--data', dataDir, 'get', 'proxy']);
    expect(JSON.parse(get.stdout)).toMatchObject({ enabled: true, username: USER, password: '(stored)' });
    const test = await run(['test-connection', '--data', dataDir, '--json']);
    expect(JSON.parse(test.stdout)).toMatchObject({ ok: true });
    // The server's own log, for its start-up update through the proxy.
    const serve = new CliProcess(['serve', '--data', dataDir]);
    await serve.waitFor(/update (done|FAILED)/);
    // state.json exists only while a server runs: take it now.
    const stateJson = fs.readFileSync(path.join(dataDir, 'state.json'), 'utf8');
    expect(JSON.parse(stateJson)).toMatchObject({ pid: serve.pid });
    outputs.push(stateJson);
    await serve.stop('SIGTERM');
    outputs.push(serve.stdout, serve.stderr);
    expect(serve.stdout).toMatch(/startup update done/);
    const update = await run(['update', '--data', dataDir, '--json']);
    expect(JSON.parse(update.stdout)).toMatchObject({ result: 'ok' });
    const status = await run(['status', '--data', dataDir, '--json']);
    expect((JSON.parse(status.stdout) as { reminders: unknown[] }).reminders).toEqual([]);
    outputs.push((await run(['status', '--data', dataDir])).stdout);

    // The settings file holds it (readable by its owner only) — proof the search below would find it.
    const settingsFile = path.join(dataDir, 'settings.json');
    expect(fs.readFileSync(settingsFile, 'utf8')).toContain(PASSWORD);
    expect(fs.statSync(settingsFile).mode & 0o777).toBe(0o600);
    // Everything else: every output, every other file in the data directory, the proxy's log.
    const files = (fs.readdirSync(dataDir, { recursive: true }) as string[]).map((f) => path.join(dataDir, f)).filter((f) => f !== settingsFile && fs.statSync(f).isFile());
    expect(files.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['history.jsonl', 'network.json']));
    const texts = [...outputs, ...files.map((f) => fs.readFileSync(f, 'latin1')), squidAuth.log(), squidAuth.accessLog()];
    for (const text of texts) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(WRONG);
      expect(text).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
    }
  });
});
