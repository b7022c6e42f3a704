// Which icon files the tray uses, per platform and state (the files are drawn by scripts/make-icons.js
// and copied to out/assets by `npm run build:assets`). Pure, so it is tested without Electron.
import path from 'node:path';
import type { TrayIconState } from './tray-menu.js';

export const TRAY_ICON_STATES: readonly TrayIconState[] = ['idle', 'updating', 'failed'];

export interface TrayIconImage {
  /** One file per scale factor; the adapter builds one multi-resolution image from them. */
  readonly representations: readonly { readonly file: string; readonly scaleFactor: number }[];
  /** A macOS template image: black and alpha only, tinted by the system for light and dark menu bars. */
  readonly template: boolean;
}

export function trayIconImage(assetsDir: string, platform: NodeJS.Platform, state: TrayIconState): TrayIconImage {
  const file = (name: string) => path.join(assetsDir, name);
  switch (platform) {
    case 'darwin':
      return {
        representations: [
          { file: file(`tray-${state}Template.png`), scaleFactor: 1 },
          { file: file(`tray-${state}Template@2x.png`), scaleFactor: 2 },
        ],
        template: true,
      };
    case 'win32':
      // An ICO holds 16 to 48 px: Windows picks the size for the display's DPI itself.
      return { representations: [{ file: file(`tray-${state}.ico`), scaleFactor: 1 }], template: false };
    default:
      // Linux and the BSDs: coloured PNGs, 16 px with a 32 px representation for HiDPI panels.
      return {
        representations: [
          { file: file(`tray-${state}-16.png`), scaleFactor: 1 },
          { file: file(`tray-${state}-32.png`), scaleFactor: 2 },
        ],
        template: false,
      };
  }
}
