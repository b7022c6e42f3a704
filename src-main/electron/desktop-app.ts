// The desktop shell's wiring: single instance, engine start-up, the console window, clean exit.
// It sees Electron only through a DesktopAdapter, so tests drive it with a fake.
import path from 'node:path';
import { Engine } from '../engine/engine.js';
import { describeError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import { Settings } from '../engine/settings.js';
import type { DesktopAdapter, WindowHandle, WindowSpec } from './adapter.js';

/** Where the built renderer page and preload script are. */
export interface ConsolePaths {
  /** Absolute path of the renderer's index.html. */
  page: string;
  /** Absolute path of the CommonJS preload script. */
  preload: string;
}

/**
 * The build layout (see vite.config.ts and tsconfig.preload.json), relative to the directory of the
 * compiled shell, out/main/electron; it is the same inside app.asar.
 */
export function consolePaths(shellDir: string): ConsolePaths {
  const outDir = path.resolve(shellDir, '..', '..');
  return {
    page: path.join(outDir, 'renderer', 'index.html'),
    preload: path.join(outDir, 'preload', 'preload.cjs'),
  };
}

export interface DesktopAppOptions extends ConsolePaths {
  log?: (line: string) => void;
}

export interface DesktopApp {
  readonly engine: Engine;
  /** The start-up update; it resolves with its record (failures are recorded, not thrown). */
  readonly startupRun: Promise<RunRecord | undefined>;
  /** The console window, while it is open. */
  consoleWindow(): WindowHandle | undefined;
}

/**
 * Start the app. Resolves with the running app, or undefined when this instance is leaving: another
 * instance holds the lock, or the engine could not start (the user has been told why).
 */
export async function startDesktopApp(adapter: DesktopAdapter, options: DesktopAppOptions): Promise<DesktopApp | undefined> {
  const log = options.log ?? ((line: string) => console.log(line));

  // One instance per user: a second engine on the same data directory would be refused by its lock
  // anyway. The running instance hears 'second-instance' and brings its window forward instead.
  if (!adapter.requestSingleInstanceLock()) {
    adapter.quit();
    return undefined;
  }

  let consoleWindow: WindowHandle | undefined;
  let ready = false;
  const windowSpec: WindowSpec = {
    title: 'Bulwark',
    width: 960,
    height: 640,
    minWidth: 560,
    minHeight: 360,
    webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false, preload: options.preload },
  };
  const openConsoleWindow = (): WindowHandle => {
    const window = adapter.createWindow(windowSpec);
    window.onClosed(() => {
      if (consoleWindow === window) consoleWindow = undefined;
    });
    window.loadFile(options.page).catch((error: unknown) => log(`cannot load the console page ${options.page}: ${describeError(error)}`));
    consoleWindow = window;
    return window;
  };

  adapter.on('second-instance', () => {
    if (consoleWindow && !consoleWindow.isDestroyed()) {
      if (consoleWindow.isMinimized()) consoleWindow.restore();
      consoleWindow.show();
      consoleWindow.focus();
    } else if (ready) {
      openConsoleWindow();
    }
  });

  await adapter.whenReady();
  ready = true;

  const userDataDir = adapter.userDataDir();
  let engine: Engine;
  let startupRun: Promise<RunRecord | undefined>;
  try {
    const settings = Settings.open(userDataDir);
    if (settings.recovered) log(settings.recovered);
    // The engine's files get their own directory, apart from Chromium's caches in userData.
    engine = new Engine({ dataDir: path.join(userDataDir, 'data'), settings, log });
    // start() locks the data directory synchronously (a running `bulwark serve` makes it throw here)
    // and then runs the start-up update, which is not awaited: the window should not wait for downloads.
    startupRun = engine.start().catch((error: unknown) => {
      log(`start-up update failed: ${describeError(error)}`);
      return undefined;
    });
  } catch (error) {
    adapter.showError('Bulwark cannot start', describeError(error));
    adapter.quit();
    return undefined;
  }
  const runningEngine = engine;
  adapter.onQuit(() => runningEngine.stop());

  openConsoleWindow();
  return { engine, startupRun, consoleWindow: () => consoleWindow };
}
