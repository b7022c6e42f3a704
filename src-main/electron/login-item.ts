// "Start at login", whatever the platform: Electron's login items on Windows and macOS (through the
// adapter), an XDG autostart entry elsewhere (autostart.ts, plain Node).
import os from 'node:os';
import path from 'node:path';
import type { DesktopAdapter } from './adapter.js';
import { autostartFile, isAutostartEnabled, setAutostart } from './autostart.js';

export interface LoginItem {
  /** What the system will do at the next login. */
  isEnabled(): boolean;
  setEnabled(enabled: boolean): void;
  /** Where it lives, for messages. */
  readonly description: string;
}

export interface LoginItemOptions {
  /** Environment for the XDG directories (XDG_CONFIG_HOME). */
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  /** Directory of the built assets, for the autostart entry's icon. */
  assetsDir?: string;
}

export function loginItemFor(adapter: DesktopAdapter, options: LoginItemOptions = {}): LoginItem {
  if (adapter.platform === 'win32' || adapter.platform === 'darwin') {
    return {
      isEnabled: () => adapter.getLoginItem(),
      setEnabled: (enabled) => adapter.setLoginItem(enabled),
      description: adapter.platform === 'darwin' ? 'the macOS login items' : 'the Windows startup apps',
    };
  }
  const file = autostartFile(options.env ?? process.env, options.homeDir ?? os.homedir());
  return {
    isEnabled: () => isAutostartEnabled(file),
    setEnabled: (enabled) =>
      setAutostart(file, enabled, {
        command: adapter.autostartCommand(),
        ...(options.assetsDir ? { icon: path.join(options.assetsDir, 'icon.png') } : {}),
      }),
    description: file,
  };
}
