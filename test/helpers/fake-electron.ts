// A fake of the Electron API, as the shell sees it through DesktopAdapter (src-main/electron/adapter.ts):
// windows, the tray, notifications, IPC, login items and app events. It is the only fake in the
// desktop tests: the engine, settings, console service and files on disk are real.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { consolePaths, startDesktopApp, type DesktopApp, type DesktopAppOptions } from '../../src-main/electron/desktop-app.js';
import type { AppEvent, CloseRequest, DesktopAdapter, TrayHandle, WindowHandle, WindowSpec } from '../../src-main/electron/adapter.js';
import Conf from 'conf';
import { DEFAULT_SETTINGS, Settings, type SecretCodec, type SettingsData, type SettingsStoreFactory } from '../../src-main/engine/settings.js';
import type { DesktopNotification } from '../../src-main/electron/notifications.js';
import type { IpcSenderInfo } from '../../src-main/electron/security.js';
import type { TrayAction, TrayMenuItem, TrayModel } from '../../src-main/electron/tray-menu.js';

let nextWebContentsId = 1;

export class FakeWindow implements WindowHandle {
  readonly webContentsId = nextWebContentsId++;
  readonly loaded: { file: string; hash: string | undefined }[] = [];
  readonly sent: { channel: string; payload: unknown }[] = [];
  minimized = false;
  visible = true;
  destroyed = false;
  focusCount = 0;
  restoreCount = 0;
  showCount = 0;
  private readonly closeListeners: ((request: CloseRequest) => void)[] = [];
  private readonly closedListeners: (() => void)[] = [];

  constructor(readonly spec: WindowSpec) {}

