// Notifications: what a finished run calls for (pure), and that the app shows them through the
// adapter, honours the settings and opens the console when one is clicked.
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { ComponentRun, RunRecord } from '../src-main/engine/history.js';
import { notificationsFor } from '../src-main/electron/notifications.js';
import { DEFAULT_SETTINGS, Settings } from '../src-main/engine/settings.js';
import { closedPort } from './helpers/cli.js';
import { cleanUp, FakeDesktop, startOnFake, tempDir } from './helpers/fake-electron.js';
import { TestSource } from './helpers/fixtures.js';

afterEach(cleanUp);

const ALL_ON = { updateFailed: true, componentsInstalled: true };

function run(overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    trigger: 'schedule',
    startedAt: '2025-11-26T10:00:00.000Z',
    finishedAt: '2025-11-26T10:00:05.000Z',
    result: 'ok',
    bytes: 1000,
    components: [],
    ...overrides,
  };
}

function component(id: string, previousVersion: number | null, version: number | null, overrides: Partial<ComponentRun> = {}): ComponentRun {
  return {
    id,
    previousVersion,
    version,
    method: previousVersion === version ? 'none' : previousVersion === null ? 'full' : 'incremental',
    reason: previousVersion === version ? 'up to date' : 'new version',
    bytes: 100,
    fullBytes: 1000,
    durationMs: 10,
    result: 'ok',
    ...overrides,
  };
}

const failed = (error: string, overrides: Partial<RunRecord> = {}) => run({ result: 'failed', error, errorCode: 'ERR_NETWORK', ...overrides });

describe('notification decision (pure)', () => {
  it('a run with nothing new tells nothing', () => {
    expect(notificationsFor(run({ components: [component('virus-pattern', 176, 176), component('scan-engine', 1000, 1000)] }), undefined, ALL_ON)).toEqual([]);
  });

  it('one installed component: its name and version', () => {
    const record = run({ components: [component('virus-pattern', 176, 177), component('scan-engine', 1000, 1000)] });
    expect(notificationsFor(record, undefined, ALL_ON)).toEqual([{ kind: 'components-installed', title: 'Component updated', body: 'Virus Pattern 177' }]);
  });

  it('several installed components, the first three named', () => {
    const record = run({
      components: [
        component('virus-pattern', null, 175),
        component('smart-scan-agent-pattern', null, 175),
        component('damage-cleanup-template', null, 175),
        component('spyware-pattern', null, 175),
        component('scan-engine', null, 1000),
      ],
    });
    expect(notificationsFor(record, undefined, ALL_ON)).toEqual([
      {
        kind: 'components-installed',
        title: '5 components updated',
        body: 'Virus Pattern 175, Smart Scan Agent Pattern 175, Damage Cleanup Template 175 and 2 more',
      },
    ]);
  });

  it('installed components are not told when that notification is off', () => {
    const record = run({ components: [component('virus-pattern', 176, 177)] });
    expect(notificationsFor(record, undefined, { updateFailed: true, componentsInstalled: false })).toEqual([]);
  });

  it('a failed run tells why, as a sentence', () => {
    expect(notificationsFor(failed('cannot reach updates.example.com: connection refused'), run(), ALL_ON)).toEqual([
      { kind: 'update-failed', title: 'Bulwark update failed', body: 'Cannot reach updates.example.com: connection refused' },
    ]);
  });

  it('a failure is not told when that notification is off', () => {
    expect(notificationsFor(failed('cannot reach the source'), run(), { updateFailed: false, componentsInstalled: true })).toEqual([]);
  });

  it('the same failure again is not told again, unless the user asked for the update', () => {
    const previous = failed('cannot reach the source');
    expect(notificationsFor(failed('cannot reach the source'), previous, ALL_ON)).toEqual([]);
    expect(notificationsFor(failed('cannot reach the source', { trigger: 'manual' }), previous, ALL_ON)).toHaveLength(1);
    expect(notificationsFor(failed('the catalogue signature does not verify'), previous, ALL_ON)).toHaveLength(1);
  });

  it('a partly failed run tells both what was installed and what failed', () => {
    const record = run({
      result: 'failed',
      components: [component('virus-pattern', 176, 177), component('scan-engine', 1000, 1000, { result: 'failed', error: 'hash mismatch' })],
    });
    expect(notificationsFor(record, undefined, ALL_ON)).toEqual([
      { kind: 'components-installed', title: 'Component updated', body: 'Virus Pattern 177' },
      { kind: 'update-failed', title: 'Bulwark update failed', body: 'Scan Engine: hash mismatch' },
    ]);
  });

  it('keeps a long reason short', () => {
    const [notification] = notificationsFor(failed(`x${'y'.repeat(500)}`), undefined, ALL_ON);
    expect(notification?.body.length).toBeLessThanOrEqual(200);
    expect(notification?.body.endsWith('…')).toBe(true);
  });
});

/**
 * A userData whose update source cannot be reached: a real signed root, and a port nothing listens on.
 * (A fresh install without any source fails nothing: it waits for one.)
 */
async function unreachableSource(): Promise<string> {
  const source = new TestSource();
  source.addPattern('scan-engine', { bytes: 1000 });
  source.publish();
  const userData = tempDir();
  const settings = Settings.open(userData);
  settings.set('distribution', { ...DEFAULT_SETTINGS.distribution, listen: ['127.0.0.1:0'] });
  settings.set('source', { url: `http://127.0.0.1:${await closedPort()}/`, trustedRoot: source.rootFile });
  return userData;
}

describe('notifications in the app (fake Electron, real engine)', () => {
  it('tells the user the first update failed; a click opens the console', async () => {
    const { desktop, app } = await startOnFake({ userData: await unreachableSource(), app: { hidden: true } });
    await app.startupRun;

    expect(desktop.notifications.map(({ kind, title, body }) => ({ kind, title, body }))).toEqual([
      { kind: 'update-failed', title: 'Bulwark update failed', body: expect.stringMatching(/^Cannot reach http:\/\/127\.0\.0\.1:\d+/) },
    ]);
    expect(desktop.windows).toHaveLength(0);

    desktop.notifications[0]!.click();
    expect(desktop.windows).toHaveLength(1);
    expect(app.consoleWindow()).toBe(desktop.windows[0]);
  });

  it('does not repeat the same failure on the next start, but does on Update Now', async () => {
    const userData = await unreachableSource();
    const first = await startOnFake({ userData });
    await first.app.startupRun;
    await first.desktop.quitAndWait();
    expect(first.desktop.notifications).toHaveLength(1);

    const desktop = new FakeDesktop(userData);
    const { app } = await startOnFake({ desktop, userData });
    await app.startupRun;
    expect(desktop.notifications).toHaveLength(0);

    const finished = once(app.engine, 'run');
    desktop.tray.click('Update Now');
    await finished;
    expect(desktop.notifications.map((n) => n.kind)).toEqual(['update-failed']);
  });

  it('shows nothing when the user turned failure notifications off', async () => {
    const userData = await unreachableSource();
    const first = await startOnFake({ userData, app: { hidden: true } });
    await first.app.startupRun;
    first.app.settings.set('notifications', { updateFailed: false, componentsInstalled: true });

    const finished = once(first.app.engine, 'run');
    first.desktop.tray.click('Update Now');
    await finished;
    expect(first.desktop.notifications).toHaveLength(1); // the start-up one, before the change
  });
});
