// Demo mode (BULWARK_DEMO=1 / --demo): the desktop app starts the demo update source, points its
// settings at it before the engine starts, installs everything from it, and stops it on quit. Where
// ClamAV is installed, the demo also publishes ClamAV signatures and its first agent hands them to a
// clamd the demo starts under its folder, whose detections it logs.
// Fake Electron; the demo source, engine, agents, clamd and HTTP on loopback are real.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ipcChannel, type AgentsPage, type Snapshot } from '../src-main/console/contract.js';
import { DEMO_SIGNATURES, findClamd } from '../src-main/demo/clamav.js';
import { DEMO_AGENTS } from '../src-main/demo/demo.js';
import { componentInfo, KNOWN_COMPONENTS } from '../src-main/engine/components.js';
import { ComponentStore } from '../src-main/engine/store.js';
import { until } from './helpers/cli.js';
import { cleanUp, startOnFake, tempDir } from './helpers/fake-electron.js';

afterEach(cleanUp);

describe('desktop demo mode', () => {
  it('runs against the demo source: full install, the tray follows, a notification, and the source stops on quit', async () => {
    const demoDir = tempDir('bulwark-desktop-demo-');
    const userData = tempDir();
    const { desktop, app, logs } = await startOnFake({ userData, app: { demo: true, demoDir } });
    // The demo's components: the built-in ones, and ClamAV signatures where ClamAV is installed (CI installs it).
    const clamav = findClamd().ok;
    const ids = [...KNOWN_COMPONENTS.map((c) => c.id), ...(clamav ? [DEMO_SIGNATURES] : [])].sort();
    const source = app.demoSource;
    if (!source) throw new Error('no demo source');

    // The settings point at the demo before the first run; the user's own settings are left alone.
    expect(app.settings.data.source).toEqual({ url: source.url, trustedRoot: source.rootFile });
    expect(app.settings.data.schedule).toEqual({ kind: 'interval', every: 1, unit: 'minutes' });
    expect(fs.existsSync(path.join(demoDir, 'desktop', 'settings.json'))).toBe(true);
    expect(fs.existsSync(path.join(userData, 'settings.json'))).toBe(false);

    const record = await app.startupRun;
    expect(record).toMatchObject({ trigger: 'install', result: 'ok' });
    expect(record?.components.filter((c) => c.method === 'full')).toHaveLength(ids.length);

    // The tray's headline speaks for the server and its two demo agents. When the server's run ends,
    // the agents are counted against the new release: the headline may say they are current only if
    // they already hold it (not counted against the release before).
    const statusOf = (m: (typeof desktop.tray.models)[number]) => (m.menu[0]?.type === 'normal' ? m.menu[0].label : '');
    const allCurrent = `Up to date: server and ${DEMO_AGENTS.length} agents`;
    const agentsHoldEverything = () =>
      DEMO_AGENTS.every((name) => {
        const dir = path.join(source.dir, 'agents', name);
        return fs.existsSync(path.join(dir, 'store')) && ids.every((id) => new ComponentStore(dir).active(id)?.version === record?.components.find((r) => r.id === id)?.version);
      });
    if (statusOf(desktop.tray.model) === allCurrent) expect(agentsHoldEverything(), 'the agents hold the release the headline says they are current with').toBe(true);
    await until(() => statusOf(desktop.tray.model) === allCurrent, 60_000, `the tray to say "${allCurrent}"`);
    expect(agentsHoldEverything()).toBe(true);
    const statuses = desktop.tray.models.map(statusOf);
    expect(statuses).toContain(`Updating 1 of ${ids.length}: ${snapshotName(record?.components[0]?.id)}`);
    expect(desktop.tray.model.icon).toBe('idle');
    expect(desktop.tray.model.tooltip).toBe(`Bulwark: ${allCurrent}`);

    expect(desktop.notifications.map(({ kind, title }) => ({ kind, title }))).toEqual([
      { kind: 'components-installed', title: `${ids.length} components updated` },
    ]);

    const snapshot = (await desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('snapshot'), null)) as Snapshot;
    expect(snapshot.components.map((c) => c.id).sort()).toEqual(ids);
    expect(snapshot.components.every((c) => c.installedVersion !== null)).toBe(true);

    if (clamav) {
      // The first agent placed the signatures (2 versions: samples 1 and 2) in the demo's clamd, which now detects both.
      await until(() => logs.some((line) => line.includes('demo: clamd now detects 2 of 2 demo samples')), 60_000, 'the demo clamd to detect the samples');
      expect(logs.some((line) => line.includes(`[demo-agent-1] ${DEMO_SIGNATURES} 2 handed to clamd (${path.join(demoDir, 'clamav', 'db', 'bulwark-demo.hsb')})`))).toBe(true);
    }

    expect((await fetch(new URL('root.json', source.url))).ok).toBe(true);
    await desktop.quitAndWait();
    await expect(fetch(new URL('root.json', source.url))).rejects.toThrow();
    expect(fs.existsSync(path.join(demoDir, 'desktop', 'data', 'bulwark.lock'))).toBe(false);
    // The demo's clamd stopped with it.
    if (clamav) await until(() => !fs.existsSync(path.join(demoDir, 'clamav', 'clamd.sock')), 10_000, 'the demo clamd to stop');

    // Started again on the same folder, it serves agents on a new port: its two agents enroll again
    // under their own names, and the server lists two agents, not their old entries beside them. One has
    // lost its enrollment meanwhile (as a folder made before this forgetting has its entry under another
    // name): the entry holding its name is forgotten too.
    fs.rmSync(path.join(demoDir, 'agents', DEMO_AGENTS[0]!, 'agent.json'));
    const again = await startOnFake({ userData, app: { demo: true, demoDir } });
    await again.app.startupRun;
    await until(() => DEMO_AGENTS.every((name) => again.logs.some((line) => line.startsWith(`[${name}] enrolled with `))), 30_000, 'the demo agents to enroll again');
    await until(() => statusOf(again.desktop.tray.model) === allCurrent, 60_000, `the tray to say "${allCurrent}" again`);
    const page = (await again.desktop.invokeFrom(again.desktop.windows[0]!, ipcChannel.method('agents'), {})) as AgentsPage;
    expect(page.agents.map((a) => a.name).sort()).toEqual([...DEMO_AGENTS].sort());
    for (const name of DEMO_AGENTS) expect(again.logs).toContain(`demo: ${name} enrolls again; the entry it had from an earlier run is forgotten`);
  }, 180_000);
});

/** How the tray names a component (by its id where Bulwark does not know it). */
function snapshotName(id: string | undefined): string | undefined {
  return id === undefined ? undefined : componentInfo(id).name;
}
