// Preload for the console window. The window is sandboxed, so Electron runs this as a CommonJS
// script that may require only 'electron' and a few Node built-ins: hence the .cts extension (compiled
// to out/preload/preload.cjs by tsconfig.preload.json) and a single file that imports nothing but
// types from elsewhere.
//
// The console API (ConsoleApi, src-renderer/console-api.ts) will be exposed here through
// contextBridge over IPC. Until the main process serves it, nothing is exposed and the renderer uses
// its placeholder, which reports no components.
export {};
