// The only module that touches Electron. Everything else in the shell talks to the small
// DesktopAdapter below, so the wiring can be exercised in plain Node with a fake (no Electron binary)
// and the surface we rely on stays visible in one place.
import fs from 'node:fs';
import path from 'node:path';
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  nativeImage,
  Notification,
  safeStorage,
  session,
  Tray,
  type IpcMainInvokeEvent,
  type MenuItemConstructorOptions,
  type NativeImage,
} from 'electron';
import ElectronStore from 'electron-store';
import type { SecretCodec, SettingsData, SettingsStoreFactory } from '../engine/settings.js';
import type { DesktopNotification } from './notifications.js';
import type { IpcSenderInfo } from './security.js';
import { trayIconImage } from './tray-icons.js';
import type { TrayAction, TrayIconState, TrayModel } from './tray-menu.js';

/**
 * The renderer's isolation, fixed in the type: a window spec that weakens any of it does not compile.
 * contextIsolation keeps the page out of the preload's JavaScript world, sandbox takes Node and the OS
 * away from the renderer process, nodeIntegration: false keeps Node out of the page itself.
 */
export interface IsolatedWebPreferences {
  readonly contextIsolation: true;
  readonly sandbox: true;
  readonly nodeIntegration: false;
  /** Absolute path of the (CommonJS) preload script. */
  readonly preload: string;
}

export interface WindowSpec {
  readonly title: string;
  readonly width: number;
  readonly height: number;
  readonly minWidth: number;
  readonly minHeight: number;
  readonly webPreferences: IsolatedWebPreferences;
}

/** A window-close request the listener may refuse (the shell hides the window to the tray instead). */
export interface CloseRequest {
  preventDefault(): void;
}

/** What the shell needs of a window. */
export interface WindowHandle {
  /** Id of the window's WebContents: IPC senders are matched against it. */
  readonly webContentsId: number;
  /** Load a local file, optionally with a fragment (`settings` loads index.html#settings). */
  loadFile(file: string, options?: { hash?: string }): Promise<void>;
  /** URL of the page the window shows now. */
  url(): string;
  /** Send an IPC message to the window's page. */
  send(channel: string, payload: unknown): void;
  isDestroyed(): boolean;
  isMinimized(): boolean;
  isVisible(): boolean;
  restore(): void;
  show(): void;
  hide(): void;
  focus(): void;
  /** The user (or the system) asks to close the window; preventDefault() keeps it open. */
  onClose(listener: (request: CloseRequest) => void): void;
  /** The window is gone. */
  onClosed(listener: () => void): void;
}

export interface TrayHandle {
  update(model: TrayModel): void;
  destroy(): void;
}

export type AppEvent =
  /** Another launch was attempted while this instance holds the lock. */
  | 'second-instance'
  /** macOS: the Dock icon was clicked, or the app was launched again from Finder. */
  | 'activate'
  /** The app is about to quit (before its windows close). */
  | 'before-quit';

