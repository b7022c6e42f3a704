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

test('opening the console without the token or with a wrong one gives a sign-in page (401), with nothing of the console in it', async ({ page, bulwark, browserErrors }) => {
  browserErrors.allow(REFUSED);
  const wrongToken = bulwark.token.slice(0, -1) + (bulwark.token.endsWith('A') ? 'B' : 'A');
  for (const [address, wrong] of [[`${bulwark.origin}/`, false], [`${bulwark.origin}/?token=wrong`, true], [`${bulwark.origin}/?token=${wrongToken}`, true], [`${bulwark.origin}/?token=`, false], [`${bulwark.origin}/#settings`, false]] as const) {
    await test.step(address, async () => {
      const response = await page.goto(address);
      expect(response?.status()).toBe(401);
      expect(response?.headers()['content-type']).toBe('text/html; charset=utf-8');
      expect(response?.headers()['set-cookie']).toBeUndefined();
      await expect(page.getByRole('heading', { name: 'Sign in to the Bulwark console' })).toBeVisible();
      await expect(page.getByText('bulwark console-url --data DIR')).toBeVisible();
      await expect(page.getByRole('alert')).toHaveCount(wrong ? 1 : 0);
      if (wrong) await expect(page.getByRole('alert')).toHaveText("That access token is not this server's: it was mistyped, or replaced since.");
      // Nothing of the console reached the browser: no script, no data.
      await expect(page.locator('#app')).toHaveCount(0);
      await expect(page.locator('script')).toHaveCount(0);
      expect(await page.content()).not.toMatch(/<script|data-testid|Update now|virus/i);
      expect(await page.context().cookies()).toEqual([]);
    });
  }
  // The form signs in with the token, as the printed address does.
  await page.getByLabel('Access token').fill(bulwark.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${bulwark.origin}/`);
  await expect(page.getByTestId('engine-state')).toBeVisible();
});

test('the console itself needs the token: its files, the API and the event stream answer 401 without the cookie', async ({ bulwark }) => {
  const settingsBefore = bulwark.settingsFile();
  const anonymous = await playwrightRequest.newContext({ baseURL: bulwark.origin });
  try {
    const call = { headers: { 'content-type': 'application/json', 'x-bulwark-console': '1' }, data: null };
    // The page itself: the sign-in page, without a script or anything of the console.
    for (const page of [await anonymous.get('/'), await anonymous.get('/index.html')]) {
      expect(page.status(), page.url()).toBe(401);
      expect(await page.text()).not.toMatch(/<script|assets\//);
    }
    const answers = [
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

test('after a restart the console is where it was, with the same access: an open tab reconnects and a bookmark opens', async ({ page, bulwark, browserErrors }) => {
  // The event stream cut by the stopping server, and the tab's attempts to reconnect while it is
  // down (Chromium reports either, depending on timing).
  browserErrors.allow(/^console\.error: Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING$/);
  browserErrors.allow(/^console\.error: Failed to load resource: net::ERR_CONNECTION_REFUSED$/);
  await openConsole(page, bulwark);
  await expect(page.getByTestId('engine-state')).toBeVisible();
  await expect(page.getByTestId('connection-banner')).toHaveCount(0);
  const printed = await bulwark.cli(['console-url', '--data', bulwark.dataDir]);
  expect(printed.stdout).toBe(`${bulwark.url}\n`);

  await bulwark.process.stop('SIGTERM');
  const banner = page.getByTestId('connection-banner');
  await expect(banner).toContainText('Connection lost — reconnecting…');
  // What was shown stays on screen.
  await expect(page.getByTestId('component-row-virus-pattern')).toBeVisible();

  const before = { url: bulwark.url, token: bulwark.token };
  await bulwark.restart();
  expect({ url: bulwark.url, token: bulwark.token }).toEqual(before);
  // The open tab comes back by itself, signed in, with live buttons.
  await expect(banner).toHaveCount(0, { timeout: 20_000 });
  await expect(page.getByRole('button', { name: 'Update now' })).toBeEnabled();
  // A bookmark of the console (its address, no token) opens it in this browser.
  const other = await page.context().newPage();
  await other.goto(`${bulwark.origin}/#agents`);
  await expect(other.getByRole('heading', { name: 'Agents', level: 1 })).toBeVisible();
  await other.close();
  const mode = fs.statSync(path.join(bulwark.dataDir, 'console.json')).mode & 0o777;
  expect(mode).toBe(0o600);
});

test('when the access token is replaced, an open tab is signed out: greyed out, no action works, and it signs in again in place', async ({ page, bulwark, browserErrors }) => {
  browserErrors.allow(REFUSED);
  browserErrors.allow(/^console\.error: Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING$/);
  await openConsole(page, bulwark, '#agents');
  await expect(page.getByRole('searchbox', { name: 'Filter agents' })).toBeEnabled();

  const rotated = await bulwark.cli(['console-url', '--data', bulwark.dataDir, '--rotate']);
  expect(rotated.code, rotated.stderr).toBe(0);
  const newUrl = rotated.stdout.trim();
  const newToken = new URL(newUrl).searchParams.get('token')!;
  expect(newToken).not.toBe(bulwark.token);
  expect(new URL(newUrl).origin).toBe(bulwark.origin);

  const banner = page.getByTestId('connection-banner');
  await expect(banner).toContainText('Signed out', { timeout: 20_000 });
  await expect(banner).toContainText('its access token was replaced');
  // Stale data stays visible, but every control of the view is disabled.
  const view = page.getByTestId('view');
  await expect(view).toHaveAttribute('disabled', '');
  await expect(view.getByRole('heading', { name: 'Agents', level: 1, includeHidden: true })).toBeAttached();
  const buttons = view.locator('button, input, select');
  expect(await buttons.count()).toBeGreaterThan(3);
  for (const control of await buttons.all()) await expect(control).toBeDisabled();

  // Signing in again with the new token, from the banner, brings the same view back, live.
  await banner.getByLabel('Access token').fill(newToken);
  await banner.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${bulwark.origin}/#agents`);
  await expect(banner).toHaveCount(0);
  await expect(page.getByRole('searchbox', { name: 'Filter agents' })).toBeEnabled();
  // The operator's action is in the audit log.
  const audit = fs.readFileSync(path.join(bulwark.dataDir, 'audit.jsonl'), 'utf8');
  expect(audit).toMatch(/"via":"cli".*"action":"rotate-console-token"/);
});
