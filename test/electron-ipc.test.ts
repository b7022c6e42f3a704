// The console API over IPC: the sender check (pure), the Content-Security-Policy, and the handler
// wiring, with calls arriving through the fake ipcMain from our windows and from strangers.
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { CONSOLE_METHODS, ipcChannel, type Snapshot } from '../src-main/console/contract.js';
import { CONTENT_SECURITY_POLICY, isAppPageUrl, isTrustedSender, type IpcSenderInfo } from '../src-main/electron/security.js';
import { cleanUp, startOnFake } from './helpers/fake-electron.js';

afterEach(cleanUp);

const PAGE = 'file:///app/out/renderer/index.html';
const trusted: IpcSenderInfo = { senderId: 7, frameUrl: PAGE, isMainFrame: true };

describe('IPC sender check (pure)', () => {
  it('trusts our window showing our page, with or without a fragment', () => {
    expect(isTrustedSender(trusted, [3, 7], PAGE)).toBe(true);
    expect(isTrustedSender({ ...trusted, frameUrl: `${PAGE}#settings` }, [7], PAGE)).toBe(true);
    expect(isTrustedSender({ ...trusted, frameUrl: `${PAGE}#settings/proxy` }, new Set([7]), PAGE)).toBe(true);
  });

  it('refuses a WebContents that is not one of our windows', () => {
    expect(isTrustedSender({ ...trusted, senderId: 8 }, [7], PAGE)).toBe(false);
    expect(isTrustedSender(trusted, [], PAGE)).toBe(false);
  });

  it.each([
    ['a web page', 'https://evil.example/index.html'],
    ['another local file', 'file:///app/out/renderer/other.html'],
    ['the same name elsewhere', 'file:///tmp/renderer/index.html'],
    ['our page with a query', `${PAGE}?inject=1`],
    ['a data: URL', 'data:text/html,<script>alert(1)</script>'],
    ['about:blank', 'about:blank'],
    ['an encoded separator', 'file:///app/out/renderer%2Findex.html'],
    ['a remote file: host', 'file://evil.example/app/out/renderer/index.html'],
    ['garbage', 'not a url'],
    ['an empty URL', ''],
  ])('refuses our window when its frame shows %s', (_what, frameUrl) => {
    expect(isTrustedSender({ ...trusted, frameUrl }, [7], PAGE)).toBe(false);
  });

  it('refuses a frame that is gone, and a subframe of our page', () => {
    expect(isTrustedSender({ ...trusted, frameUrl: null }, [7], PAGE)).toBe(false);
    expect(isTrustedSender({ ...trusted, isMainFrame: false }, [7], PAGE)).toBe(false);
  });

  it('matches the same file however its URL is spelled', () => {
    const spaced = 'file:///home/a%20user/Bulwark/out/renderer/index.html';
    expect(isAppPageUrl('file:///home/a user/Bulwark/out/renderer/index.html', spaced)).toBe(true);
    expect(isAppPageUrl('file:///home/a%20user/Bulwark/out/main/../renderer/index.html', spaced)).toBe(true);
    expect(isAppPageUrl('file://localhost/app/out/renderer/index.html', PAGE)).toBe(true);
    // Windows paths compare without case; POSIX paths with.
    expect(isAppPageUrl('file:///c:/Program%20Files/Bulwark/resources/app.asar/out/renderer/index.html', 'file:///C:/Program%20Files/Bulwark/resources/app.asar/out/renderer/index.html')).toBe(true);
    expect(isAppPageUrl('file:///APP/out/renderer/index.html', PAGE)).toBe(false);
  });
});

describe('Content-Security-Policy', () => {
  it('is strict: only the app’s own files, no plugins, no <base>, no framing', () => {
    const directives = Object.fromEntries(CONTENT_SECURITY_POLICY.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values.join(' ')]));
    expect(directives).toEqual({
      'default-src': "'self'",
      'script-src': "'self'",
      'style-src': "'self'",
      'img-src': "'self' data:",
      'connect-src': "'self'",
      'object-src': "'none'",
      'base-uri': "'none'",
      'frame-ancestors': "'none'",
    });
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/unsafe-(inline|eval)/);
  });
});

