// The browser console's access token: nothing without it, not even the page.
import fs from 'node:fs';
import path from 'node:path';
import { request as playwrightRequest } from '@playwright/test';
import { ROOT } from '../helpers/cli.js';
import { expect, openConsole, test } from './fixtures.js';

const UNAUTHORIZED = { error: 'missing or wrong access token', code: 'unauthorized' };
/** How Chromium logs a refused request; expected wherever a test is refused on purpose. */
const REFUSED = /^console\.error: Failed to load resource: the server responded with a status of 401 \(Unauthorized\)$/;

/** The built console's script, which must not be served without the token either. */
function consoleScript(): string {
  const html = fs.readFileSync(path.join(ROOT, 'out', 'renderer', 'index.html'), 'utf8');
  const src = /<script[^>]+src="\.?(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  if (!src) throw new Error('no script in out/renderer/index.html');
  return src;
}

test('opening the console without the token or with a wrong one gives 401 and no page', async ({ page, bulwark, browserErrors }) => {
  browserErrors.allow(REFUSED);
  const wrongToken = bulwark.token.slice(0, -1) + (bulwark.token.endsWith('A') ? 'B' : 'A');
  for (const address of [`${bulwark.origin}/`, `${bulwark.origin}/?token=wrong`, `${bulwark.origin}/?token=${wrongToken}`, `${bulwark.origin}/?token=`, `${bulwark.origin}/#settings`]) {
    await test.step(address, async () => {
      const response = await page.goto(address);
      expect(response?.status()).toBe(401);
      expect(await response?.json()).toEqual(UNAUTHORIZED);
      expect(response?.headers()['set-cookie']).toBeUndefined();
      // Nothing of the console reached the browser.
      await expect(page.locator('#app')).toHaveCount(0);
      await expect(page.locator('script')).toHaveCount(0);
      await expect(page.getByTestId('engine-state')).toHaveCount(0);
      expect(await page.content()).not.toMatch(/Bulwark|<script|data-testid|Update now/);
      const cookies = await page.context().cookies();
      expect(cookies).toEqual([]);
    });
  }
});

test('the console itself needs the token: its files, the API and the event stream answer 401 without the cookie', async ({ bulwark }) => {
  const settingsBefore = bulwark.settingsFile();
  const anonymous = await playwrightRequest.newContext({ baseURL: bulwark.origin });
  try {
    const call = { headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' }, data: null };
    const answers = [
      await anonymous.get('/'),
      await anonymous.get('/index.html'),
      await anonymous.get(consoleScript()),
      await anonymous.get('/api/events'),
      await anonymous.post('/api/call/snapshot', call),
      await anonymous.post('/api/call/updateNow', call),
      await anonymous.post('/api/call/saveSettings', { ...call, data: { section: 'schedule', value: { kind: 'interval', every: 5, unit: 'minutes' } } }),
      await anonymous.post('/api/call/snapshot', { ...call, headers: { ...call.headers, cookie: 'bulwark_console=wrong' } }),
      await anonymous.post('/api/call/snapshot', { ...call, headers: { ...call.headers, authorization: 'Bearer wrong' } }),
    ];
    for (const response of answers) {
      expect(response.status(), response.url()).toBe(401);
      expect(await response.json(), response.url()).toEqual(UNAUTHORIZED);
    }
    // The refused change changed nothing, and the refused Update now ran nothing.
    expect(bulwark.settingsFile()).toBe(settingsBefore);
    expect(bulwark.process.stdout).not.toMatch(/manual update/);
  } finally {
    await anonymous.dispose();
  }
});

test('with the printed URL the console opens, the token leaves the address bar and only the cookie is kept', async ({ page, bulwark, browser }) => {
  await openConsole(page, bulwark);
  await expect(page.getByTestId('component-row-virus-pattern')).toBeVisible();
  await expect(page.getByTestId('connection-banner')).toHaveCount(0);
  const [cookie] = await page.context().cookies();
  expect(cookie).toMatchObject({ name: 'bulwark_console', value: bulwark.token, httpOnly: true, sameSite: 'Strict' });
  // The page's API calls carry the cookie.
  const snapshot = await page.request.post(`${bulwark.origin}/api/call/snapshot`, { headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' }, data: null });
  expect(snapshot.status()).toBe(200);

  // Another browser profile without the cookie gets nothing.
  const other = await browser.newContext();
  try {
    const stranger = await other.newPage();
    const response = await stranger.goto(`${bulwark.origin}/`);
    expect(response?.status()).toBe(401);
    await expect(stranger.locator('#app')).toHaveCount(0);
  } finally {
    await other.close();
  }
});

test('when the server goes away the console says so, and after a restart (a new token) it asks for the new URL', async ({ page, bulwark, browserErrors }) => {
  browserErrors.allow(REFUSED);
  // The event stream cut by the stopping server (Chromium reports it, depending on timing).
  browserErrors.allow(/^console\.error: Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING$/);
  await openConsole(page, bulwark);
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  await expect(page.getByTestId('connection-banner')).toHaveCount(0);

  await bulwark.process.stop('SIGTERM');
  const banner = page.getByTestId('connection-banner');
  await expect(banner).toContainText('Connection lost — reconnecting…');
  // What was shown stays on screen.
  await expect(page.getByTestId('component-row-virus-pattern')).toBeVisible();

  // The same server comes back on the same address, with a fresh token: the old cookie is refused.
  const oldToken = bulwark.token;
  await bulwark.restart();
  expect(bulwark.token).not.toBe(oldToken);
  await expect(banner).toContainText('Not signed in.', { timeout: 20_000 });
  await expect(banner).toContainText('Access token missing or wrong: open the URL printed by bulwark serve --console');

  // Opening the new URL signs the browser in again.
  await openConsole(page, bulwark);
  await expect(banner).toHaveCount(0);
});
