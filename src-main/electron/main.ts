// Electron main-process entry (package.json "main": out/main/electron/main.js). The wiring lives in
// desktop-app.ts so it can be tested without Electron; this file binds it to the real API and to the
// built file layout.
import { electronAdapter } from './adapter.js';
import { consolePaths, startDesktopApp } from './desktop-app.js';

const adapter = electronAdapter();
startDesktopApp(adapter, consolePaths(import.meta.dirname)).catch((error: unknown) => {
  console.error('Bulwark failed to start:', error);
  process.exitCode = 1;
  adapter.quit();
});
