// Reminder cards and the headline: plain-language problems with what to do, derived by the real
// engine; each failure said once, in words, with the raw text behind "Details"; a fresh install
// that opens on how to begin, not in red.
import { expect, openConsole, screenshot, test } from './fixtures.js';

test('an unreachable update source is said once, in words, with what to do; the raw error only behind Details', async ({ page, bulwark, source }) => {
  await openConsole(page, bulwark);
  await expect(page.getByTestId('headline')).toHaveText('Up to date');
  const reminders = page.getByRole('list', { name: 'Reminders' });
  await expect(reminders).toHaveCount(0);

  // The source goes away; the next update cannot reach it.
  await source.stop();
  await page.getByRole('button', { name: 'Update now' }).click();

  const card = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'The update source cannot be reached' }) });
  await expect(card).toBeVisible();
  await expect(page.getByTestId('headline')).toHaveText('Updates failing: the update source cannot be reached');
  await expect(page.getByTestId('engine-state')).toHaveText('Last update failed');
  await expect(card).toContainText(`Bulwark could not connect to ${new URL(source.url).host}: nothing answers at that address (connection refused).`);
  // A refused connection points at the address first: the source URL, then the proxy.
  await expect(card).toContainText('What to do: Check the source URL in Settings › Update source');

  // The raw error and its code are nowhere on screen until a Details disclosure is opened.
  const raw = page.getByText(/ECONNREFUSED|ERR_NETWORK/);
  expect(await raw.count()).toBeGreaterThan(0);
  for (const element of await raw.all()) await expect(element).toBeHidden();
  await card.getByText('Details').click();
  await expect(card.getByText(/connect ECONNREFUSED/)).toBeVisible();
  await card.getByText('Details').click();

  const history = page.getByRole('region', { name: 'Recent updates' });
  const failedRun = history.getByRole('listitem').first();
  await expect(failedRun).toContainText('failed');
  await expect(failedRun).toContainText('Update now');
  await expect(failedRun).toContainText('The update source cannot be reached');
  // What was installed stays installed.
  await expect(page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(0)).toHaveText('1873');

  await screenshot(page, 'reminder.png');

  // `bulwark status` reports the same reminder, and the same headline.
  const status = (await bulwark.status()) as unknown as { reminders: { id: string }[]; headline: { text: string } };
  expect(status.reminders.map((r) => r.id)).toContain('source-unreachable');
  expect(status.headline.text).toBe('Updates failing: the update source cannot be reached');

  // On a phone the headline stays one short line, not a paragraph of red.
  await page.setViewportSize({ width: 390, height: 844 });
  const box = await page.getByTestId('headline').boundingBox();
  expect(box!.height).toBeLessThan(3 * 24);

  // Its button opens the settings tab the action names first.
  await page.setViewportSize({ width: 1280, height: 800 });
  await card.getByRole('button', { name: 'Open Update source settings' }).click();
  await expect(page).toHaveURL(/#settings\/source$/);
  await expect(page.getByRole('tab', { name: 'Update source' })).toHaveAttribute('aria-selected', 'true');
});

test.describe('a fresh install (no update source)', () => {
  test.use({ withSource: false });

  test('opens on how to begin, not in red; setting the source and running the first update brings it up to date', async ({ page, bulwark, source }) => {
    await openConsole(page, bulwark);
    await expect(page.getByTestId('headline')).toHaveText('Set up: choose an update source');
    const firstRun = page.getByTestId('first-run');
    await expect(firstRun).toContainText('Set the update source');
    await expect(firstRun).toContainText('npm run demo');
    // Nothing failed: no error card, no failed run, no "no source" warning on top of the steps.
    await expect(page.getByRole('alert')).toHaveCount(0);
    await expect(page.getByRole('heading', { name: 'No update source is set' })).toHaveCount(0);
    await expect(page.getByRole('region', { name: 'Recent updates' })).toContainText('No updates have run yet.');
    await expect(page.getByTestId('next-update')).toHaveText('Once a source is set');
    await expect(firstRun.getByRole('button', { name: 'Run the first update' })).toBeDisabled();
    expect(bulwark.process.stdout).not.toMatch(/FAILED/);

    // Nobody to ask yet: "Update agents now" waits for an agent.
    await page.getByRole('link', { name: 'Agents', exact: true }).click();
    await expect(page.getByRole('button', { name: 'Update agents now' })).toBeDisabled();
    await expect(page.getByTestId('agents-empty')).toContainText('BULWARK_TOKEN=JOIN bulwark agent --server');

    await page.getByRole('link', { name: 'Overview' }).click();
    await firstRun.getByRole('button', { name: 'Set the update source' }).click();
    await expect(page).toHaveURL(/#settings\/source$/);
    const panel = page.getByRole('tabpanel', { name: 'Update source' });
    await panel.getByLabel('Custom source').check();
    await panel.getByLabel('Source URL').fill(source.url);
    await panel.getByRole('button', { name: 'Test connection' }).click();
    await expect(panel.getByTestId('connection-test-result')).toContainText('Connection works.');
    // The root's import is held back (as a loaded machine or a slow link may): Save, clicked before it
    // is done, waits for it ("Saving…") and then saves the source with it.
    let releaseImport!: () => void;
    const importHeld = new Promise<void>((resolve) => (releaseImport = resolve));
    await page.route('**/api/call/importTrustedRoot', async (route) => {
      await importHeld;
      await route.continue();
    });
    await panel.getByLabel('Trusted root.json file').setInputFiles(source.rootFile);
    await panel.getByRole('button', { name: 'Save update source' }).click();
    await expect(panel.getByRole('button', { name: 'Saving…' })).toBeDisabled();
    const saved = page.waitForResponse((response) => response.url().endsWith('/api/call/saveSettings'));
    releaseImport();
    expect(await (await saved).json()).toMatchObject({ ok: true, settings: { source: { url: source.url } } });
    await expect(panel.getByText('✓ Saved')).toBeVisible();

    await page.getByRole('link', { name: 'Overview' }).click();
    await expect(page.getByTestId('headline')).toHaveText('Waiting for the first update');
    await firstRun.getByRole('button', { name: 'Run the first update' }).click();
    await expect(page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(0)).toHaveText('1873');
    await expect(page.getByTestId('headline')).toHaveText('Up to date');
    await expect(page.getByTestId('first-run')).toHaveCount(0);
    await expect(page.getByRole('list', { name: 'Reminders' })).toHaveCount(0);
  });
});
