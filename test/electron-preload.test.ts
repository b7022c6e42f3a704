// The preload (src-main/electron/preload.cts), run for real in a fresh VM context with a fake of the
// two Electron modules it uses (contextBridge, ipcRenderer), and checked against the console contract.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import ts from 'typescript';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { CONSOLE_EVENTS, CONSOLE_METHODS, ipcChannel, type ConsoleEvent, type ConsoleMethod } from '../src-main/console/contract.js';
import type { BridgeEvent, BridgeMethod } from '../src-main/electron/preload.cjs';

const SOURCE = path.join(import.meta.dirname, '..', 'src-main', 'electron', 'preload.cts');

type Listener = (event: unknown, ...args: unknown[]) => void;

class FakeIpcRenderer {
  readonly invocations: { channel: string; args: unknown[] }[] = [];
  readonly listeners = new Map<string, Listener[]>();

  invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    this.invocations.push({ channel, args });
    return Promise.resolve({ answered: channel });
  }
  on(channel: string, listener: Listener): this {
    this.listeners.set(channel, [...(this.listeners.get(channel) ?? []), listener]);
    return this;
  }
  removeListener(channel: string, listener: Listener): this {
    this.listeners.set(channel, (this.listeners.get(channel) ?? []).filter((l) => l !== listener));
    return this;
  }
  /** What Electron does when the main process sends on `channel`. */
  emit(channel: string, payload: unknown): void {
    const event = { sender: this, senderId: 0 };
    for (const listener of this.listeners.get(channel) ?? []) listener(event, payload);
  }
}

interface Bridge {
  call(method: unknown, params?: unknown): Promise<unknown>;
  on(event: unknown, listener: unknown): () => void;
}

/** Compile the preload as tsconfig.preload.json does (CommonJS) and run it as a sandboxed preload runs. */
function loadPreload() {
  const { outputText } = ts.transpileModule(fs.readFileSync(SOURCE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    fileName: 'preload.cts',
  });
  const ipcRenderer = new FakeIpcRenderer();
  const exposed: { key: string; api: unknown }[] = [];
  const required: string[] = [];
  const electron = {
    contextBridge: { exposeInMainWorld: (key: string, api: unknown) => exposed.push({ key, api }) },
    ipcRenderer,
  };
  const sandboxRequire = (id: string) => {
    required.push(id);
    if (id !== 'electron') throw new Error(`a sandboxed preload cannot require "${id}"`);
    return electron;
  };
  const module = { exports: {} };
  vm.runInNewContext(`(function (require, module, exports) {${outputText}\n})`, { Promise, Error, TypeError, String })(sandboxRequire, module, module.exports);
  return { ipcRenderer, exposed, required };
}

describe('preload', () => {
  it('names exactly the contract’s methods and events (checked by the compiler)', () => {
    expectTypeOf<BridgeMethod>().toEqualTypeOf<ConsoleMethod>();
    expectTypeOf<BridgeEvent>().toEqualTypeOf<ConsoleEvent>();
  });

  it('requires only electron and exposes one object, window.bulwark, with call and on only', () => {
    const { exposed, required } = loadPreload();
    expect(required).toEqual(['electron']);
    expect(exposed.map((e) => e.key)).toEqual(['bulwark']);
    const api = exposed[0]!.api as Record<string, unknown>;
    expect(Object.keys(api).sort()).toEqual(['call', 'on']);
    expect(typeof api.call).toBe('function');
    expect(typeof api.on).toBe('function');
  });

  it('call(method, params) invokes the contract’s channel for every method', async () => {
    const { exposed, ipcRenderer } = loadPreload();
    const api = exposed[0]!.api as Bridge;
    for (const method of CONSOLE_METHODS) {
      await expect(api.call(method, { some: 'params' })).resolves.toEqual({ answered: ipcChannel.method(method) });
    }
    expect(ipcRenderer.invocations).toEqual(CONSOLE_METHODS.map((m) => ({ channel: ipcChannel.method(m), args: [{ some: 'params' }] })));
  });

  it('refuses methods outside the contract without touching IPC', async () => {
    const { exposed, ipcRenderer } = loadPreload();
    const api = exposed[0]!.api as Bridge;
    for (const method of ['shutdown', 'constructor', '__proto__', '', 42, undefined]) {
      await expect(api.call(method)).rejects.toThrow(/unknown console method/);
    }
    expect(ipcRenderer.invocations).toEqual([]);
  });

  it('on(event, listener) delivers the payload only, for every event, and returns an unsubscribe function', () => {
    const { exposed, ipcRenderer } = loadPreload();
    const api = exposed[0]!.api as Bridge;
    for (const event of CONSOLE_EVENTS) {
      const received: unknown[][] = [];
      const unsubscribe = api.on(event, (...args: unknown[]) => received.push(args));
      ipcRenderer.emit(ipcChannel.event(event), { n: 1 });
      // Never the IPC event (its sender is ipcRenderer itself).
      expect(received).toEqual([[{ n: 1 }]]);

      unsubscribe();
      unsubscribe();
      ipcRenderer.emit(ipcChannel.event(event), { n: 2 });
      expect(received).toHaveLength(1);
      expect(ipcRenderer.listeners.get(ipcChannel.event(event))).toEqual([]);
    }
  });

  it('unsubscribing one listener leaves the others', () => {
    const { exposed, ipcRenderer } = loadPreload();
    const api = exposed[0]!.api as Bridge;
    const a: unknown[] = [];
    const b: unknown[] = [];
    const offA = api.on('state', (p: unknown) => a.push(p));
    api.on('state', (p: unknown) => b.push(p));
    offA();
    ipcRenderer.emit(ipcChannel.event('state'), { type: 'idle' });
    expect(a).toEqual([]);
    expect(b).toEqual([{ type: 'idle' }]);
  });

  it('refuses events outside the contract and listeners that are not functions', () => {
    const { exposed, ipcRenderer } = loadPreload();
    const api = exposed[0]!.api as Bridge;
    expect(() => api.on('ipc-message', () => {})).toThrow(/unknown console event/);
    expect(() => api.on('state', 'alert(1)')).toThrow(/must be a function/);
    expect(ipcRenderer.listeners.size).toBe(0);
  });
});