  loadFile(file: string, options?: { hash?: string }): Promise<void> {
    this.loaded.push({ file, hash: options?.hash });
    return Promise.resolve();
  }
  /** What Chromium reports: the file: URL of the loaded page, with its fragment. */
  url(): string {
    const last = this.loaded.at(-1);
    if (!last) return '';
    const url = new URL(`file://${last.file.startsWith('/') ? '' : '/'}${last.file.replaceAll('\\', '/')}`);
    if (last.hash) url.hash = last.hash;
    return url.href;
  }
  send(channel: string, payload: unknown): void {
    this.sent.push({ channel, payload });
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  isMinimized(): boolean {
    return this.minimized;
  }
  isVisible(): boolean {
    return this.visible;
  }
  restore(): void {
    this.restoreCount++;
    this.minimized = false;
  }
  show(): void {
    this.showCount++;
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  focus(): void {
    this.focusCount++;
  }
  onClose(listener: (request: CloseRequest) => void): void {
    this.closeListeners.push(listener);
  }
  onClosed(listener: () => void): void {
    this.closedListeners.push(listener);
  }

  /** What Electron does when the user clicks the window's close button: 'close', then (unless prevented) 'closed'. */
  userClose(): 'kept' | 'closed' {
    let prevented = false;
    for (const listener of this.closeListeners) listener({ preventDefault: () => (prevented = true) });
    if (prevented) return 'kept';
    this.destroy();
    return 'closed';
  }
  /** The window is gone without asking (its renderer crashed and it was torn down, say). */
  destroy(): void {
    this.destroyed = true;
    this.visible = false;
    for (const listener of this.closedListeners) listener();
  }
}

export class FakeTray implements TrayHandle {
  readonly models: TrayModel[] = [];
  destroyed = false;

  constructor(
    model: TrayModel,
    private readonly onAction: (action: TrayAction) => void,
  ) {
    this.models.push(model);
  }
  update(model: TrayModel): void {
    this.models.push(model);
  }
  destroy(): void {
    this.destroyed = true;
  }

  get model(): TrayModel {
    return this.models.at(-1)!;
  }
  /** The menu item with this label. */
  item(label: string): Exclude<TrayMenuItem, { type: 'separator' }> {
    const item = this.model.menu.find((i) => i.type !== 'separator' && i.label === label);
    if (!item || item.type === 'separator') throw new Error(`the tray menu has no "${label}"; it has ${this.labels().join(', ')}`);
    return item;
  }
  labels(): string[] {
    return this.model.menu.map((i) => (i.type === 'separator' ? '---' : i.label));
  }
  /** What Electron does when the user clicks a menu item. */
  click(label: string): void {
    const item = this.item(label);
    if (!item.enabled) throw new Error(`"${label}" is disabled`);
    if (!('action' in item) || !item.action) throw new Error(`"${label}" does nothing`);
    this.onAction(item.action);
  }
}

type IpcHandler = (sender: IpcSenderInfo, args: unknown[]) => Promise<unknown>;

export class FakeDesktop implements DesktopAdapter {
  readonly windows: FakeWindow[] = [];
  readonly trays: FakeTray[] = [];
  readonly notifications: (DesktopNotification & { click: () => void })[] = [];
  readonly errors: { title: string; message: string }[] = [];
  readonly ipcHandlers = new Map<string, IpcHandler>();
  securedWith: { contentSecurityPolicy: string } | undefined;
  /** The system's login item (Windows, macOS). */
  loginItem = false;
  /** Make setLoginItem fail like a system that refuses (unsigned macOS app, policy). */
  loginItemRefuses = false;
  quitCount = 0;
  private readonly listeners = new Map<AppEvent, (() => void)[]>();
  private quitCleanups: (() => Promise<void>)[] = [];

  constructor(
    private readonly userData: string,
    readonly options: { lockGranted?: boolean; platform?: NodeJS.Platform; encryption?: boolean } = {},
  ) {}

  get platform(): NodeJS.Platform {
    return this.options.platform ?? 'linux';
  }
  requestSingleInstanceLock(): boolean {
    return this.options.lockGranted ?? true;
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
  userDataDir(): string {
    return this.userData;
  }
  /** electron-store's stand-in: electron-store is conf with Electron's paths, and it needs Electron to load. */
  settingsStore: SettingsStoreFactory = (options) => new Conf<SettingsData>({ ...options, configName: 'settings', projectName: 'bulwark' });
  /** safeStorage's stand-in: reversible, and visibly not the plain text. */
  secretCodec(): SecretCodec | undefined {
    if (!this.options.encryption) return undefined;
    return {
      encrypt: (plain) => Buffer.from(`fake-os-key:${plain}`).toString('base64'),
      decrypt: (stored) => Buffer.from(stored, 'base64').toString('utf8').replace(/^fake-os-key:/, ''),
    };
  }
  secureSession(policy: { contentSecurityPolicy: string }): void {
    this.securedWith = policy;
  }
  createWindow(spec: WindowSpec): WindowHandle {
    const window = new FakeWindow(spec);
    this.windows.push(window);
    return window;
  }
  createTray(model: TrayModel, onAction: (action: TrayAction) => void): TrayHandle {
    const tray = new FakeTray(model, onAction);
    this.trays.push(tray);
    return tray;
  }
  showNotification(notification: DesktopNotification, onClick: () => void): void {
    this.notifications.push({ ...notification, click: onClick });
  }
  handle(channel: string, handler: IpcHandler): void {
    if (this.ipcHandlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
    this.ipcHandlers.set(channel, handler);
  }
  getLoginItem(): boolean {
    return this.loginItem;
  }
  setLoginItem(enabled: boolean): void {
    if (!this.loginItemRefuses) this.loginItem = enabled;
  }
  autostartCommand(): string[] {
    return ['/opt/Bulwark/bulwark', '--hidden'];
  }
  on(event: AppEvent, listener: () => void): void {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
  }
  onQuit(cleanup: () => Promise<void>): void {
    this.quitCleanups.push(cleanup);
  }
  showError(title: string, message: string): void {
    this.errors.push({ title, message });
  }
  quit(): void {
    this.quitCount++;
    this.emit('before-quit');
  }

  emit(event: AppEvent): void {
    for (const listener of this.listeners.get(event) ?? []) listener();
  }
  /** What Electron does when the user launches the app again. */
  launchSecondInstance(): void {
    this.emit('second-instance');
  }
  /** What ipcMain does with an invoke: run the channel's handler for this sender. */
  invoke(channel: string, sender: IpcSenderInfo, ...args: unknown[]): Promise<unknown> {
    const handler = this.ipcHandlers.get(channel);
    if (!handler) return Promise.reject(new Error(`No handler registered for '${channel}'`));
    return handler(sender, args);
  }
  /** An invoke from one of our windows, as Electron describes its sender. */
  invokeFrom(window: FakeWindow, channel: string, ...args: unknown[]): Promise<unknown> {
    return this.invoke(channel, { senderId: window.webContentsId, frameUrl: window.url(), isMainFrame: true }, ...args);
  }
  /** What Electron does on quit: 'before-quit', the windows close, then the will-quit cleanups run and are awaited. */
  async quitAndWait(): Promise<void> {
    this.quit();
    for (const window of this.windows) if (!window.destroyed) window.userClose();
    await this.runQuitCleanups();
  }
  async runQuitCleanups(): Promise<void> {
    const cleanups = this.quitCleanups;
    this.quitCleanups = [];
    await Promise.all(cleanups.map((cleanup) => cleanup()));
  }
  get tray(): FakeTray {
    const tray = this.trays.at(-1);
    if (!tray) throw new Error('no tray was created');
    return tray;
  }
}

// ---- Harness: start the real desktop wiring on the fake, in throw-away directories ----

export const paths = consolePaths(path.join(path.sep, 'app', 'out', 'main', 'electron'));

export interface Started {
  desktop: FakeDesktop;
  app: DesktopApp | undefined;
  userData: string;
  /** XDG_CONFIG_HOME given to the app (Linux autostart). */
  configHome: string;
  logs: string[];
}

const running: Started[] = [];
const tempDirs: string[] = [];

export function tempDir(prefix = 'bulwark-shell-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/**
 * A fresh userData whose settings serve agents on loopback (any free port), not on every address at
 * the default port: test apps run side by side and must not be reachable from outside.
 */
function withAgentsOnLoopback(userData: string): string {
  Settings.open(userData).set('distribution', { ...DEFAULT_SETTINGS.distribution, listen: ['127.0.0.1:0'] });
  return userData;
}

/** Start the desktop app on a fake Electron; by default on Linux, with its own userData and XDG_CONFIG_HOME. */
export async function startOnFake(
  options: { desktop?: FakeDesktop; userData?: string; configHome?: string; app?: Partial<DesktopAppOptions> } = {},
): Promise<Started & { app: DesktopApp }> {
  const started = await startOnFakeMaybe(options);
  if (!started.app) throw new Error(`the app did not start: ${JSON.stringify(started.desktop.errors)}`);
  return started as Started & { app: DesktopApp };
}

export async function startOnFakeMaybe(
  options: { desktop?: FakeDesktop; userData?: string; configHome?: string; app?: Partial<DesktopAppOptions> } = {},
): Promise<Started> {
  const userData = options.userData ?? withAgentsOnLoopback(tempDir());
  const configHome = options.configHome ?? tempDir('bulwark-xdg-');
  const desktop = options.desktop ?? new FakeDesktop(userData);
  const logs: string[] = [];
  const app = await startDesktopApp(desktop, {
    ...paths,
    log: (line) => logs.push(line),
    env: { XDG_CONFIG_HOME: configHome },
    homeDir: tempDir('bulwark-home-'),
    ...options.app,
  });
  const started = { desktop, app, userData, configHome, logs };
  running.push(started);
  return started;
}

/** Quit every app started by the test (waiting for its start-up run), then remove the temporary directories. */
export async function cleanUp(): Promise<void> {
  for (const { desktop, app } of running.splice(0)) {
    await app?.startupRun;
    await desktop.quitAndWait();
  }
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
