// Reminder cards: plain-language problems with what to do, derived by the real engine.
import { expect, openConsole, screenshot, test } from './fixtures.js';

test('an unreachable update source shows the "cannot be reached" reminder with its action', async ({ page, bulwark, source }) => {
  await openConsole(page, bulwark);
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  const reminders = page.getByRole('list', { name: 'Reminders' });
  await expect(reminders).toHaveCount(0);

  // The source goes away; the next update cannot reach it.
  await source.stop();
  await page.getByRole('button', { name: 'Update now' }).click();

  const card = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'The update source cannot be reached' }) });
  await expect(card).toBeVisible();
  await expect(card).toContainText('The last update failed:');
  await expect(card).toContainText(
    'What to do: Check the network. If this server reaches the internet only through a proxy, set it in Settings › Proxy.',
  );
  await expect(page.getByTestId('engine-state')).toHaveText(/^Failed: /);
  const history = page.getByRole('region', { name: 'Recent updates' });
  await expect(history.getByRole('listitem').first()).toContainText('failed');
  await expect(history.getByRole('listitem').first()).toContainText('Update now');
  // What was installed stays installed.
  await expect(page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(0)).toHaveText('1873');

  await screenshot(page, 'reminder.png');

  // `bulwark status` reports the same reminder.
  expect((await bulwark.status()).reminders.map((r) => r.id)).toContain('source-unreachable');

  // Its button opens the settings tab the action names.
  await card.getByRole('button', { name: 'Open Proxy settings' }).click();
  await expect(page).toHaveURL(/#settings\/proxy$/);
  await expect(page.getByRole('tab', { name: 'Proxy' })).toHaveAttribute('aria-selected', 'true');
  await expect(page.getByLabel('Host')).toBeVisible();
});

test.describe('without an update source', () => {
  test.use({ withSource: false });

  test('the "No update source is set" reminder leads to the Update source settings, and setting one clears it', async ({ page, bulwark, source }) => {
    await openConsole(page, bulwark);
    const card = page.getByRole('status').filter({ has: page.getByRole('heading', { name: 'No update source is set' }) });
    await expect(card).toBeVisible();
    await expect(card).toContainText('Bulwark cannot update its components until it knows where to get them.');
    await expect(card).toContainText('What to do: Open Settings › Update source and enter the source URL with its trusted root.json.');
    await expect(page.getByRole('region', { name: 'Components' })).toContainText('No components installed yet.');

    await card.getByRole('button', { name: 'Open Update source settings' }).click();
    await expect(page).toHaveURL(/#settings\/source$/);
    await expect(page.getByRole('tab', { name: 'Update source' })).toHaveAttribute('aria-selected', 'true');
    const panel = page.getByRole('tabpanel', { name: 'Update source' });

    // Doing what the card says: the source URL, a connection test, its root.json, Save.
    await panel.getByLabel('Custom source').check();
    await expect(panel.getByLabel('Source URL')).toHaveValue('');
    await panel.getByLabel('Source URL').fill(source.url);
    await panel.getByRole('button', { name: 'Test connection' }).click();
    await expect(panel.getByTestId('connection-test-result')).toContainText('Connection works.');
    await panel.getByLabel('Trusted root.json file').setInputFiles(source.rootFile);
    await expect(panel.getByText('Imported root.json. Save to use it.')).toBeVisible();
    await panel.getByRole('button', { name: 'Save update source' }).click();
    await expect(panel.getByText('✓ Saved')).toBeVisible();
    const saved = (await bulwark.settings('source')) as { url: string; trustedRoot: string };
    expect(saved.url).toBe(source.url);
    expect(saved.trustedRoot.startsWith(bulwark.dataDir)).toBe(true);

    await page.getByRole('link', { name: 'Overview' }).click();
    await expect(page.getByRole('heading', { name: 'No update source is set' })).toHaveCount(0);
    await page.getByRole('button', { name: 'Update now' }).click();
    await expect(page.getByTestId('component-row-virus-pattern').getByRole('cell').nth(0)).toHaveText('1873');
    await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
    await expect(page.getByRole('list', { name: 'Reminders' })).toHaveCount(0);
  });
});
