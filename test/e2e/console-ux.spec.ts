// The console as an admin has it, at 1280×800 and on a phone (390×844), light and dark: one agent's
// details (its versions beside the server's and the source's, its runs), updating it alone, forgetting
// it; long names on one line; every view without sideways scrolling, its actions on screen; the
// README's phone picture.
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from '@playwright/test';
import { expect, openConsole, screenshot, test } from './fixtures.js';

test.use({ serveArgs: ['--agent-spread', '0', '--agent-poll', '10'] });

const LONG = 'build-agent-07.eu-west-2.datacentre.example-corporation.internal';

/** The page's width in CSS pixels (what scrolls sideways if over the viewport). */
const pageWidth = (page: Page) => page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));

/** Every visible button and select lies inside the viewport horizontally. */
async function controlsOnScreen(page: Page, width: number): Promise<string[]> {
  return page.evaluate((w) => {
    const off: string[] = [];
    for (const el of document.querySelectorAll<HTMLElement>('button, select, input, a.view-link')) {
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0 || el.closest('dialog:not([open])') || el.closest('details:not([open])')) continue;
      if (box.left < -1 || box.right > w + 1) off.push(`${el.tagName} "${(el.textContent ?? el.getAttribute('aria-label') ?? '').trim().slice(0, 40)}" at ${Math.round(box.left)}–${Math.round(box.right)}`);
    }
    return off;
  }, width);
}

test("an agent's details: versions against the server and the source, its runs; update it alone; forget it", async ({ page, bulwark, agents }) => {
  const [alpha] = await Promise.all([agents.start('alpha'), agents.start(LONG)]);
  await openConsole(page, bulwark, '#agents');
  const row = page.getByTestId('agent-row-alpha');
  await expect(row.getByTestId('agent-state')).toHaveText('current');

  // A long FQDN stays on one line (cut with an ellipsis, whole on hover).
  const longName = page.getByTestId(`agent-row-${LONG}`).locator('.agent-name');
  const lineHeight = await longName.evaluate((el) => parseFloat(getComputedStyle(el).lineHeight) || 20);
  expect((await longName.boundingBox())!.height).toBeLessThanOrEqual(lineHeight * 1.5);
  await expect(page.getByTestId(`agent-row-${LONG}`).getByRole('button', { name: new RegExp(LONG.replace(/\./g, '\\.')) })).toBeVisible();

  await row.getByRole('button', { name: /^alpha/ }).click();
  const details = page.getByRole('dialog', { name: 'alpha' });
  await expect(details).toBeVisible();
  const listed = JSON.parse((await bulwark.cli(['agents', 'list', '--data', bulwark.dataDir, '--json'])).stdout) as { agents: { id: string; name: string }[] };
  const id = listed.agents.find((a) => a.name === 'alpha')!.id;
  await expect(details.getByTestId('agent-id')).toHaveText(id);
  const versions = details.getByTestId('detail-version-virus-pattern').getByRole('cell');
  await expect(versions).toHaveText(['1873', '1873', '1873']);
  await expect(details.getByTestId('agent-runs').getByRole('listitem').first()).toContainText('succeeded');

  // Update this agent alone: it hears the request, the other does not.
  const mark = alpha.process.stdout.length;
  await details.getByRole('button', { name: 'Update this agent now' }).click();
  await expect(details.getByTestId('agent-action-result')).toHaveText('Asked alpha to update now; it starts within its spread.');
  await alpha.process.waitFor(/the server asked for an update/);
  expect(alpha.process.stdout.slice(mark)).toMatch(/the server asked for an update/);

  // Forget asks first; then the row goes, the CLI agrees and the audit log says who.
  await details.getByRole('button', { name: 'Forget…' }).click();
  await expect(details.getByRole('alert')).toContainText('Forget alpha? Its credential is refused from now on.');
  await details.getByRole('button', { name: 'Forget alpha' }).click();
  await expect(details).toBeHidden();
  await expect(row).toHaveCount(0);
  const after = JSON.parse((await bulwark.cli(['agents', 'list', '--data', bulwark.dataDir, '--json'])).stdout) as { agents: { name: string }[] };
  expect(after.agents.map((a) => a.name)).toEqual([LONG]);
  await page.getByRole('link', { name: 'Overview' }).click();
  const audit = page.getByTestId('audit').getByRole('listitem');
  await expect(audit.nth(0)).toContainText(`Forgot the agent alpha (${id.slice(0, 8)})`);
  await expect(audit.nth(1)).toContainText(`Asked to update now: alpha (${id.slice(0, 8)})`);
});

