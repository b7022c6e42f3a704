// Picks the transport: the preload's bridge in the desktop app, HTTP + server-sent events in a
// browser. Everything above this file sees only ConsoleApi and a ConnectionMonitor.
import type { ConsoleApi } from '../../src-main/console/contract.js';
import { alwaysConnected, type ConnectionMonitor } from './connection.js';
import { ConsoleApiError } from './errors.js';
import { HttpConsoleApi } from './http-api.js';

export interface ConsoleTransport {
  api: ConsoleApi;
  connection: ConnectionMonitor;
  kind: 'desktop' | 'browser';
}

export function chooseConsoleApi(win: Window = window): ConsoleTransport {
  if (win.bulwark) return { api: win.bulwark, connection: alwaysConnected, kind: 'desktop' };
  if (win.location.protocol === 'file:') {
    // Loaded from disk without the preload: there is no server to fall back to. Say so plainly.
    const missing = new ConsoleApiError('The desktop console bridge is missing (the preload script did not load)', 'unavailable');
    const api: ConsoleApi = { call: () => Promise.reject(missing), on: () => () => {} };
    return { api, connection: alwaysConnected, kind: 'desktop' };
  }
  const http = new HttpConsoleApi();
  win.addEventListener('pagehide', (event) => {
    if (!event.persisted) http.close();
  });
  return { api: http, connection: http, kind: 'browser' };
}
