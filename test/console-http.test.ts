// The browser console's HTTP side: token, validation, the contract over HTTP and live events.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Snapshot } from '../src-main/console/contract.js';
import { startConsoleServer, type ConsoleServer } from '../src-main/console/http-server.js';
import { ConsoleService } from '../src-main/console/service.js';
import { Engine } from '../src-main/engine/engine.js';
import { Settings } from '../src-main/engine/settings.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

let source: TestSource;
let dataDir: string;
let rendererDir: string;
let engine: Engine;
let settings: Settings;
let server: ConsoleServer;

/** Raw HTTP, so the test controls every header (fetch would add and hide some). */
function raw(method: string, urlPath: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request(new URL(urlPath, server.origin), { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const authed = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${server.token}`, 'content-type': 'application/json', 'x-bulwark-console': '1', ...extra });

async function call(method: string, params?: unknown) {
  const res = await raw('POST', `/api/call/${method}`, authed(), params === undefined ? undefined : JSON.stringify(params));
  return { status: res.status, json: JSON.parse(res.body) as unknown };
}

beforeAll(async () => {
  source = await new TestSource().start();
  source.addPattern('virus-pattern');
  source.publish();
  dataDir = tempDir('bulwark-console-');
  // A stand-in renderer build: the server's job is to serve whatever the build produced.
  rendererDir = tempDir('bulwark-renderer-');
  fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>Bulwark</title><script src="app.js"></script>');
  fs.writeFileSync(path.join(rendererDir, 'app.js'), 'console.log(1)');
  settings = Settings.open(dataDir);
  settings.set('source', { url: source.url, trustedRoot: source.rootFile });
  engine = new Engine({ dataDir, settings });
  await engine.start();
  const service = new ConsoleService({ engine, settings, dataDir, host: 'browser' });
  server = await startConsoleServer({ service, rendererDir });
});

afterAll(async () => {
  await server.close();
  await engine.stop();
  await source.stop();
  for (const dir of [source.dir, dataDir, rendererDir]) fs.rmSync(dir, { recursive: true, force: true });
});

describe('access token', () => {
  it('prints a URL with a random token on 127.0.0.1', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/);
  });

  it('answers 401 without the token or with a wrong one, and leaks nothing', async () => {
    for (const [urlPath, headers] of [
      ['/', {}],
      ['/app.js', {}],
      ['/api/events', {}],
      ['/?token=wrong', {}],
      ['/', { cookie: 'bulwark_console=wrong' }],
      ['/', { authorization: 'Bearer wrong' }],
    ] as const) {
      const res = await raw('GET', urlPath, headers);
      expect(res.status, urlPath).toBe(401);
      if (urlPath === '/' || urlPath.startsWith('/?')) {
        // The page: a sign-in page, with no script and nothing of the console.
        expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
        expect(res.body).toContain('Sign in to the Bulwark console');
        expect(res.body).not.toMatch(/<script|app\.js|virus/i);
      } else {
        expect(JSON.parse(res.body)).toEqual({ error: 'missing or wrong access token', code: 'unauthorized' });
        expect(res.body).not.toContain('Bulwark');
      }
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    const post = await raw('POST', '/api/call/snapshot', { 'content-type': 'application/json', 'x-bulwark-console': '1' });
    expect(post.status).toBe(401);
  });

  it('trades the token in the URL for an HttpOnly SameSite=Strict cookie, then serves the console', async () => {
    const res = await raw('GET', `/?token=${server.token}`);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/');
    const cookie = res.headers['set-cookie']![0]!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const page = await raw('GET', '/', { cookie: cookie.split(';')[0]! });
    expect(page.status).toBe(200);
    expect(page.body).toContain('<title>Bulwark</title>');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
  });

  it('refuses a foreign Host header (DNS rebinding)', async () => {
    const res = await raw('GET', '/', { host: 'evil.example:80', authorization: `Bearer ${server.token}` });
    expect(res.status).toBe(400);
  });
});

describe('calls', () => {
  it('returns a snapshot with components, the schedule and the settings without the proxy password', async () => {
    settings.set('proxy', { enabled: false, host: 'proxy.example', port: 3128, username: 'ops', password: 's3cret' });
    const { status, json } = await call('snapshot');
    expect(status).toBe(200);
    const snapshot = json as Snapshot;
    expect(snapshot.components).toContainEqual(expect.objectContaining({ id: 'virus-pattern', name: 'Virus Pattern', installedVersion: 171, latestVersion: 171, method: 'full' }));
    expect(snapshot.nextRun).not.toBeNull();
    expect(snapshot.settings.proxy).toEqual({ enabled: false, host: 'proxy.example', port: 3128, username: 'ops', hasPassword: true });
    expect(JSON.stringify(snapshot)).not.toContain('s3cret');
  });

  it('answers malformed requests with 400 and a message', async () => {
    const badJson = await raw('POST', '/api/call/saveSettings', authed(), '{not json');
    expect(badJson.status).toBe(400);
    expect(JSON.parse(badJson.body).error).toMatch(/not valid JSON/);
    const noHeader = await raw('POST', '/api/call/snapshot', { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' });
    expect(noHeader.status).toBe(400);
    expect(JSON.parse(noHeader.body).error).toMatch(/x-bulwark-console/);
    const unknown = await call('deleteEverything', {});
    expect(unknown.status).toBe(404);
    const badParams = await call('saveSettings', { section: 'schedule' });
    expect(badParams.status).toBe(400);
    expect((badParams.json as { error: string }).error).toMatch(/required property 'value'/);
    const extra = await call('snapshot', { surprise: 1 });
    expect(extra.status).toBe(400);
    const get = await raw('GET', '/api/call/snapshot', authed());
    expect(get.status).toBe(405);
  });

  it('refuses an invalid setting with the field and a message, and keeps the old value', async () => {
    const before = settings.data.schedule;
    const { status, json } = await call('saveSettings', { section: 'schedule', value: { kind: 'interval', every: 7, unit: 'minutes' } });
    expect(status).toBe(200);
    expect(json).toEqual({ ok: false, field: 'schedule.every', message: expect.stringMatching(/every 7 minutes is not offered/) });
    expect(settings.data.schedule).toEqual(before);
    const proxy = await call('saveSettings', { section: 'proxy', value: { enabled: true, host: '', port: 3128, username: '' } });
    expect(proxy.json).toEqual({ ok: false, field: 'proxy.host', message: expect.stringMatching(/a host is needed/) });
  });

  it('says why in the form when settings.json cannot be written (a directory in its place)', async () => {
    const file = path.join(dataDir, 'settings.json');
    const saved = fs.readFileSync(file);
    fs.rmSync(file);
    fs.mkdirSync(file);
    try {
      const { status, json } = await call('saveSettings', { section: 'schedule', value: { kind: 'interval', every: 15, unit: 'minutes' } });
      expect(status).toBe(200);
      expect(json).toEqual({ ok: false, field: 'schedule', message: expect.stringMatching(/^cannot save schedule to .*settings\.json: it is a directory, not a file \(EISDIR\)$/) });
    } finally {
      fs.rmdirSync(file);
      fs.writeFileSync(file, saved, { mode: 0o600 });
    }
  });

  it('keeps the stored proxy password when the form leaves it out', async () => {
    settings.set('proxy', { enabled: false, host: 'proxy.example', port: 3128, username: 'ops', password: 'kept' });
    const { json } = await call('saveSettings', { section: 'proxy', value: { enabled: false, host: 'proxy2.example', port: 8080, username: 'ops' } });
    expect(json).toMatchObject({ ok: true, settings: { proxy: { host: 'proxy2.example', hasPassword: true } } });
    expect(settings.data.proxy.password).toBe('kept');
  });

  it('refuses start-at-login in the browser console', async () => {
    const { json } = await call('saveSettings', { section: 'startAtLogin', value: true });
    expect(json).toMatchObject({ ok: false, field: 'startAtLogin' });
    expect(settings.data.startAtLogin).toBe(false);
  });

  it('imports a trusted root into the data directory and refuses other files', async () => {
    const good = await call('importTrustedRoot', { fileName: 'root.json', contents: fs.readFileSync(source.rootFile, 'utf8') });
    const result = good.json as { ok: boolean; path: string };
    expect(result.ok).toBe(true);
    expect(result.path.startsWith(path.join(dataDir, 'trusted-roots'))).toBe(true);
    expect(fs.readFileSync(result.path, 'utf8')).toBe(fs.readFileSync(source.rootFile, 'utf8'));
    const bad = await call('importTrustedRoot', { fileName: 'x.json', contents: '{"signed":{"_type":"targets"}}' });
    expect(bad.json).toEqual({ ok: false, message: expect.stringMatching(/not a TUF root/) });
  });
});

describe('events', () => {
  it('streams engine state changes and the run to the browser as server-sent events', async () => {
    source.addPattern('virus-pattern');
    source.publish();
    const events: string[] = [];
    const received = new Promise<void>((resolve, reject) => {
      const req = http.get(new URL('/api/events', server.origin), { headers: { authorization: `Bearer ${server.token}` } }, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          for (const line of chunk.split('\n')) if (line.startsWith('event: ')) events.push(line.slice(7));
          if (events.includes('run')) {
            req.destroy();
            resolve();
          }
        });
        void call('updateNow');
      });
      req.on('error', (error) => (events.includes('run') ? undefined : reject(error)));
    });
    await received;
    expect(events).toContain('state');
    expect(events).toContain('progress');
    expect(events.at(-1)).toBe('run');
    const { json } = await call('snapshot');
    expect((json as Snapshot).components.find((c) => c.id === 'virus-pattern')).toMatchObject({ installedVersion: 173, method: 'incremental' });
  });
});