for (const colorScheme of ['light', 'dark'] as const) {
  test(`every view fits a phone (390×844) and a desktop (1280×800), ${colorScheme}: no sideways scrolling, every action on screen`, async ({ page, bulwark, agents }) => {
    await agents.start(LONG, { ring: 'canary' });
    await page.emulateMedia({ colorScheme });
    for (const [width, height] of [
      [390, 844],
      [1280, 800],
    ] as const) {
      await page.setViewportSize({ width, height });
      await openConsole(page, bulwark);
      for (const view of ['', '#agents', '#settings', '#settings/proxy', '#settings/notifications']) {
        await test.step(`${width}px ${view || '#overview'}`, async () => {
          await page.evaluate((hash) => (location.hash = hash), view);
          await expect(page.locator('#view-heading')).toBeAttached();
          if (view === '#agents') await expect(page.getByTestId(`agent-row-${LONG}`)).toBeVisible();
          expect(await pageWidth(page)).toBeLessThanOrEqual(width);
          expect(await controlsOnScreen(page, width)).toEqual([]);
        });
      }
      // The overview's actions and the agents' versions and rings are there, not hidden.
      await page.evaluate(() => (location.hash = ''));
      const pin = page.getByRole('button', { name: 'Pin Virus Pattern', exact: true });
      await pin.scrollIntoViewIfNeeded();
      await expect(pin).toBeInViewport();
      await page.evaluate(() => (location.hash = '#agents'));
      const agentRow = page.getByTestId(`agent-row-${LONG}`);
      await expect(agentRow.getByTestId('agent-version-virus-pattern')).toBeVisible();
      await expect(agentRow.getByRole('combobox', { name: /^Ring of / })).toBeVisible();
      await expect(page.getByTestId('rollout-ring-canary').getByTestId('ring-counts')).toBeVisible();
      const card = await page.getByTestId('rollout').boundingBox();
      const counts = await page.getByTestId('rollout-ring-canary').getByTestId('ring-counts').boundingBox();
      expect(counts!.x + counts!.width).toBeLessThanOrEqual(card!.x + card!.width);
      // A dialog fits the screen: the agent's details.
      await agentRow.getByRole('button', { name: /^build-agent-07/ }).click();
      const details = page.getByTestId('agent-details');
      await expect(details.getByTestId('agent-id')).toBeVisible();
      const box = await details.boundingBox();
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(width);
      await details.getByRole('button', { name: 'Close' }).click();
      await page.evaluate(() => (location.hash = ''));
      await expect(page.getByTestId('headline')).toBeVisible();
      if (width === 390) {
        await page.getByRole('button', { name: 'Update now' }).scrollIntoViewIfNeeded();
        await expect(page.getByTestId('headline')).toHaveText(/^Up to date: server and 1 agent/);
      }
    }
    if (colorScheme === 'light') {
      // The README's phone picture: the overview at 390×844.
      await page.setViewportSize({ width: 390, height: 844 });
      await screenshot(page, 'console-phone.png', page.getByTestId('headline'));
    }
  });
}

test('charts: downloads against full files, the versions\' age against the source, the fleet over time; each with its table, in both themes', async ({ page, bulwark, source, agents }) => {
  // A day of the fleet as an earlier run of this server sampled it (DATA/fleet-history.jsonl).
  const day = Date.now() - 24 * 3_600_000;
  const history = Array.from({ length: 8 }, (_, i) => JSON.stringify({ at: new Date(day + i * 3 * 3_600_000).toISOString(), current: 3 + i, held: i % 3, outdated: 8 - i, failed: i === 4 ? 2 : 0 }));
  fs.writeFileSync(path.join(bulwark.dataDir, 'fleet-history.jsonl'), history.join('\n') + '\n');
  await bulwark.restart();
  await agents.start('alpha');

  await openConsole(page, bulwark);
  // A newer virus pattern arrives by incremental: far less than its full file.
  source.addPattern('virus-pattern');
  source.publish();
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(page.getByRole('region', { name: 'Recent updates' }).getByRole('listitem').first()).toContainText('incremental');

  const savings = page.getByTestId('chart-savings');
  await expect(savings.getByRole('img', { name: /^Downloaded vs full files/ })).toBeVisible();
  await savings.getByText('As a table').click();
  const rows = savings.getByRole('table').getByRole('row');
  await expect(rows).toHaveCount(3); // the header, the first run (in full), the incremental
  const last = await rows.nth(2).getByRole('cell').allTextContents();
  const kb = (text: string) => Number.parseFloat(text) * (text.includes('MB') ? 1000 : text.includes('kB') ? 1 : 0.001);
  expect(kb(last[1]!)).toBeLessThan(kb(last[2]!) / 4);

  const age = page.getByTestId('chart-age');
  await expect(age.getByRole('img', { name: /^Age of the installed versions/ })).toBeVisible();
  await expect(age.locator('rect.age')).toHaveCount(4);
  await expect(age.getByRole('listitem').filter({ hasText: 'Virus Pattern' })).toContainText(/Virus Pattern: \d+ minutes?/);

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  const fleet = page.getByTestId('chart-fleet');
  await expect(fleet.getByRole('img', { name: /^Fleet over time/ })).toBeVisible();
  await fleet.getByText('As a table').click();
  expect(await fleet.getByRole('table').getByRole('row').count()).toBeGreaterThanOrEqual(9);
  // The running server samples the fleet too (alpha enrolled since the restart).
  await expect.poll(() => fs.readFileSync(path.join(bulwark.dataDir, 'fleet-history.jsonl'), 'utf8').trim().split('\n').length, { timeout: 15_000 }).toBeGreaterThan(8);

  // Both themes: the bars take the theme's colours.
  const fills = async () => fleet.locator('rect.current').first().evaluate((el) => getComputedStyle(el).fill);
  const light = await fills();
  await page.emulateMedia({ colorScheme: 'dark' });
  await expect.poll(fills).not.toBe(light);
  expect(light).not.toBe('rgb(0, 0, 0)');
});
