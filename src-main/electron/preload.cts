// Preload for the console and settings windows: exposes the console contract's ConsoleApi as
// `window.bulwark` through contextBridge, over IPC (ipcRenderer.invoke for calls, one channel per
// event), and nothing else. The page never sees ipcRenderer, an IPC event object or Electron.
//
// The windows are sandboxed, so Electron runs this as a CommonJS script that may require only
// 'electron' and a few Node built-ins: hence the .cts extension (compiled to out/preload/preload.cjs
// by tsconfig.preload.json) and a single file that imports nothing else at run time. The method and
// event names and the channel scheme therefore repeat src-main/console/contract.ts;
// test/electron-preload.test.ts checks them against it, by type and by running this file.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';

const METHODS = ['snapshot', 'updateNow', 'saveSettings', 'importTrustedRoot', 'testConnection', 'agents', 'updateAgentsNow', 'enrollmentToken', 'rollout', 'setAgentRing', 'changeComponent', 'agentDetails', 'updateAgentNow', 'forgetAgent'] as const;
const EVENTS = ['state', 'progress', 'run', 'changed', 'agents'] as const;

export type BridgeMethod = (typeof METHODS)[number];
export type BridgeEvent = (typeof EVENTS)[number];

/** contract.ts's ipcChannel, for the names above. */
const channel = {
  method: (method: BridgeMethod) => `bulwark:call:${method}`,
  event: (event: BridgeEvent) => `bulwark:event:${event}`,
};

function isOneOf<T extends string>(list: readonly T[], value: unknown): value is T {
  return typeof value === 'string' && (list as readonly string[]).includes(value);
}

/** What the page gets: ConsoleApi (contract.ts), checked at run time since the page is not trusted to type-check. */
export interface BulwarkBridge {
  call(method: BridgeMethod, params?: unknown): Promise<unknown>;
  on(event: BridgeEvent, listener: (payload: unknown) => void): () => void;
}

const bridge: BulwarkBridge = {
  call(method: unknown, params?: unknown): Promise<unknown> {
    if (!isOneOf(METHODS, method)) return Promise.reject(new Error(`unknown console method "${String(method)}"`));
    return ipcRenderer.invoke(channel.method(method), params);
  },

  on(event: unknown, listener: unknown): () => void {
    if (!isOneOf(EVENTS, event)) throw new Error(`unknown console event "${String(event)}"`);
    if (typeof listener !== 'function') throw new TypeError('a console event listener must be a function');
    const name = channel.event(event);
    // The page gets the payload only: never the IPC event, whose `sender` is ipcRenderer itself.
    const forward = (_event: IpcRendererEvent, payload: unknown) => {
      (listener as (payload: unknown) => void)(payload);
    };
    ipcRenderer.on(name, forward);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      ipcRenderer.removeListener(name, forward);
    };
  },
};

contextBridge.exposeInMainWorld('bulwark', bridge);
