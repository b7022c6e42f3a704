// The Electron preload exposes the console API on window.bulwark (contextBridge); in a browser it
// is absent and the console talks HTTP instead.
import type { ConsoleApi } from '../../src-main/console/contract.js';

declare global {
  interface Window {
    readonly bulwark?: ConsoleApi;
  }
}

export {};
