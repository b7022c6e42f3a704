// The tray: its model per engine state (pure), its icon files per platform, and its actions wired to
// the real engine, windows and settings through the fake adapter.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { inflateSync as zlibInflate } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunRecord } from '../src-main/engine/history.js';
import type { EngineState } from '../src-main/engine/state.js';
import { TRAY_ICON_STATES, trayIconImage } from '../src-main/electron/tray-icons.js';
import { statusLine, trayModel } from '../src-main/electron/tray-menu.js';
import { cleanUp, FakeDesktop, paths, startOnFake, tempDir } from './helpers/fake-electron.js';

afterEach(cleanUp);

const ASSETS = path.join(import.meta.dirname, '..', 'assets');
const at = '2025-11-26T10:00:00.000Z';

describe('tray model (pure)', () => {
  it('idle: "Up to date", the idle icon, and the full menu in order', () => {
    expect(trayModel({ type: 'idle' }, { startAtLogin: false })).toEqual({
      icon: 'idle',
      tooltip: 'Bulwark: Up to date',
      menu: [
        { type: 'normal', label: 'Up to date', enabled: false },
        { type: 'normal', label: 'Update Now', enabled: true, action: 'update-now' },
        { type: 'normal', label: 'Open Console', enabled: true, action: 'open-console' },
        { type: 'normal', label: 'Settings…', enabled: true, action: 'open-settings' },
        { type: 'checkbox', label: 'Start at Login', enabled: true, checked: false, action: 'toggle-start-at-login' },
        { type: 'separator' },
        { type: 'normal', label: 'Quit', enabled: true, action: 'quit' },
      ],
    });
  });

  it('the Start at Login checkbox shows the setting', () => {
    const item = trayModel({ type: 'idle' }, { startAtLogin: true }).menu.find((i) => i.type === 'checkbox');
    expect(item).toMatchObject({ label: 'Start at Login', checked: true });
  });

  it.each<[EngineState, string]>([
    [{ type: 'checking', trigger: 'schedule' }, 'Checking for updates…'],
    [{ type: 'downloading', trigger: 'manual', component: 'virus-pattern', index: 2, total: 7, method: 'incremental', bytes: 1000 }, 'Updating 3 of 7: Virus Pattern'],
    [{ type: 'applying', trigger: 'startup', component: 'scan-engine', index: 6, total: 7, bytes: 1000 }, 'Updating 7 of 7: Scan Engine'],
    [{ type: 'downloading', trigger: 'manual', component: 'new-thing-pattern', index: 0, total: 1, method: 'full', bytes: 0 }, 'Updating 1 of 1: New Thing Pattern'],
    [{ type: 'distributing', trigger: 'manual' }, 'Handing the components to the agents…'],
  ])('updating (%j): "%s", the updating icon, Update Now disabled', (state, status) => {
    const model = trayModel(state, { startAtLogin: false });
    expect(model.icon).toBe('updating');
    expect(model.menu[0]).toEqual({ type: 'normal', label: status, enabled: false });
    expect(model.tooltip).toBe(`Bulwark: ${status}`);
    expect(model.menu[1]).toMatchObject({ label: 'Update Now', enabled: false });
  });

  it('failed: "Failed: <reason>", the failed icon, Update Now enabled', () => {
    const model = trayModel({ type: 'failed', error: 'cannot reach updates.example.com', code: 'ERR_NETWORK', at }, { startAtLogin: false });
    expect(model.icon).toBe('failed');
    expect(model.menu[0]).toEqual({ type: 'normal', label: 'Failed: cannot reach updates.example.com', enabled: false });
    expect(model.tooltip).toBe('Bulwark: Failed: cannot reach updates.example.com');
    expect(model.menu[1]).toMatchObject({ label: 'Update Now', enabled: true });
  });

  it('keeps a long or multi-line failure to one short menu line and a tooltip Windows can show', () => {
    const error = `the catalogue signature does not verify ${'x'.repeat(300)}\nsecond line`;
    const model = trayModel({ type: 'failed', error, at }, { startAtLogin: false });
    const status = statusLine({ type: 'failed', error, at });
    expect(status.length).toBeLessThanOrEqual(80);
    expect(status).toMatch(/^Failed: the catalogue signature does not verify x+…$/);
    expect(model.tooltip.length).toBeLessThanOrEqual(127);
    expect(model.tooltip).not.toContain('\n');
    expect(statusLine({ type: 'failed', error: 'short\nand more', at })).toBe('Failed: short');
  });
});

