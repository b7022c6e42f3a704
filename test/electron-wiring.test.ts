// The desktop shell's wiring, driven through a fake DesktopAdapter (the only fake: Electron's API).
// The engine, settings and data directory are real, in a temporary userData directory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DesktopAdapter, WindowHandle, WindowSpec } from '../src-main/electron/adapter.js';
import { consolePaths, startDesktopApp, type DesktopApp } from '../src-main/electron/desktop-app.js';

class FakeWindow implements WindowHandle {
  readonly loadedFiles: string[] = [];
  minimized = false;
  destroyed = false;
  focusCount = 0;
  restoreCount = 0;
  private readonly closedListeners: (() => void)[] = [];

  constructor(readonly spec: WindowSpec) {}

  loadFile(file: string): Promise<void> {
    this.loadedFiles.push(file);
    return Promise.resolve();
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  isMinimized(): boolean {
    return this.minimized;
  }
  restore(): void {
    this.restoreCount++;
    this.minimized = false;
  }
  show(): void {}
  focus(): void {
    this.focusCount++;
  }
  onClosed(listener: () => void): void {
    this.closedListeners.push(listener);
  }
  /** What Electron does when the user closes the window. */
  close(): void {
    this.destroyed = true;
    for (const listener of this.closedListeners) listener();
  }
}

class FakeDesktop implements DesktopAdapter {
  readonly windows: FakeWindow[] = [];
  readonly errors: { title: string; message: string }[] = [];
  quitCount = 0;
  private secondInstanceListeners: (() => void)[] = [];
  private quitCleanups: (() => Promise<void>)[] = [];

  constructor(
    private readonly userData: string,
    private readonly lockGranted = true,
  ) {}

  requestSingleInstanceLock(): boolean {
    return this.lockGranted;
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
  userDataDir(): string {
    return this.userData;
  }
  createWindow(spec: WindowSpec): WindowHandle {
    const window = new FakeWindow(spec);
    this.windows.push(window);
    return window;
  }
  on(_event: 'second-instance', listener: () => void): void {
    this.secondInstanceListeners.push(listener);
  }
  onQuit(cleanup: () => Promise<void>): void {
    this.quitCleanups.push(cleanup);
  }
  showError(title: string, message: string): void {
    this.errors.push({ title, message });
  }
  quit(): void {
    this.quitCount++;
  }

  /** What Electron does when the user launches the app again. */
  launchSecondInstance(): void {
    for (const listener of this.secondInstanceListeners) listener();
  }
  /** What Electron does on quit: run the will-quit cleanups and wait for them. */
  async runQuitCleanups(): Promise<void> {
    await Promise.all(this.quitCleanups.map((cleanup) => cleanup()));
    this.quitCleanups = [];
  }
}

const paths = consolePaths(path.join(path.sep, 'app', 'out', 'main', 'electron'));
const silent = (): void => {};
const started: { desktop: FakeDesktop; app: DesktopApp | undefined }[] = [];
const tempDirs: string[] = [];

function userDataDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-shell-'));
  tempDirs.push(dir);
  return dir;
}

async function start(desktop: FakeDesktop): Promise<DesktopApp | undefined> {
  const app = await startDesktopApp(desktop, { ...paths, log: silent });
  started.push({ desktop, app });
  return app;
}

afterEach(async () => {
  for (const { desktop, app } of started.splice(0)) {
    await app?.startupRun;
    await desktop.runQuitCleanups();
  }
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('desktop shell wiring', () => {
  it('finds the built page and preload next to the compiled shell', () => {
    const root = path.join(path.sep, 'app', 'out');
    expect(paths).toEqual({
      page: path.join(root, 'renderer', 'index.html'),
      preload: path.join(root, 'preload', 'preload.cjs'),
    });
  });

  it('opens one console window that is context-isolated, sandboxed and without Node, loading the built page', async () => {
    const desktop = new FakeDesktop(userDataDir());
    await start(desktop);

    expect(desktop.windows).toHaveLength(1);
    const [window] = desktop.windows;
    expect(window?.spec.webPreferences).toEqual({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      preload: paths.preload,
    });
    expect(window?.loadedFiles).toEqual([paths.page]);
  });

  it('starts the real engine on settings in userData and runs the first (install) update', async () => {
    const userData = userDataDir();
    const desktop = new FakeDesktop(userData);
    const app = await start(desktop);

    expect(fs.existsSync(path.join(userData, 'settings.json'))).toBe(true);
    const record = await app?.startupRun;
    // No update source is configured on a fresh install, so the run fails, and says why.
    expect(record).toMatchObject({ trigger: 'install', result: 'failed' });
    expect(record?.error).toMatch(/no update source is configured/);
    expect(app?.engine.status().state).toMatchObject({ type: 'failed' });
    expect(app?.engine.status().components).toEqual([]);
  });

  it('brings the existing window forward when the app is launched again', async () => {
    const desktop = new FakeDesktop(userDataDir());
    await start(desktop);
    const [window] = desktop.windows;
    if (!window) throw new Error('no window was opened');
    window.minimized = true;

    desktop.launchSecondInstance();

    expect(desktop.windows).toHaveLength(1);
    expect(window.restoreCount).toBe(1);
    expect(window.focusCount).toBe(1);
    expect(window.isMinimized()).toBe(false);
  });

  it('opens a new window on a second launch after the first was closed', async () => {
    const desktop = new FakeDesktop(userDataDir());
    const app = await start(desktop);
    desktop.windows[0]?.close();
    expect(app?.consoleWindow()).toBeUndefined();

    desktop.launchSecondInstance();

    expect(desktop.windows).toHaveLength(2);
    expect(app?.consoleWindow()).toBe(desktop.windows[1]);
    expect(desktop.windows[1]?.spec.webPreferences).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false });
  });

  it('leaves without opening anything when another instance holds the lock', async () => {
    const userData = userDataDir();
    const desktop = new FakeDesktop(userData, false);
    const app = await start(desktop);

    expect(app).toBeUndefined();
    expect(desktop.quitCount).toBe(1);
    expect(desktop.windows).toHaveLength(0);
    expect(fs.readdirSync(userData)).toEqual([]); // no settings, no engine data
  });

  it('releases the data-directory lock when the app quits', async () => {
    const userData = userDataDir();
    const desktop = new FakeDesktop(userData);
    const app = await start(desktop);
    const lockFile = path.join(userData, 'data', 'bulwark.lock');
    expect(fs.readFileSync(lockFile, 'utf8')).toBe(String(process.pid));

    await app?.startupRun;
    await desktop.runQuitCleanups();

    expect(fs.existsSync(lockFile)).toBe(false);
  });

  it('tells the user and quits when another Bulwark process is using the data directory', async () => {
    const userData = userDataDir();
    fs.mkdirSync(path.join(userData, 'data'));
    // A live process other than this one "owns" the directory, as a running `bulwark serve` would.
    fs.writeFileSync(path.join(userData, 'data', 'bulwark.lock'), String(process.ppid));
    const desktop = new FakeDesktop(userData);

    const app = await start(desktop);

    expect(app).toBeUndefined();
    expect(desktop.windows).toHaveLength(0);
    expect(desktop.quitCount).toBe(1);
    expect(desktop.errors).toEqual([{ title: 'Bulwark cannot start', message: expect.stringMatching(new RegExp(`PID ${process.ppid}`)) }]);
  });
});