describe('IPC handlers (fake ipcMain, real console service)', () => {
  it('handles exactly the contract’s methods', async () => {
    const { desktop } = await startOnFake();
    expect([...desktop.ipcHandlers.keys()].sort()).toEqual(CONSOLE_METHODS.map((m) => ipcChannel.method(m)).sort());
  });

  it('a call from the console window reaches ConsoleService and returns its result', async () => {
    const { desktop, app } = await startOnFake();
    await app.startupRun;
    const window = desktop.windows[0]!;

    const snapshot = (await desktop.invokeFrom(window, ipcChannel.method('snapshot'), null)) as Snapshot;

    expect(snapshot).toEqual(await app.service.call('snapshot', null));
    expect(snapshot.settings.host).toBe('desktop');
    // A fresh install (no source) waits for one: nothing ran, nothing failed.
    expect(snapshot.state).toMatchObject({ type: 'idle' });
  });

  it('the settings window may call too, and saving a setting goes through the service', async () => {
    const { desktop, app } = await startOnFake();
    app.openSettings();
    const settingsWindow = desktop.windows[1]!;
    const change = { section: 'schedule', value: { kind: 'daily', at: '03:30' } };

    const result = await desktop.invokeFrom(settingsWindow, ipcChannel.method('saveSettings'), change);

    expect(result).toMatchObject({ ok: true, settings: { schedule: { kind: 'daily', at: '03:30' } } });
    expect(app.settings.data.schedule).toEqual({ kind: 'daily', at: '03:30' });
  });

  it('the service’s refusals come back as rejections (bad parameters)', async () => {
    const { desktop } = await startOnFake();
    await expect(desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('saveSettings'), { section: 'nonsense' })).rejects.toThrow(/invalid parameters for saveSettings/);
    await expect(desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('snapshot'), null, 'extra')).rejects.toThrow(/takes one argument/);
  });

  it('a foreign sender is refused and logged, and its call never reaches the engine', async () => {
    const { desktop, app, logs } = await startOnFake();
    await app.startupRun;
    const stranger: IpcSenderInfo = { senderId: 4242, frameUrl: 'https://evil.example/', isMainFrame: true };

    await expect(desktop.invoke(ipcChannel.method('updateNow'), stranger, null)).rejects.toThrow(/not a Bulwark window/);

    expect(app.engine.busy).toBe(false);
    expect(app.engine.history.recent()).toHaveLength(0); // none: a fresh install has no source to update from
    expect(logs).toContainEqual(expect.stringMatching(/refused IPC bulwark:call:updateNow from an untrusted sender: webContents 4242 \(main frame https:\/\/evil\.example\/\)/));
  });

  it('our own window is refused once its frame shows something else, or from a subframe', async () => {
    const { desktop, app } = await startOnFake();
    const window = desktop.windows[0]!;
    const call = (sender: Partial<IpcSenderInfo>) =>
      desktop.invoke(ipcChannel.method('updateNow'), { senderId: window.webContentsId, frameUrl: window.url(), isMainFrame: true, ...sender }, null);

    await expect(call({ frameUrl: 'https://evil.example/' })).rejects.toThrow(/not a Bulwark window/);
    await expect(call({ frameUrl: null })).rejects.toThrow(/not a Bulwark window/);
    await expect(call({ isMainFrame: false })).rejects.toThrow(/not a Bulwark window/);
    await app.startupRun;
    expect(app.engine.history.recent()).toHaveLength(0);
  });

  it('a destroyed window’s WebContents is no longer trusted', async () => {
    const { desktop } = await startOnFake();
    const window = desktop.windows[0]!;
    const sender: IpcSenderInfo = { senderId: window.webContentsId, frameUrl: window.url(), isMainFrame: true };
    await expect(desktop.invoke(ipcChannel.method('snapshot'), sender, null)).resolves.toBeDefined();

    window.destroy();

    await expect(desktop.invoke(ipcChannel.method('snapshot'), sender, null)).rejects.toThrow(/not a Bulwark window/);
  });

  it('sends the engine’s events to our windows only, while they show our page', async () => {
    const { desktop, app } = await startOnFake();
    await app.startupRun;
    app.openSettings();
    const [consoleWindow, settingsWindow] = desktop.windows;
    // A window of ours whose page is something else (it could not navigate, but say it did).
    settingsWindow!.loaded.push({ file: '/elsewhere/other.html', hash: undefined });
    consoleWindow!.sent.length = 0;

    const finished = once(app.engine, 'run');
    desktop.tray.click('Update Now');
    await finished;

    // checking, then the network check that precedes every run, then the outcome.
    expect(consoleWindow!.sent.map((m) => m.channel)).toEqual([ipcChannel.event('state'), ipcChannel.event('changed'), ipcChannel.event('state'), ipcChannel.event('run')]);
    expect(consoleWindow!.sent.find((m) => m.channel === ipcChannel.event('changed'))?.payload).toEqual({ reason: 'network' });
    expect(consoleWindow!.sent.find((m) => m.channel === ipcChannel.event('state'))?.payload).toEqual({ type: 'checking', trigger: 'manual' });
    expect(consoleWindow!.sent.find((m) => m.channel === ipcChannel.event('run'))?.payload).toMatchObject({ trigger: 'manual', result: 'failed' });
    expect(settingsWindow!.sent).toEqual([]);
  });

  it('tells the windows when settings change', async () => {
    const { desktop, app } = await startOnFake();
    const window = desktop.windows[0]!;
    app.settings.set('schedule', { kind: 'interval', every: 6, unit: 'hours' });
    expect(window.sent).toContainEqual({ channel: ipcChannel.event('changed'), payload: { reason: 'settings.schedule' } });
  });
});
