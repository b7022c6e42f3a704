// Electron main-process entry (package.json "main": out/main/electron/main.js). The wiring lives in
// desktop-app.ts so it can be tested without Electron; this file binds it to the real API, the built
// file layout and the command line:
//   BULWARK_DEMO=1 or --demo   run against the built-in demo update source
//   BULWARK_DEMO_DIR=DIR       where the demo keeps its files (default: under the OS temp directory)
//   --hidden                   launched at login: stay in the tray (see adapter.ts)
//   BULWARK_USER_DATA=DIR      use DIR as the profile (the end-to-end test uses a throw-away one)
//   BULWARK_E2E=1              let the end-to-end test look at the tray (globalThis.bulwarkE2E, main process only)
import { electronAdapter, launchedAtLogin, liveTrayCount } from './adapter.js';
import { consolePaths, startDesktopApp, type DesktopApp } from './desktop-app.js';

const paths = consolePaths(import.meta.dirname);
const { BULWARK_USER_DATA: userDataDir, BULWARK_DEMO_DIR: demoDir } = process.env;
const adapter = electronAdapter({ assetsDir: paths.assets, ...(userDataDir ? { userDataDir } : {}) });
const demo = process.env.BULWARK_DEMO === '1' || process.argv.includes('--demo');

let running: DesktopApp | undefined;
if (process.env.BULWARK_E2E === '1') {
  Object.assign(globalThis, { bulwarkE2E: { trays: liveTrayCount, trayModel: () => running?.trayModel() } });
}

startDesktopApp(adapter, { ...paths, demo, ...(demoDir ? { demoDir } : {}), hidden: launchedAtLogin() }).then(
  (app) => {
    running = app;
  },
  (error: unknown) => {
    console.error('Bulwark failed to start:', error);
    process.exitCode = 1;
    adapter.quit();
  },
);