export interface DesktopAdapter {
  readonly platform: NodeJS.Platform;
  /** False when another instance already runs; that one is told through 'second-instance'. */
  requestSingleInstanceLock(): boolean;
  whenReady(): Promise<void>;
  /** Per-user directory for the app's own files (settings, engine data). */
  userDataDir(): string;
  /**
   * Encryption for secrets in the settings (the proxy password), tied to this user's OS account
   * (Electron's safeStorage: Keychain, DPAPI, the Secret Service/KWallet); undefined where the
   * system offers none. Only after ready.
   */
  secretCodec(): SecretCodec | undefined;
  /** The settings store: electron-store, with the same schema and options as conf in plain Node. */
  settingsStore: SettingsStoreFactory;
  /** Session-wide defences (after ready): a CSP response header on everything, permission requests denied. */
  secureSession(policy: { contentSecurityPolicy: string }): void;
  createWindow(spec: WindowSpec): WindowHandle;
  /** The tray icon and its menu; a click on an item calls onAction with its action. */
  createTray(model: TrayModel, onAction: (action: TrayAction) => void): TrayHandle;
  /** A system notification; onClick when the user clicks it. */
  showNotification(notification: DesktopNotification, onClick: () => void): void;
  /**
   * Answer IPC invocations on `channel` (ipcMain.handle). The handler gets who sent it and the
   * arguments; what it returns (or throws) goes back to the renderer's promise.
   */
  handle(channel: string, handler: (sender: IpcSenderInfo, args: unknown[]) => Promise<unknown>): void;
  /** Windows and macOS: whether the system starts the app at login. */
  getLoginItem(): boolean;
  /** Windows and macOS: make the system start the app at login, or not. */
  setLoginItem(enabled: boolean): void;
  /** The command line that starts this app at login (for the XDG autostart entry on Linux). */
  autostartCommand(): string[];
  on(event: AppEvent, listener: () => void): void;
  /** Run `cleanup` when the app is about to exit; the exit waits for it to settle. */
  onQuit(cleanup: () => Promise<void>): void;
  /** A modal error for failures the user must know about (there may be no window yet). */
  showError(title: string, message: string): void;
  quit(): void;
}

/** Argument that marks a launch at login: the app starts in the tray, without opening its window. */
export const HIDDEN_ARGUMENT = '--hidden';

export interface ElectronAdapterOptions {
  /** Directory of the built tray and app icons (out/assets). */
  assetsDir: string;
  /** Use this directory as userData (tests run the real app on a throw-away profile). */
  userDataDir?: string;
}

// Keep the tray and pending notifications referenced, or the garbage collector removes them.
const trays = new Set<Tray>();
const notifications = new Set<Notification>();

/** How many tray icons are up (the end-to-end test asks, through Playwright's evaluate). */
export function liveTrayCount(): number {
  return [...trays].filter((tray) => !tray.isDestroyed()).length;
}

