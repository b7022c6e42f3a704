// Demo mode (BULWARK_DEMO=1 / --demo): the desktop app starts the demo update source, points its
// settings at it before the engine starts, installs everything from it, and stops it on quit.
// Fake Electron; the demo source, engine and HTTP on loopback are real.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ipcChannel, type Snapshot } from '../src-main/console/contract.js';
import { DEMO_AGENTS } from '../src-main/demo/demo.js';
import { KNOWN_COMPONENTS } from '../src-main/engine/components.js';
import { ComponentStore } from '../src-main/engine/store.js';
import { until } from './helpers/cli.js';
import { cleanUp, startOnFake, tempDir } from './helpers/fake-electron.js';

afterEach(cleanUp);

describe('desktop demo mode', () => {
  it('runs against the demo source: full install, the tray follows, a notification, and the source stops on quit', async () => {
    const demoDir = tempDir('bulwark-desktop-demo-');
    const userData = tempDir();
    const { desktop, app } = await startOnFake({ userData, app: { demo: true, demoDir } });
    const source = app.demoSource;
    if (!source) throw new Error('no demo source');

    // The settings point at the demo before the first run; the user's own settings are left alone.
    expect(app.settings.data.source).toEqual({ url: source.url, trustedRoot: source.rootFile });
    expect(app.settings.data.schedule).toEqual({ kind: 'interval', every: 1, unit: 'minutes' });
    expect(fs.existsSync(path.join(demoDir, 'desktop', 'settings.json'))).toBe(true);
    expect(fs.existsSync(path.join(userData, 'settings.json'))).toBe(false);

    const record = await app.startupRun;
    expect(record).toMatchObject({ trigger: 'install', result: 'ok' });
    expect(record?.components.filter((c) => c.method === 'full')).toHaveLength(KNOWN_COMPONENTS.length);

    // The tray's headline speaks for the server and its two demo agents. When the server's run ends,
    // the agents are counted against the new release: the headline may say they are current only if
    // they already hold it (not counted against the release before).
    const statusOf = (m: (typeof desktop.tray.models)[number]) => (m.menu[0]?.type === 'normal' ? m.menu[0].label : '');
    const allCurrent = `Up to date: server and ${DEMO_AGENTS.length} agents`;
    const agentsHoldEverything = () =>
      DEMO_AGENTS.every((name) => {
        const dir = path.join(source.dir, 'agents', name);
        return fs.existsSync(path.join(dir, 'store')) && KNOWN_COMPONENTS.every((c) => new ComponentStore(dir).active(c.id)?.version === record?.components.find((r) => r.id === c.id)?.version);
      });
    if (statusOf(desktop.tray.model) === allCurrent) expect(agentsHoldEverything(), 'the agents hold the release the headline says they are current with').toBe(true);
    await until(() => statusOf(desktop.tray.model) === allCurrent, 60_000, `the tray to say "${allCurrent}"`);
    expect(agentsHoldEverything()).toBe(true);
    const statuses = desktop.tray.models.map(statusOf);
    expect(statuses).toContain(`Updating 1 of ${KNOWN_COMPONENTS.length}: ${KNOWN_COMPONENTS.find((c) => c.id === record?.components[0]?.id)?.name}`);
    expect(desktop.tray.model.icon).toBe('idle');
    expect(desktop.tray.model.tooltip).toBe(`Bulwark: ${allCurrent}`);

    expect(desktop.notifications.map(({ kind, title }) => ({ kind, title }))).toEqual([
      { kind: 'components-installed', title: `${KNOWN_COMPONENTS.length} components updated` },
    ]);

    const snapshot = (await desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('snapshot'), null)) as Snapshot;
    expect(snapshot.components.map((c) => c.id).sort()).toEqual(KNOWN_COMPONENTS.map((c) => c.id).sort());
    expect(snapshot.components.every((c) => c.installedVersion !== null)).toBe(true);

    expect((await fetch(new URL('root.json', source.url))).ok).toBe(true);
    await desktop.quitAndWait();
    await expect(fetch(new URL('root.json', source.url))).rejects.toThrow();
    expect(fs.existsSync(path.join(demoDir, 'desktop', 'data', 'bulwark.lock'))).toBe(false);
  });
});
