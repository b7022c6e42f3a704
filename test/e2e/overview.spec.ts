// The overview against the real engine: what the start-up update installed, and an "Update now"
// that installs a newly published version by incremental pattern, live.
import { expect, holdRequests, NAMES, openConsole, PUBLISHED, screenshot, test, type ComponentId } from './fixtures.js';

/** The latest version of each published component (versions go up by 2). */
const latest = (id: ComponentId) => PUBLISHED[id].first + 2 * (PUBLISHED[id].versions - 1);

test('the component table shows each component with the version the start-up update installed', async ({ page, bulwark }) => {
  await openConsole(page, bulwark);

  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  const table = page.getByRole('region', { name: 'Components' });
  await expect(table.getByRole('row')).toHaveCount(1 + Object.keys(PUBLISHED).length);
  for (const id of Object.keys(PUBLISHED) as ComponentId[]) {
    const row = page.getByTestId(`component-row-${id}`);
    await expect(row.getByRole('rowheader')).toHaveText(NAMES[id]);
    const cells = row.getByRole('cell');
    await expect(cells.nth(0), `${id} installed`).toHaveText(String(latest(id)));
    await expect(cells.nth(1), `${id} latest known`).toHaveText(String(latest(id)));
    // Nothing was installed before: every component arrived as a full file.
    await expect(cells.nth(3), `${id} arrived as`).toHaveText('full');
  }

  // The console shows what the engine has on disk.
  const status = await bulwark.status();
  expect(Object.fromEntries(status.components.map((c) => [c.id, c.version]))).toEqual(
    Object.fromEntries((Object.keys(PUBLISHED) as ComponentId[]).map((id) => [id, latest(id)])),
  );

  const history = page.getByRole('region', { name: 'Recent updates' });
  await expect(history.getByRole('listitem').filter({ hasText: 'First run' }).first()).toContainText('succeeded');
});

test('"Update now" shows live progress, installs the new version by incremental pattern and records the saving', async ({ page, bulwark, source }) => {
  await openConsole(page, bulwark);
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  const before = latest('virus-pattern');

  // A new virus pattern is published; its incremental download waits until the test has seen it start.
  const next = source.addPattern('virus-pattern');
  source.publish();
  const hold = holdRequests(source, new RegExp(`^/targets/virus-pattern/[0-9a-f]{64}\\.v_${before}\\.${next}$`));

  await page.getByRole('button', { name: 'Update now' }).click();

  const progress = page.getByTestId('update-progress');
  await expect(progress).toBeVisible();
  await expect(progress).toContainText('Virus Pattern');
  await expect(progress).toContainText(/downloading, incremental\s+· \d of 4\s+· [\d.]+ k?B received/);
  await expect(page.getByTestId('engine-state')).toHaveText(/^Updating \d of 4: Virus Pattern \(downloading, incremental\)$/);
  await expect(page.getByRole('button', { name: 'Updating…' })).toBeDisabled();
  expect(hold.count).toBe(1);

  hold.release();

  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  await expect(progress).toBeHidden();
  const row = page.getByTestId('component-row-virus-pattern');
  await expect(row.getByRole('cell').nth(0)).toHaveText(String(next));
  await expect(row.getByRole('cell').nth(3)).toHaveText('incremental');
  // The others were already current: unchanged.
  await expect(page.getByTestId('component-row-spyware-pattern').getByRole('cell').nth(0)).toHaveText(String(latest('spyware-pattern')));

  const history = page.getByRole('region', { name: 'Recent updates' });
  const run = history.getByRole('listitem').filter({ hasText: 'Update now' }).first();
  await expect(run).toContainText('succeeded');
  const change = run.getByRole('listitem').filter({ hasText: 'Virus Pattern' });
  await expect(change).toContainText(`${before} → ${next}`);
  await expect(change).toContainText('incremental');
  await expect(change).toContainText(/ of [\d.]+ [kM]B, saved \d+(\.\d)?%/);
  await expect(run).toContainText('Others: 3 components already up to date');
  // The newest run is listed first.
  await expect(history.getByRole('listitem').first()).toContainText('Update now');

  await screenshot(page, 'console.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  await expect.poll(() => page.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches)).toBe(true);
  await screenshot(page, 'console-dark.png');
});

test('an update that has just finished reads "just now", not "in less than a minute"', async ({ page, bulwark, source }) => {
  // The console refreshes its "3 minutes ago" clock every 15 s. Load the page as if that clock had
  // last ticked 14 s ago (a moment that comes round every 15 s), then hold the page's time still,
  // so no tick can happen while the update runs.
  await page.clock.install({ time: Date.now() - 14_000 });
  await openConsole(page, bulwark);
  await page.clock.setSystemTime(Date.now());
  await page.clock.pauseAt(Date.now() + 3_000);

  const next = source.addPattern('virus-pattern');
  source.publish();
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(0)).toHaveText(String(next));

  const lastUpdate = page.locator('dl > div').filter({ has: page.getByText('Last update', { exact: true }) }).locator('time');
  const installed = page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(2);
  const newestRun = page.getByRole('region', { name: 'Recent updates' }).getByRole('listitem').first().locator('time');
  // Read once each: the page's time is paused, so nothing can correct them later.
  expect({
    lastUpdate: await lastUpdate.textContent(),
    installed: await installed.textContent(),
    newestRun: await newestRun.textContent(),
  }).toEqual({ lastUpdate: 'just now', installed: 'just now', newestRun: 'just now' });
});

test('a change made while the console opens shows without a reload: the first snapshot may predate the event stream', async ({ page, bulwark }) => {
  // The race, made certain: the server reads the first snapshot, the settings change (its event goes to
  // no stream: none is open yet), then the stream opens, and only then does that older snapshot arrive.
  let snapshotRead!: () => void;
  const read = new Promise<void>((resolve) => (snapshotRead = resolve));
  let deliverSnapshot!: () => void;
  const deliver = new Promise<void>((resolve) => (deliverSnapshot = resolve));
  let first = true;
  await page.route('**/api/call/snapshot', async (route) => {
    if (!first) return route.continue();
    first = false;
    const response = await route.fetch();
    snapshotRead();
    await deliver;
    await route.fulfill({ response });
  });
  let openStream!: () => void;
  const streamMayOpen = new Promise<void>((resolve) => (openStream = resolve));
  await page.route('**/api/events', async (route) => {
    await streamMayOpen;
    await route.continue();
  });

  // Marks the moment the page's event stream opens (the page's own listener runs right after this one).
  await page.addInitScript(() => {
    const Native = window.EventSource;
    window.EventSource = class extends Native {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        this.addEventListener('open', () => ((window as unknown as { streamOpen: boolean }).streamOpen = true));
      }
    };
  });

  await page.goto(bulwark.url);
  await read;
  const saved = await page.request.post(`${bulwark.origin}/api/call/saveSettings`, {
    headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' },
    data: { section: 'schedule', value: { kind: 'interval', every: 15, unit: 'minutes' } },
  });
  expect(await saved.json()).toMatchObject({ ok: true });
  openStream();
  await page.waitForFunction(() => (window as unknown as { streamOpen?: boolean }).streamOpen === true);
  deliverSnapshot();

  await expect(page.getByTestId('engine-state')).toBeVisible();
  await expect(page.getByText('· every 15 minutes')).toBeVisible();
});
