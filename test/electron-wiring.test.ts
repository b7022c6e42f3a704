// The desktop shell's wiring, driven through a fake DesktopAdapter (the only fake: Electron's API).
// The engine, settings and data directory are real, in a temporary userData directory.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ipcChannel } from '../src-main/console/contract.js';
import { CONTENT_SECURITY_POLICY } from '../src-main/electron/security.js';
import { readLockOwner } from '../src-main/engine/lock.js';
import { cleanUp, FakeDesktop, paths, startOnFake, startOnFakeMaybe, tempDir } from './helpers/fake-electron.js';

afterEach(cleanUp);

const ISOLATED = { contextIsolation: true, sandbox: true, nodeIntegration: false, preload: paths.preload };

describe('desktop shell wiring', () => {
  it('finds the built page, preload and icons next to the compiled shell', () => {
    const root = path.join(path.sep, 'app', 'out');
    expect(paths).toEqual({
      page: path.join(root, 'renderer', 'index.html'),
      preload: path.join(root, 'preload', 'preload.cjs'),
      assets: path.join(root, 'assets'),
    });
  });

  it('opens one console window that is context-isolated, sandboxed and without Node, loading the built page', async () => {
    const { desktop } = await startOnFake();

    expect(desktop.windows).toHaveLength(1);
    const [window] = desktop.windows;
    expect(window?.spec.webPreferences).toEqual(ISOLATED);
    expect(window?.loaded).toEqual([{ file: paths.page, hash: undefined }]);
  });

  it('secures the session before any window opens: the CSP header and no permissions', async () => {
    const { desktop } = await startOnFake();
    expect(desktop.securedWith).toEqual({ contentSecurityPolicy: CONTENT_SECURITY_POLICY });
  });

  it('starts the real engine on settings in userData and runs the first (install) update', async () => {
    const { app, userData } = await startOnFake();

    expect(fs.existsSync(path.join(userData, 'settings.json'))).toBe(true);
    const record = await app.startupRun;
    // No update source is configured on a fresh install: the start-up update says why and records
    // nothing (the console and tray show how to begin, not a failure).
    expect(record).toMatchObject({ trigger: 'install', result: 'failed' });
    expect(record?.error).toMatch(/no update source is configured/);
    expect(app.engine.status().state).toMatchObject({ type: 'idle' });
    expect(app.engine.history.recent()).toEqual([]);
    expect(app.engine.status().components).toEqual([]);
  });

  it('brings the existing window forward when the app is launched again', async () => {
    const { desktop } = await startOnFake();
    const [window] = desktop.windows;
    if (!window) throw new Error('no window was opened');
    window.minimized = true;

    desktop.launchSecondInstance();

    expect(desktop.windows).toHaveLength(1);
    expect(window.restoreCount).toBe(1);
    expect(window.focusCount).toBe(1);
    expect(window.isMinimized()).toBe(false);
  });

  it('hides the console to the tray when its window is closed, and keeps running', async () => {
    const { desktop, app, userData } = await startOnFake();
    const [window] = desktop.windows;
    if (!window) throw new Error('no window was opened');

    expect(window.userClose()).toBe('kept');

    expect(window.isVisible()).toBe(false);
    expect(window.isDestroyed()).toBe(false);
    expect(app.consoleWindow()).toBe(window);
    expect(desktop.quitCount).toBe(0);
    expect(desktop.tray.destroyed).toBe(false);
    // The engine still holds its data directory.
    expect(fs.existsSync(path.join(userData, 'data', 'bulwark.lock'))).toBe(true);

    // A second launch (or Open Console) shows the same window again.
    desktop.launchSecondInstance();
    expect(desktop.windows).toHaveLength(1);
    expect(window.isVisible()).toBe(true);
    expect(window.focusCount).toBe(1);
  });

  it('opens a new window on a second launch after the first was destroyed', async () => {
    const { desktop, app } = await startOnFake();
    desktop.windows[0]?.destroy();
    expect(app.consoleWindow()).toBeUndefined();

    desktop.launchSecondInstance();

    expect(desktop.windows).toHaveLength(2);
    expect(app.consoleWindow()).toBe(desktop.windows[1]);
    expect(desktop.windows[1]?.spec.webPreferences).toEqual(ISOLATED);
  });

  it('started at login, stays in the tray; a later launch opens the console', async () => {
    const { desktop } = await startOnFake({ app: { hidden: true } });
    expect(desktop.windows).toHaveLength(0);
    expect(desktop.trays).toHaveLength(1);

    desktop.launchSecondInstance();
    expect(desktop.windows).toHaveLength(1);
  });

  it('macOS: a click on the Dock icon opens the console', async () => {
    const { desktop } = await startOnFake({ app: { hidden: true } });
    desktop.emit('activate');
    expect(desktop.windows).toHaveLength(1);
  });

  it('leaves without opening anything when another instance holds the lock', async () => {
    const userData = tempDir();
    const desktop = new FakeDesktop(userData, { lockGranted: false });
    const { app } = await startOnFakeMaybe({ desktop, userData });

    expect(app).toBeUndefined();
    expect(desktop.quitCount).toBe(1);
    expect(desktop.windows).toHaveLength(0);
    expect(desktop.trays).toHaveLength(0);
    expect(fs.readdirSync(userData)).toEqual([]); // no settings, no engine data
  });

  it('quits for real: windows close instead of hiding, the tray goes, the engine releases its lock', async () => {
    const { desktop, app, userData } = await startOnFake();
    const lockFile = path.join(userData, 'data', 'bulwark.lock');
    expect(readLockOwner(path.dirname(lockFile))?.pid).toBe(process.pid);
    await app.startupRun;

    desktop.tray.click('Quit');
    expect(desktop.quitCount).toBe(1);
    // Electron now closes the windows; they must not hide (that would cancel the quit).
    expect(desktop.windows[0]?.userClose()).toBe('closed');
    await desktop.runQuitCleanups();

    expect(desktop.tray.destroyed).toBe(true);
    expect(fs.existsSync(lockFile)).toBe(false);
  });

  it('stores the proxy password encrypted with the OS account’s key (safeStorage) when the system has one', async () => {
    const userData = tempDir();
    const desktop = new FakeDesktop(userData, { encryption: true });
    const { app } = await startOnFake({ desktop, userData });
    const proxy = { enabled: true, host: 'proxy.example', port: 3128, username: 'ops', password: 'correct horse' };

    const result = await desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('saveSettings'), { section: 'proxy', value: proxy });

    expect(result).toMatchObject({ ok: true, settings: { proxy: { host: 'proxy.example', hasPassword: true } } });
    expect(fs.readFileSync(path.join(userData, 'settings.json'), 'utf8')).not.toContain('correct horse');
    expect(app.settings.data.proxy.password).toBe('correct horse');
  });

  it('tells the user and quits when another Bulwark process is using the data directory', async () => {
    const userData = tempDir();
    fs.mkdirSync(path.join(userData, 'data'));
    // A live process other than this one "owns" the directory, as a running `bulwark serve` would.
    fs.writeFileSync(path.join(userData, 'data', 'bulwark.lock'), String(process.ppid));
    const desktop = new FakeDesktop(userData);

    const { app } = await startOnFakeMaybe({ desktop, userData });

    expect(app).toBeUndefined();
    expect(desktop.windows).toHaveLength(0);
    expect(desktop.trays).toHaveLength(0);
    expect(desktop.ipcHandlers.size).toBe(0);
    expect(desktop.quitCount).toBe(1);
    expect(desktop.errors).toEqual([{ title: 'Bulwark cannot start', message: expect.stringMatching(new RegExp(`PID ${process.ppid}`)) }]);
  });
});
