// The real desktop app, end to end, driven by Playwright's Electron support: it starts in demo mode on
// a throw-away profile, the console window opens and shows the component table filled from the demo
// source, the page has the preload's bridge and no Node, and the tray icon is up.
//
// It needs the Electron binary (downloaded by the electron package's install script from a host this
// machine may not reach). Without it the test is reported as skipped, with that reason in its title.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { _electron as electron, type ElectronApplication } from '@playwright/test';
import { afterEach, describe, expect, it } from 'vitest';
import { KNOWN_COMPONENTS } from '../src-main/engine/components.js';
import type { TrayModel } from '../src-main/electron/tray-menu.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** As scripts/launch.js decides: path.txt names the executable under node_modules/electron/dist. */
function findElectronBinary(): string | undefined {
  try {
    const relative = fs.readFileSync(path.join(ROOT, 'node_modules', 'electron', 'path.txt'), 'utf8').trim();
    const binary = path.join(ROOT, 'node_modules', 'electron', 'dist', relative);
    return relative && fs.statSync(binary).isFile() ? binary : undefined;
  } catch {
    return undefined;
  }
}

const electronBinary = findElectronBinary();
const noDisplay = process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY;
const skipReason = !electronBinary
  ? 'Electron binary not installed: node_modules/electron/path.txt, or the file it names under node_modules/electron/dist, is missing'
  : noDisplay
    ? 'no display to open windows on (set DISPLAY, e.g. run under xvfb-run)'
    : undefined;

// Say why in the run's output too, not only in the verbose reporter's list of tests.
if (skipReason) console.info(`test/electron-app.test.ts is skipped: ${skipReason}`);

/** The main-process hook main.ts installs when BULWARK_E2E=1. */
interface E2EHook {
  trays(): number;
  trayModel(): TrayModel | undefined;
}

let running: ElectronApplication | undefined;
const tempDirs: string[] = [];

afterEach(async () => {
  await running?.close();
  running = undefined;
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('desktop app end to end (Playwright _electron)', () => {
  it.skipIf(skipReason !== undefined)(
    skipReason ? `SKIPPED: ${skipReason}` : 'opens the console window with the component table, and puts up the tray icon',
    async () => {
      for (const file of ['out/main/electron/main.js', 'out/preload/preload.cjs', 'out/renderer/index.html', 'out/assets/tray-idle-16.png']) {
        if (!fs.existsSync(path.join(ROOT, file))) throw new Error(`${file} is missing: run \`npm run build\` first`);
      }
      const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-e2e-profile-'));
      const demoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-e2e-demo-'));
      tempDirs.push(profile, demoDir);

      running = await electron.launch({
        executablePath: electronBinary!,
        args: [ROOT],
        cwd: ROOT,
        env: { ...process.env, BULWARK_DEMO: '1', BULWARK_DEMO_DIR: demoDir, BULWARK_USER_DATA: profile, BULWARK_E2E: '1' } as Record<string, string>,
        timeout: 60_000,
      });
      const app = running;

      // The console window: our page, with the bridge and without Node.
      const page = await app.firstWindow({ timeout: 60_000 });
      expect(page.url()).toMatch(/^file:\/\/.*\/out\/renderer\/index\.html$/);
      expect(await page.evaluate(() => Object.keys((globalThis as { bulwark?: object }).bulwark ?? {}).sort())).toEqual(['call', 'on']);
      expect(await page.evaluate(() => typeof (globalThis as { require?: unknown }).require)).toBe('undefined');
      expect(await page.evaluate(() => typeof (globalThis as { process?: unknown }).process)).toBe('undefined');

      // The component table, filled by the install run from the demo source.
      await page.locator('table').first().waitFor({ state: 'visible', timeout: 60_000 });
      await expect.poll(() => page.locator('tbody tr').count(), { timeout: 60_000 }).toBe(KNOWN_COMPONENTS.length);
      for (const { name } of KNOWN_COMPONENTS) await page.getByRole('rowheader', { name }).waitFor({ timeout: 10_000 });

      // The tray icon is up and its menu is the app's.
      expect(await app.evaluate(() => (globalThis as unknown as { bulwarkE2E: E2EHook }).bulwarkE2E.trays())).toBe(1);
      const tray = await app.evaluate(() => (globalThis as unknown as { bulwarkE2E: E2EHook }).bulwarkE2E.trayModel());
      expect(tray?.menu.flatMap((item) => (item.type === 'separator' ? [] : [item.label]))).toEqual(
        expect.arrayContaining(['Update Now', 'Open Console', 'Settings…', 'Start at Login', 'Quit']),
      );

      // Closing the window hides it; the app keeps running in the tray.
      const windows = await app.evaluate(({ BrowserWindow }) => {
        const [window] = BrowserWindow.getAllWindows();
        window?.close();
        return BrowserWindow.getAllWindows().map((w) => ({ visible: w.isVisible(), destroyed: w.isDestroyed() }));
      });
      expect(windows).toEqual([{ visible: false, destroyed: false }]);
    },
    180_000,
  );
});
