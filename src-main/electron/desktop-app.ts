// The desktop shell's wiring: single instance, engine start-up, the tray, the console and settings
// windows (closing them hides them to the tray), the console API over IPC, notifications, start at
// login, the demo source, clean exit. It sees Electron only through a DesktopAdapter, so tests drive
// it with a fake.
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConsoleService } from '../console/service.js';
import { startDemoAgents, startDemoSource, useDemoSource, type DemoSource } from '../demo/demo.js';
import type { Engine } from '../engine/engine.js';
import { describeError, SettingsError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import { Settings } from '../engine/settings.js';
import { startServer, type BulwarkServer } from '../server/server.js';
import type { DesktopAdapter, TrayHandle, WindowHandle, WindowSpec } from './adapter.js';
import { serveConsoleOverIpc } from './ipc.js';
import { loginItemFor } from './login-item.js';
import { notificationsFor } from './notifications.js';
import { CONTENT_SECURITY_POLICY } from './security.js';
import { trayModel, type TrayAction, type TrayModel } from './tray-menu.js';

/** Where the built renderer page, preload script and icons are. */
export interface ConsolePaths {
  /** Absolute path of the renderer's index.html. */
  page: string;
  /** Absolute path of the CommonJS preload script. */
  preload: string;
  /** Directory of the tray and app icons (copied from assets/ by `npm run build:assets`). */
  assets: string;
}

/**
 * The build layout (see vite.config.ts, tsconfig.preload.json and the build:assets script), relative
 * to the directory of the compiled shell, out/main/electron; it is the same inside app.asar.
 */
export function consolePaths(shellDir: string): ConsolePaths {
  const outDir = path.resolve(shellDir, '..', '..');
  return {
    page: path.join(outDir, 'renderer', 'index.html'),
    preload: path.join(outDir, 'preload', 'preload.cjs'),
    assets: path.join(outDir, 'assets'),
  };
}

/** The demo's files live here, apart from the CLI demo's (`bulwark demo`), so both can run. */
export const DESKTOP_DEMO_DIR = path.join(os.tmpdir(), 'bulwark-desktop-demo');
/** How often the demo source publishes new versions, in seconds. */
export const DEMO_EVERY_SECONDS = 60;

export interface DesktopAppOptions extends ConsolePaths {
  log?: (line: string) => void;
  /**
   * Run against the built-in demo update source (BULWARK_DEMO=1 or --demo): it is started on
   * 127.0.0.1 before the engine, the settings point at it, and it stops when the app quits. The
   * demo's settings and engine data live in its own directory, so the real ones are left alone.
   */
  demo?: boolean;
  /** Where the demo keeps its source and data (default: DESKTOP_DEMO_DIR). */
  demoDir?: string;
  /** Launched at login: start in the tray without opening the console window. */
  hidden?: boolean;
  /** Environment and home directory for the XDG autostart entry (default: this process's). */
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
}

export interface DesktopApp {
  readonly engine: Engine;
  readonly settings: Settings;
  readonly service: ConsoleService;
  /** The start-up update; it resolves with its record (failures are recorded, not thrown). */
  readonly startupRun: Promise<RunRecord | undefined>;
  /** The demo source, in demo mode. */
  readonly demoSource: DemoSource | undefined;
  /** The console window, once opened and until it is destroyed (closing only hides it). */
  consoleWindow(): WindowHandle | undefined;
  /** The settings window, likewise. */
  settingsWindow(): WindowHandle | undefined;
  /** Show the console window (creating it if needed) and bring it forward. */
  openConsole(): WindowHandle;
  /** Show the settings window (index.html#settings) and bring it forward. */
  openSettings(): WindowHandle;
  /** What the tray shows now. */
  trayModel(): TrayModel;
}

type WindowKind = 'console' | 'settings';

const WINDOW_SPECS: Record<WindowKind, Omit<WindowSpec, 'webPreferences'> & { hash?: string }> = {
  console: { title: 'Bulwark', width: 960, height: 640, minWidth: 560, minHeight: 360 },
  settings: { title: 'Bulwark Settings', width: 720, height: 600, minWidth: 520, minHeight: 400, hash: 'settings' },
};

/**
 * Start the app. Resolves with the running app, or undefined when this instance is leaving: another
 * instance holds the lock, or the engine could not start (the user has been told why).
 */
export async function startDesktopApp(adapter: DesktopAdapter, options: DesktopAppOptions): Promise<DesktopApp | undefined> {
  const log = options.log ?? ((line: string) => console.log(line));

  // One instance per user: a second engine on the same data directory would be refused by its lock
  // anyway. The running instance hears 'second-instance' and brings its console forward instead.
  if (!adapter.requestSingleInstanceLock()) {
    adapter.quit();
    return undefined;
  }

  const windows: Record<WindowKind, WindowHandle | undefined> = { console: undefined, settings: undefined };
  /** Set once the app quits: from then on closing a window really closes it. */
  let quitting = false;
  /** The IPC handlers are in place: windows may open. */
  let started = false;
  /** Someone launched the app again before it had started: open the console once it has. */
  let openWhenStarted = false;

  const openWindow = (kind: WindowKind): WindowHandle => {
    const existing = windows[kind];
    if (existing && !existing.isDestroyed()) {
      if (existing.isMinimized()) existing.restore();
      existing.show();
      existing.focus();
      return existing;
    }
    const { hash, ...spec } = WINDOW_SPECS[kind];
    const window = adapter.createWindow({
      ...spec,
      webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false, preload: options.preload },
    });
    // The app lives in the tray: closing a window hides it, until the app quits.
    window.onClose((request) => {
      if (quitting) return;
      request.preventDefault();
      window.hide();
    });
    window.onClosed(() => {
      if (windows[kind] === window) windows[kind] = undefined;
    });
    window
      .loadFile(options.page, hash ? { hash } : undefined)
      .catch((error: unknown) => log(`cannot load the ${kind} page ${options.page}: ${describeError(error)}`));
    windows[kind] = window;
    return window;
  };
  const openConsole = () => openWindow('console');
  const openSettings = () => openWindow('settings');

  adapter.on('before-quit', () => {
    quitting = true;
  });
  adapter.on('second-instance', () => {
    if (started) openConsole();
    else openWhenStarted = true;
  });
  // macOS: a click on the Dock icon.
  adapter.on('activate', () => {
    if (started) openConsole();
  });

  await adapter.whenReady();
  adapter.secureSession({ contentSecurityPolicy: CONTENT_SECURITY_POLICY });

  let demoSource: DemoSource | undefined;
  if (options.demo) {
    try {
      demoSource = await startDemoSource({ dir: options.demoDir ?? DESKTOP_DEMO_DIR, everySeconds: DEMO_EVERY_SECONDS, port: 0, log });
      log(`demo update source ${demoSource.url}, publishing new versions every ${DEMO_EVERY_SECONDS} s (files in ${demoSource.dir})`);
    } catch (error) {
      adapter.showError('Bulwark cannot start the demo', describeError(error));
      adapter.quit();
      return undefined;
    }
  }

  // In demo mode the settings and engine data are the demo's, not the user's.
  const settingsDir = demoSource ? path.join(demoSource.dir, 'desktop') : adapter.userDataDir();
  const dataDir = path.join(settingsDir, 'data');
  let settings: Settings;
  try {
    // The proxy password is stored encrypted with the OS account's key where the system has one.
    settings = Settings.open(settingsDir, adapter.secretCodec(), adapter.settingsStore);
    if (settings.recovered) log(settings.recovered);
    if (demoSource) useDemoSource(settings, demoSource);
  } catch (error) {
    return fail(error);
  }

  // ---- Start at login: the system is the truth; the setting follows it ----
  const loginItem = loginItemFor(adapter, { assetsDir: options.assets, ...(options.env ? { env: options.env } : {}), ...(options.homeDir ? { homeDir: options.homeDir } : {}) });
  /** Make the setting say what the system will do; returns that. */
  const reconcileStartAtLogin = (): boolean => {
    const actual = loginItem.isEnabled();
    if (settings.data.startAtLogin !== actual) {
      settings.set('startAtLogin', actual);
      log(`start at login is ${actual ? 'on' : 'off'} in ${loginItem.description}; the setting follows`);
    }
    return actual;
  };
  /** Apply a saved "start at login" to the system, read it back, and fail with the reason if it did not take. */
  const applyStartAtLogin = (enabled: boolean): void => {
    try {
      loginItem.setEnabled(enabled);
    } catch (error) {
      try {
        reconcileStartAtLogin();
      } catch (readError) {
        log(`cannot read whether Bulwark starts at login: ${describeError(readError)}`);
      }
      throw new SettingsError(`cannot turn start at login ${enabled ? 'on' : 'off'} (${loginItem.description}): ${describeError(error)}`);
    }
    if (reconcileStartAtLogin() !== enabled) {
      throw new SettingsError(`the system did not turn start at login ${enabled ? 'on' : 'off'} (${loginItem.description})`);
    }
  };
  try {
    reconcileStartAtLogin();
  } catch (error) {
    log(`cannot read whether Bulwark starts at login: ${describeError(error)}`);
  }

  // ---- Engine events: the tray and notifications (attached before the engine starts, to see the first run) ----
  let tray: TrayHandle | undefined;
  let shownTray = '';
  let running: BulwarkServer | undefined;
  /** The engine the tray follows: known from before its start-up update, while the rest of the server still starts. */
  let followed: Engine | undefined;
  const currentTrayModel = () =>
    trayModel(followed?.state ?? { type: 'idle' }, {
      startAtLogin: settings.data.startAtLogin,
      reminders: [...(followed?.status().reminders ?? []), ...(running?.service.agentReminders() ?? [])],
      ...(running ? { agents: running.overview.counts, headline: running.service.headline() } : {}),
    });
  const refreshTray = () => {
    if (!tray) return;
    const model = currentTrayModel();
    const key = JSON.stringify(model);
    if (key === shownTray) return;
    shownTray = key;
    tray.update(model);
  };
  // Listeners run inside the engine's emit: one that threw would fail the update. Contain them.
  const guarded =
    <A extends unknown[]>(what: string, listener: (...args: A) => void) =>
    (...args: A) => {
      try {
        listener(...args);
      } catch (error) {
        log(`${what} failed: ${describeError(error)}`);
      }
    };
  const followEngine = (engine: Engine) => {
    followed = engine;
    let previousRun = engine.history.last();
    engine.on('state', guarded('updating the tray', refreshTray));
    engine.on('network', guarded('updating the tray', refreshTray));
    engine.on(
      'run',
      guarded('notifying', (run: RunRecord) => {
        for (const notification of notificationsFor(run, previousRun, settings.data.notifications)) {
          adapter.showNotification(notification, () => void openConsole());
        }
        previousRun = run;
      }),
    );
  };
  const stopTrayFollowingSettings = settings.onChange(guarded('updating the tray', refreshTray));

  // ---- The server: engine, agents, control channel (the same assembly as `bulwark serve`) ----
  let server: BulwarkServer;
  try {
    // The engine locks the data directory as it starts (a running `bulwark serve` makes this fail)
    // and runs the start-up update, which is not awaited: the window should not wait for downloads.
    server = await startServer({ dataDir, settings, log, host: 'desktop', applyStartAtLogin, beforeStart: (engine) => followEngine(engine) });
  } catch (error) {
    stopTrayFollowingSettings();
    return fail(error);
  }
  running = server;
  server.overview.on('change', guarded('updating the tray', refreshTray));
  server.rollout.on('change', guarded('updating the tray', refreshTray));
  const { engine, service } = server;
  const startupRun: Promise<RunRecord | undefined> = server.startup.catch((error: unknown) => {
    log(`start-up update failed: ${describeError(error)}`);
    return undefined;
  });
  const runningDemo = demoSource;

  // ---- The console API over IPC, for our windows only ----
  const stopEvents = serveConsoleOverIpc(adapter, service, {
    windows: () => Object.values(windows).filter((window): window is WindowHandle => window !== undefined),
    appPageUrl: pathToFileURL(options.page).href,
    log,
  });

  // ---- The tray ----
  const toggleStartAtLogin = () => {
    const enabled = !settings.data.startAtLogin;
    try {
      settings.set('startAtLogin', enabled);
      applyStartAtLogin(enabled);
    } catch (error) {
      log(`start at login: ${describeError(error)}`);
      adapter.showError('Start at Login', describeError(error));
    }
  };
  const onTrayAction = (action: TrayAction) => {
    switch (action) {
      case 'update-now':
        engine.update('manual').catch((error: unknown) => log(`update failed: ${describeError(error)}`));
        return;
      case 'open-console':
        openConsole();
        return;
      case 'open-settings':
        openSettings();
        return;
      case 'toggle-start-at-login':
        toggleStartAtLogin();
        return;
      case 'quit':
        adapter.quit();
        return;
    }
  };
  const initialTray = currentTrayModel();
  shownTray = JSON.stringify(initialTray);
  tray = adapter.createTray(initialTray, guarded('tray action', onTrayAction));
  // After the tray, which follows the start-up update from its first component on.
  const demoAgents = demoSource ? await startDemoAgents(server, demoSource.dir, log) : undefined;

  adapter.onQuit(async () => {
    stopEvents();
    stopTrayFollowingSettings();
    tray?.destroy();
    try {
      await demoAgents?.stop();
      await server.stop();
    } finally {
      await runningDemo?.stop();
    }
  });

  started = true;
  if (!options.hidden || openWhenStarted) openConsole();

  return {
    engine,
    settings,
    service,
    startupRun,
    demoSource,
    consoleWindow: () => windows.console,
    settingsWindow: () => windows.settings,
    openConsole,
    openSettings,
    trayModel: currentTrayModel,
  };

  function fail(error: unknown): undefined {
    adapter.showError('Bulwark cannot start', describeError(error));
    void demoSource?.stop();
    adapter.quit();
    return undefined;
  }
}