export function electronAdapter(options: ElectronAdapterOptions): DesktopAdapter {
  // Sandbox every renderer, whatever a future window forgets to ask for. Must precede 'ready'.
  app.enableSandbox();
  // The single-instance lock is keyed on userData, so this must precede requestSingleInstanceLock.
  if (options.userDataDir) app.setPath('userData', path.resolve(options.userDataDir));
  // Windows shows toasts only for an app with an AppUserModelID (electron-builder.yml's appId).
  if (process.platform === 'win32') app.setAppUserModelId('dev.bulwark.app');

  // A tray app keeps running with no window open (ours hide rather than close, but say it anyway).
  app.on('window-all-closed', () => {});
  // Every WebContents, whoever creates it: no new windows, no navigation away, no <webview>.
  app.on('web-contents-created', (_event, contents) => {
    contents.setWindowOpenHandler(() => ({ action: 'deny' }));
    contents.on('will-navigate', (event) => event.preventDefault());
    contents.on('will-redirect', (event) => event.preventDefault());
    contents.on('will-attach-webview', (event) => event.preventDefault());
  });
  // `kill`, Ctrl+C in the terminal, the launcher forwarding a signal: quit the normal way, so the
  // engine stops cleanly and releases its data directory.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => app.quit());

  const beforeQuitListeners: (() => void)[] = [];
  const beforeQuit = () => {
    for (const listener of beforeQuitListeners) listener();
  };
  app.on('before-quit', beforeQuit);

  // Windows matches the login item by executable and arguments: query with what we register.
  // The arguments mark a launch that stays in the tray; from a checkout (`electron .`) the executable
  // is Electron itself and the app's path comes first.
  const loginItemQuery = () => ({
    path: process.execPath,
    args: [...(app.isPackaged ? [] : [app.getAppPath()]), HIDDEN_ARGUMENT],
  });

  const trayImage = (state: TrayIconState): NativeImage => {
    const { representations, template } = trayIconImage(options.assetsDir, process.platform, state);
    const [first, ...more] = representations;
    if (!first) return nativeImage.createEmpty();
    const image = nativeImage.createFromPath(first.file);
    for (const { file, scaleFactor } of more) image.addRepresentation({ scaleFactor, buffer: fs.readFileSync(file) });
    if (template) image.setTemplateImage(true);
    return image;
  };

  return {
    platform: process.platform,
    requestSingleInstanceLock: () => app.requestSingleInstanceLock(),
    whenReady: () => app.whenReady(),
    userDataDir: () => app.getPath('userData'),
    secretCodec: () =>
      safeStorage.isEncryptionAvailable()
        ? {
            encrypt: (plain) => safeStorage.encryptString(plain).toString('base64'),
            decrypt: (stored) => safeStorage.decryptString(Buffer.from(stored, 'base64')),
          }
        : undefined,
    settingsStore: (options) => new ElectronStore<SettingsData>({ ...options, name: 'settings' }),

    secureSession: ({ contentSecurityPolicy }) => {
      const ses = session.defaultSession;
      ses.webRequest.onHeadersReceived((details, callback) => {
        const headers = Object.fromEntries(
          Object.entries(details.responseHeaders ?? {}).filter(([name]) => name.toLowerCase() !== 'content-security-policy'),
        );
        callback({ responseHeaders: { ...headers, 'Content-Security-Policy': [contentSecurityPolicy] } });
      });
      ses.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
      ses.setPermissionCheckHandler(() => false);
      ses.setDevicePermissionHandler(() => false);
      ses.setDisplayMediaRequestHandler((_request, callback) => callback({}));
      ses.on('will-download', (event) => event.preventDefault());
    },

    createWindow: (spec) => {
      const window = createElectronWindow(spec);
      // Windows ends the session without 'before-quit': let the windows close then.
      window.on('session-end', beforeQuit);
      return windowHandle(window);
    },

    createTray: (model, onAction) => {
      const tray = new Tray(trayImage(model.icon));
      trays.add(tray);
      let icon = model.icon;
      const apply = (next: TrayModel) => {
        if (next.icon !== icon) {
          tray.setImage(trayImage(next.icon));
          icon = next.icon;
        }
        tray.setToolTip(next.tooltip);
        // Linux (AppIndicator) only picks up a changed menu through a new setContextMenu call.
        tray.setContextMenu(Menu.buildFromTemplate(next.menu.map((item) => menuItem(item, onAction))));
      };
      apply(model);
      // Windows: a left click opens the console, the right click shows the menu.
      if (process.platform === 'win32') tray.on('click', () => onAction('open-console'));
      return {
        update: (next) => {
          if (!tray.isDestroyed()) apply(next);
        },
        destroy: () => {
          trays.delete(tray);
          if (!tray.isDestroyed()) tray.destroy();
        },
      };
    },

    showNotification: ({ title, body }, onClick) => {
      if (!Notification.isSupported()) return;
      const notification = new Notification({
        title,
        body,
        ...(process.platform === 'darwin' ? {} : { icon: path.join(options.assetsDir, 'icon.png') }),
      });
      notifications.add(notification);
      const forget = () => notifications.delete(notification);
      notification.on('click', () => {
        forget();
        onClick();
      });
      notification.on('close', forget);
      notification.on('failed', forget);
      notification.show();
    },

    handle: (channel, handler) => {
      ipcMain.handle(channel, (event, ...args: unknown[]) => handler(senderInfo(event), args));
    },

    getLoginItem: () => app.getLoginItemSettings(loginItemQuery()).openAtLogin,
    setLoginItem: (enabled) => app.setLoginItemSettings({ openAtLogin: enabled, ...loginItemQuery() }),
    autostartCommand: () => {
      // An AppImage runs from a temporary mount: start the AppImage file itself.
      const executable = process.env.APPIMAGE || process.execPath;
      return [executable, ...(app.isPackaged ? [] : [app.getAppPath()]), HIDDEN_ARGUMENT];
    },

    on: (event, listener) => {
      if (event === 'before-quit') beforeQuitListeners.push(listener);
      else if (event === 'second-instance') app.on('second-instance', () => listener());
      else app.on('activate', () => listener());
    },
    onQuit: (cleanup) => {
      let phase: 'running' | 'cleaning' | 'done' = 'running';
      app.on('will-quit', (event) => {
        if (phase === 'done') return;
        // Hold the exit until cleanup settles (the engine releases its data-directory lock), then quit again.
        event.preventDefault();
        if (phase === 'cleaning') return;
        phase = 'cleaning';
        void cleanup()
          .catch((error: unknown) => console.error('cleanup before quit failed:', error))
          .finally(() => {
            phase = 'done';
            app.quit();
          });
      });
    },
    showError: (title, message) => dialog.showErrorBox(title, message),
    quit: () => app.quit(),
  };
}

