// The only module that touches Electron. Everything else in the shell talks to the small
// DesktopAdapter below, so the wiring can be exercised in plain Node with a fake (no Electron binary)
// and the surface we rely on stays visible in one place.
import { app, BrowserWindow, dialog } from 'electron';

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

/** What the shell needs of a window. */
export interface WindowHandle {
  loadFile(file: string): Promise<void>;
  isDestroyed(): boolean;
  isMinimized(): boolean;
  restore(): void;
  show(): void;
  focus(): void;
  onClosed(listener: () => void): void;
}

export interface DesktopAdapter {
  /** False when another instance already runs; that one is told through 'second-instance'. */
  requestSingleInstanceLock(): boolean;
  whenReady(): Promise<void>;
  /** Per-user directory for the app's own files (settings, engine data). */
  userDataDir(): string;
  createWindow(spec: WindowSpec): WindowHandle;
  /** Another launch was attempted while this instance holds the lock. */
  on(event: 'second-instance', listener: () => void): void;
  /** Run `cleanup` when the app is about to exit; the exit waits for it to settle. */
  onQuit(cleanup: () => Promise<void>): void;
  /** A modal error for failures the user must know about (there may be no window yet). */
  showError(title: string, message: string): void;
  quit(): void;
}

export function electronAdapter(): DesktopAdapter {
  // Sandbox every renderer, whatever a future window forgets to ask for. Must precede 'ready'.
  app.enableSandbox();

  return {
    requestSingleInstanceLock: () => app.requestSingleInstanceLock(),
    whenReady: () => app.whenReady(),
    userDataDir: () => app.getPath('userData'),
    createWindow: (spec) => createElectronWindow(spec),
    on: (event, listener) => {
      app.on(event, () => listener());
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

function createElectronWindow(spec: WindowSpec): WindowHandle {
  const window = new BrowserWindow({
    title: spec.title,
    width: spec.width,
    height: spec.height,
    minWidth: spec.minWidth,
    minHeight: spec.minHeight,
    webPreferences: { ...spec.webPreferences, webviewTag: false },
  });
  // The console is one local page: it never opens windows or navigates anywhere else.
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  window.webContents.on('will-navigate', (event) => event.preventDefault());

  return {
    loadFile: (file) => window.loadFile(file),
    isDestroyed: () => window.isDestroyed(),
    isMinimized: () => window.isMinimized(),
    restore: () => window.restore(),
    show: () => window.show(),
    focus: () => window.focus(),
    onClosed: (listener) => {
      window.on('closed', () => listener());
    },
  };
}
