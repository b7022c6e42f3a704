// The console contract: every method and event the console (Svelte renderer) can use, with its
// types. The Electron preload (contextBridge + IPC) and the browser console (HTTP + server-sent
// events) both implement exactly this, so the renderer never knows which one it talks to.
//
// Types only: this file is imported by src-main and by src-renderer alike, and must not import
// anything that exists only in Node.
export const CONSOLE_METHODS = ['snapshot', 'updateNow', 'saveSettings', 'importTrustedRoot', 'testConnection'];
export const CONSOLE_EVENTS = ['state', 'progress', 'run', 'changed'];
/** IPC channel names: one per method and one per event, derived so they cannot drift. */
export const ipcChannel = {
    method: (method) => `bulwark:call:${method}`,
    event: (event) => `bulwark:event:${event}`,
};