/** Width and height from a PNG's IHDR. */
function pngSize(file: string): [number, number] {
  const bytes = fs.readFileSync(file);
  expect(bytes.subarray(1, 4).toString('ascii')).toBe('PNG');
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

/** The sizes an ICO holds (0 in the directory means 256). */
function icoSizes(file: string): number[] {
  const bytes = fs.readFileSync(file);
  expect(bytes.readUInt16LE(2)).toBe(1);
  return Array.from({ length: bytes.readUInt16LE(4) }, (_, i) => bytes[6 + 16 * i] || 256);
}

describe('tray icons', () => {
  it.each(TRAY_ICON_STATES)('%s: macOS gets 16 and 32 px black-and-alpha template images', (state) => {
    const image = trayIconImage(ASSETS, 'darwin', state);
    expect(image.template).toBe(true);
    expect(image.representations.map((r) => [path.basename(r.file), r.scaleFactor])).toEqual([
      [`tray-${state}Template.png`, 1],
      [`tray-${state}Template@2x.png`, 2],
    ]);
    for (const { file, scaleFactor } of image.representations) {
      expect(pngSize(file)).toEqual([16 * scaleFactor, 16 * scaleFactor]);
      // Template images: black (or clear) pixels only; the system tints them.
      const raw = decodeRgba(file);
      for (let i = 0; i < raw.length; i += 4) if (raw[i + 3]! > 0) expect([raw[i], raw[i + 1], raw[i + 2]]).toEqual([0, 0, 0]);
    }
  });

  it.each(TRAY_ICON_STATES)('%s: Windows gets an ICO with 16 to 48 px', (state) => {
    const image = trayIconImage(ASSETS, 'win32', state);
    expect(image).toEqual({ representations: [{ file: path.join(ASSETS, `tray-${state}.ico`), scaleFactor: 1 }], template: false });
    expect(icoSizes(image.representations[0]!.file)).toEqual([16, 24, 32, 48]);
  });

  it.each(TRAY_ICON_STATES)('%s: Linux gets coloured PNGs at 16 and 32 px', (state) => {
    const image = trayIconImage(ASSETS, 'linux', state);
    expect(image.template).toBe(false);
    expect(image.representations.map(({ file, scaleFactor }) => [path.basename(file), scaleFactor, pngSize(file)])).toEqual([
      [`tray-${state}-16.png`, 1, [16, 16]],
      [`tray-${state}-32.png`, 2, [32, 32]],
    ]);
  });

  it('each state has its own picture', () => {
    for (const platform of ['darwin', 'win32', 'linux'] as const) {
      const contents = TRAY_ICON_STATES.map((state) => fs.readFileSync(trayIconImage(ASSETS, platform, state).representations[0]!.file).toString('base64'));
      expect(new Set(contents).size).toBe(TRAY_ICON_STATES.length);
    }
  });
});

describe('tray actions (fake Electron, real engine)', () => {
  it('shows the installation in one line: a fresh install (no source yet) says how to begin, not a failure', async () => {
    const { desktop, app } = await startOnFake();
    await app.startupRun;
    expect(desktop.trays).toHaveLength(1);
    expect(desktop.tray.model.icon).toBe('idle');
    expect(desktop.tray.item(desktop.tray.labels()[0]!).label).toBe('Set up: choose an update source');
    expect(desktop.tray.model.tooltip).toBe('Bulwark: Set up: choose an update source');
  });

  it('Update Now runs a manual update on the engine, and the tray follows it', async () => {
    const { desktop, app } = await startOnFake();
    await app.startupRun;
    const before = desktop.tray.models.length;

    const finished = once(app.engine, 'run') as Promise<[RunRecord]>;
    desktop.tray.click('Update Now');
    expect(app.engine.busy).toBe(true);
    const [record] = await finished;

    expect(record.trigger).toBe('manual');
    expect(app.engine.history.last()?.trigger).toBe('manual');
    const seen = desktop.tray.models.slice(before);
    expect(seen.map((m) => [m.icon, m.menu[0]?.type !== 'separator' && m.menu[0]?.label])).toEqual([
      ['updating', 'Set up: choose an update source'],
      ['failed', 'Updates failing: no update source is set'],
    ]);
    // While it ran, Update Now was greyed out.
    expect(seen[0]?.menu.find((item) => item.type === 'normal' && item.label === 'Update Now')).toMatchObject({ enabled: false });
  });

  it('Open Console shows and focuses the hidden console window', async () => {
    const { desktop } = await startOnFake();
    const window = desktop.windows[0]!;
    window.userClose();
    expect(window.isVisible()).toBe(false);

    desktop.tray.click('Open Console');

    expect(desktop.windows).toHaveLength(1);
    expect(window.isVisible()).toBe(true);
    expect(window.focusCount).toBe(1);
  });

  it('Open Console opens the console when the app started hidden', async () => {
    const { desktop, app } = await startOnFake({ app: { hidden: true } });
    desktop.tray.click('Open Console');
    expect(desktop.windows).toHaveLength(1);
    expect(app.consoleWindow()).toBe(desktop.windows[0]);
  });

  it('Settings… opens index.html#settings in its own isolated window, once; closing hides it', async () => {
    const { desktop, app } = await startOnFake();

    desktop.tray.click('Settings…');
    expect(desktop.windows).toHaveLength(2);
    const settingsWindow = desktop.windows[1]!;
    expect(app.settingsWindow()).toBe(settingsWindow);
    expect(settingsWindow.loaded).toEqual([{ file: paths.page, hash: 'settings' }]);
    expect(settingsWindow.url()).toMatch(/^file:\/\/\/.*\/index\.html#settings$/);
    expect(settingsWindow.spec).toMatchObject({
      title: 'Bulwark Settings',
      webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false, preload: paths.preload },
    });

    desktop.tray.click('Settings…');
    expect(desktop.windows).toHaveLength(2);
    expect(settingsWindow.focusCount).toBe(1);

    expect(settingsWindow.userClose()).toBe('kept');
    expect(settingsWindow.isVisible()).toBe(false);
    desktop.tray.click('Settings…');
    expect(settingsWindow.isVisible()).toBe(true);
    expect(desktop.windows).toHaveLength(2);
  });

  it('Start at Login toggles the setting, persists it, and applies it to the system (Linux: the autostart entry)', async () => {
    const { desktop, app, userData, configHome } = await startOnFake();
    const entry = path.join(configHome, 'autostart', 'bulwark.desktop');
    const saved = () => (JSON.parse(fs.readFileSync(path.join(userData, 'settings.json'), 'utf8')) as { startAtLogin: boolean }).startAtLogin;
    expect(desktop.tray.item('Start at Login')).toMatchObject({ type: 'checkbox', checked: false });

    desktop.tray.click('Start at Login');

    expect(app.settings.data.startAtLogin).toBe(true);
    expect(saved()).toBe(true);
    expect(fs.readFileSync(entry, 'utf8')).toContain('\nExec=/opt/Bulwark/bulwark --hidden\n');
    expect(desktop.tray.item('Start at Login')).toMatchObject({ checked: true });

    desktop.tray.click('Start at Login');

    expect(app.settings.data.startAtLogin).toBe(false);
    expect(saved()).toBe(false);
    expect(fs.existsSync(entry)).toBe(false);
    expect(desktop.tray.item('Start at Login')).toMatchObject({ checked: false });
    expect(desktop.errors).toEqual([]);
  });

  it.each(['win32', 'darwin'] as const)('Start at Login on %s goes through the login item settings', async (platform) => {
    const userData = tempDir();
    const desktop = new FakeDesktop(userData, { platform });
    const { app } = await startOnFake({ desktop, userData });

    desktop.tray.click('Start at Login');
    expect(desktop.loginItem).toBe(true);
    expect(app.settings.data.startAtLogin).toBe(true);

    desktop.tray.click('Start at Login');
    expect(desktop.loginItem).toBe(false);
    expect(app.settings.data.startAtLogin).toBe(false);
  });

  it('when the system refuses the login item, the setting stays off and the user is told', async () => {
    const userData = tempDir();
    const desktop = new FakeDesktop(userData, { platform: 'darwin' });
    desktop.loginItemRefuses = true;
    const { app } = await startOnFake({ desktop, userData });

    desktop.tray.click('Start at Login');

    expect(app.settings.data.startAtLogin).toBe(false);
    expect(desktop.tray.item('Start at Login')).toMatchObject({ checked: false });
    expect(desktop.errors).toEqual([{ title: 'Start at Login', message: expect.stringMatching(/did not turn start at login on/) }]);
  });

  it('Quit asks the app to quit (the engine stop runs in the quit cleanup)', async () => {
    const { desktop } = await startOnFake();
    desktop.tray.click('Quit');
    expect(desktop.quitCount).toBe(1);
  });
});

/** RGBA pixels of a PNG written by scripts/make-icons.js (8-bit RGBA, filter 0 on every row). */
function decodeRgba(file: string): Buffer {
  const bytes = fs.readFileSync(file);
  const [width, height] = pngSize(file);
  const chunks: Buffer[] = [];
  for (let offset = 8; offset < bytes.length; ) {
    const length = bytes.readUInt32BE(offset);
    if (bytes.toString('ascii', offset + 4, offset + 8) === 'IDAT') chunks.push(bytes.subarray(offset + 8, offset + 8 + length));
    offset += 12 + length;
  }
  const raw = zlibInflate(Buffer.concat(chunks));
  const rgba = Buffer.alloc(width * height * 4);
  for (let row = 0; row < height; row++) {
    expect(raw[row * (width * 4 + 1)]).toBe(0);
    raw.copy(rgba, row * width * 4, row * (width * 4 + 1) + 1, (row + 1) * (width * 4 + 1));
  }
  return rgba;
}
