// Settings against the real server: a saved schedule moves the next update, a bad proxy entry is
// refused at its field and stores nothing.
import type { Page } from '@playwright/test';
import { expect, farDailySchedule, openConsole, screenshot, test } from './fixtures.js';

test.describe('schedule', () => {
  // Start on a schedule whose next run is not on a quarter hour, so the change always shows.
  const daily = farDailySchedule(7);
  test.use({ schedule: daily });

  test('saving "every 15 minutes" moves the next update to the next quarter hour', async ({ page, bulwark }) => {
    await openConsole(page, bulwark);
    const nextUpdate = page.getByTestId('next-update');
    const before = await nextUpdate.getAttribute('datetime');
    expect(new Date(before!).getMinutes()).toBe(7);

    await page.getByRole('link', { name: 'Settings' }).click();
    await expect(page).toHaveURL(/#settings(\/schedule)?$/);
    await page.getByRole('tab', { name: 'Schedule' }).click();
    const panel = page.getByRole('tabpanel', { name: 'Schedule' });
    await expect(panel).toContainText(`Currently: updates run ${daily.replace('daily', 'daily at')}.`);
    await panel.getByLabel('Every', { exact: true }).check();
    await panel.getByLabel('Unit').selectOption('minutes');
    await panel.getByLabel('Interval').selectOption('15');
    const savedAfter = Date.now();
    await panel.getByRole('button', { name: 'Save schedule' }).click();
    await expect(panel.getByText('✓ Saved')).toBeVisible();
    await expect(panel).toContainText('Currently: updates run every 15 minutes.');
    const savedBefore = Date.now();

    await page.getByRole('link', { name: 'Overview' }).click();
    await expect(page.getByText('· every 15 minutes')).toBeVisible();
    await expect(nextUpdate).not.toHaveAttribute('datetime', before!);
    const shown = new Date((await nextUpdate.getAttribute('datetime'))!);
    // The next quarter hour after the save: on :00, :15, :30 or :45, in the future, less than 15 minutes away.
    expect(shown.getMinutes() % 15, shown.toISOString()).toBe(0);
    expect(shown.getSeconds() + shown.getMilliseconds()).toBe(0);
    expect(shown.getTime()).toBeGreaterThan(savedAfter);
    expect(shown.getTime()).toBeLessThanOrEqual(savedBefore + 15 * 60_000);
    // "in 12 minutes", as the console words it (it re-reads the clock every 15 s).
    const seconds = (shown.getTime() - Date.now()) / 1000;
    const minutes = Math.round(seconds / 60);
    await expect(nextUpdate).toHaveText(
      seconds < 60 ? /^(in less than a minute|just now|in 1 minute)$/ : new RegExp(`^in (${[minutes - 1, minutes, minutes + 1].join('|')}) minutes?$`),
    );

    // The settings file and the running engine agree with the console.
    expect(await bulwark.settings('schedule')).toEqual({ kind: 'interval', every: 15, unit: 'minutes' });
    const status = await bulwark.status();
    expect(status.schedule).toBe('every 15 minutes');
    // (Or the quarter hour after it, should one have passed since the console read it.)
    expect([shown.toISOString(), new Date(shown.getTime() + 15 * 60_000).toISOString()]).toContain(status.nextUpdate);
  });
});

test.describe('proxy', () => {
  async function proxyForm(page: Page) {
    const panel = page.getByRole('tabpanel', { name: 'Proxy' });
    await expect(panel).toBeVisible();
    return {
      panel,
      enabled: panel.getByLabel('Use a proxy server to reach the update source'),
      host: panel.getByLabel('Host'),
      port: panel.getByLabel('Port'),
      save: panel.getByRole('button', { name: 'Save proxy' }),
    };
  }

  test('the Proxy tab, for the README', async ({ page, bulwark }) => {
    await openConsole(page, bulwark, '#settings/proxy');
    const form = await proxyForm(page);
    await expect(page.getByRole('tab', { name: 'Proxy' })).toHaveAttribute('aria-selected', 'true');
    await expect(form.enabled).not.toBeChecked();
    await expect(form.port).toHaveValue('8080');
    await screenshot(page, 'settings.png');
  });

  const badEntries = [
    { what: 'a port out of range', host: 'proxy.example.com', port: '70000', field: 'port', message: 'Enter a port number from 1 to 65535.' },
    { what: 'no host while enabled', host: '', port: '3128', field: 'host', message: 'Enter the proxy host name or IP address.' },
    { what: 'a host with spaces', host: 'proxy example com', port: '3128', field: 'host', message: /^Enter a host name or IP address \(e\.g\. proxy\.example\.com or 10\.0\.0\.8\), without a port\.$/ },
  ] as const;

  test('a bad entry shows its message at the field and saves nothing', async ({ page, bulwark }) => {
    const stored = await bulwark.settings('proxy');
    expect(stored).toMatchObject({ enabled: false, host: '' });
    const file = bulwark.settingsFile();
    await openConsole(page, bulwark, '#settings/proxy');
    const form = await proxyForm(page);
    let saves = 0;
    page.on('request', (request) => {
      if (request.url().endsWith('/api/call/saveSettings')) saves += 1;
    });

    for (const entry of badEntries) {
      await test.step(entry.what, async () => {
        await form.enabled.check();
        await form.host.fill(entry.host);
        await form.port.fill(entry.port);
        await form.save.click();

        const input = entry.field === 'port' ? form.port : form.host;
        const other = entry.field === 'port' ? form.host : form.port;
        await expect(input).toHaveAttribute('aria-invalid', 'true');
        await expect(input).toHaveAccessibleDescription(entry.message);
        await expect(input).toBeFocused();
        await expect(other).not.toHaveAttribute('aria-invalid', 'true');
        await expect(form.panel.getByText('Unsaved changes')).toBeVisible();
        await expect(form.panel.getByText('✓ Saved')).toHaveCount(0);
        expect(bulwark.settingsFile()).toBe(file);
      });
    }
    expect(await bulwark.settings('proxy')).toEqual(stored);
    // Refused in the browser: nothing was sent.
    expect(saves).toBe(0);

    // Fixing the entry clears the message as the user types, and then it saves.
    await form.host.fill('proxy.example.com');
    await form.port.fill('3128');
    await expect(form.host).not.toHaveAttribute('aria-invalid', 'true');
    await expect(form.panel.locator('.field-error')).toHaveCount(0);
    await form.save.click();
    await expect(form.panel.getByText('✓ Saved')).toBeVisible();
    expect(await bulwark.settings('proxy')).toEqual({ enabled: true, host: 'proxy.example.com', port: 3128, username: '', password: '' });
  });

  test('the server refuses a bad proxy sent past the form, and keeps the stored one', async ({ page, bulwark }) => {
    const stored = await bulwark.settings('proxy');
    const file = bulwark.settingsFile();
    await openConsole(page, bulwark);
    const call = (value: unknown) =>
      page.request.post(`${bulwark.origin}/api/call/saveSettings`, {
        headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' },
        data: { section: 'proxy', value },
      });
    for (const [value, field] of [
      [{ enabled: true, host: 'proxy.example.com', port: 70000, username: '' }, 'proxy.port'],
      [{ enabled: true, host: '', port: 3128, username: '' }, 'proxy.host'],
      [{ enabled: true, host: 'proxy example com', port: 3128, username: '' }, 'proxy.host'],
    ] as const) {
      const response = await call(value);
      expect(response.status()).toBe(200);
      const body = (await response.json()) as unknown;
      expect(body, JSON.stringify(value)).toEqual({ ok: false, field, message: expect.stringMatching(/^invalid proxy: .*; the previous value is kept$/) });
      expect(bulwark.settingsFile()).toBe(file);
    }
    expect(await bulwark.settings('proxy')).toEqual(stored);
  });
});