/** Launched by the system at login: stay in the tray rather than open the console window. */
export function launchedAtLogin(argv: readonly string[] = process.argv): boolean {
  if (argv.includes(HIDDEN_ARGUMENT)) return true;
  if (process.platform !== 'darwin') return false;
  try {
    return app.getLoginItemSettings().wasOpenedAtLogin;
  } catch {
    return false;
  }
}

function senderInfo(event: IpcMainInvokeEvent): IpcSenderInfo {
  let frameUrl: string | null = null;
  let isMainFrame = false;
  try {
    // Null, or throwing on access, when the frame has navigated away or been destroyed.
    const frame = event.senderFrame;
    if (frame) {
      frameUrl = frame.url;
      isMainFrame = frame.parent === null;
    }
  } catch {
    frameUrl = null;
  }
  return { senderId: event.sender.id, frameUrl, isMainFrame };
}

function menuItem(item: TrayModel['menu'][number], onAction: (action: TrayAction) => void): MenuItemConstructorOptions {
  if (item.type === 'separator') return { type: 'separator' };
  const { action } = item;
  return {
    type: item.type,
    label: item.label,
    enabled: item.enabled,
    ...(item.type === 'checkbox' ? { checked: item.checked } : {}),
    ...(action ? { click: () => onAction(action) } : {}),
  };
}

function createElectronWindow(spec: WindowSpec): BrowserWindow {
  const window = new BrowserWindow({
    title: spec.title,
    width: spec.width,
    height: spec.height,
    minWidth: spec.minWidth,
    minHeight: spec.minHeight,
    // Shown once the page has painted, so the window never flashes white and empty.
    show: false,
    webPreferences: { ...spec.webPreferences, webviewTag: false },
  });
  window.once('ready-to-show', () => window.show());
  // The console is one local page: it never opens windows or navigates anywhere else.
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  window.webContents.on('will-navigate', (event) => event.preventDefault());
  return window;
}

function windowHandle(window: BrowserWindow): WindowHandle {
  const webContentsId = window.webContents.id;
  return {
    webContentsId,
    loadFile: (file, options) => window.loadFile(file, options?.hash ? { hash: options.hash } : undefined),
    url: () => (window.isDestroyed() ? '' : window.webContents.getURL()),
    send: (channel, payload) => {
      if (!window.isDestroyed()) window.webContents.send(channel, payload);
    },
    isDestroyed: () => window.isDestroyed(),
    isMinimized: () => window.isMinimized(),
    isVisible: () => window.isVisible(),
    restore: () => window.restore(),
    show: () => window.show(),
    hide: () => window.hide(),
    focus: () => window.focus(),
    onClose: (listener) => {
      window.on('close', (event) => listener(event));
    },
    onClosed: (listener) => {
      window.on('closed', () => listener());
    },
  };
}
