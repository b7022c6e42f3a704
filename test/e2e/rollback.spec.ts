// Pinning and rolling a component back from the overview, against real processes: the fixture's
// server and source, and a real `bulwark agent` that follows the server's pins. The server tells its
// agents to fetch a release at once (--agent-spread 0); the agent is in broad, the only ring with
// agents, so every release reaches it at once (the rollout passes empty rings).
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from '@playwright/test';
import { expect, openConsole, PUBLISHED, screenshot, test, type AgentProcess, type StatusJson } from './fixtures.js';

test.use({ serveArgs: ['--agent-spread', '0', '--agent-poll', '10', '--rollout-soak', '600'] });

const ID = 'virus-pattern';
/** The latest virus pattern the source publishes before the server starts (versions go up by 2). */
const FIRST_LATEST = PUBLISHED[ID].first + 2 * (PUBLISHED[ID].versions - 1);

const versionIn = (status: StatusJson) => status.components.find((c) => c.id === ID)?.version;
const row = (page: Page) => page.getByTestId(`component-row-${ID}`);
const installedCell = (page: Page) => row(page).getByRole('cell').nth(0);

/** The agent holds `version` of the virus pattern (it follows within a few seconds; its own status says so). */
async function agentHolds(agent: AgentProcess, version: number): Promise<void> {
  await expect.poll(async () => versionIn(await agent.status()), { timeout: 30_000, message: `${agent.name} holds ${ID} ${version}` }).toBe(version);
}

/** Publish the next virus pattern and install it with the console's Update now; resolves with its version. */
async function releaseNext(page: Page, source: { addPattern(id: string): number; publish(): unknown }): Promise<number> {
  const next = source.addPattern(ID);
  source.publish();
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(installedCell(page)).toHaveText(String(next));
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  return next;
}

test('a component rolled back from the dialog is installed and pinned at the older version, the agent follows; unpinned, the next update brings the newest back', async ({
  page,
  bulwark,
  source,
  agents,
}) => {
  test.slow();
  const alpha = await agents.start('alpha');
  await openConsole(page, bulwark);

  // Nothing to roll back to yet: the store keeps only what was installed here.
  await expect(installedCell(page)).toHaveText(String(FIRST_LATEST));
  await expect(row(page).getByRole('button', { name: 'Pin Virus Pattern', exact: true })).toBeVisible();
  await expect(row(page).getByRole('button', { name: /^Roll back/ })).toHaveCount(0);

  // Two releases, each through Update now: the store keeps the versions before them.
  const previous = await releaseNext(page, source);
  const newest = await releaseNext(page, source);
  await agentHolds(alpha, newest);

  const open = row(page).getByRole('button', { name: 'Roll back Virus Pattern…' });
  const dialog = page.getByRole('dialog', { name: 'Roll back Virus Pattern?' });
  await expect(open).toHaveAttribute('aria-haspopup', 'dialog');

  // The dialog lists the kept versions, newest first, the previous one chosen; Cancel changes nothing.
  await open.click();
  await expect(dialog).toBeVisible();
  await expect(dialog).toHaveAccessibleDescription(/checked again against the vendor's signed metadata kept with it, installed, and pinned there .* and the agents follow\./);
  const choices = dialog.getByRole('radio');
  await expect(choices).toHaveCount(2);
  await expect(dialog.getByRole('group', { name: `Roll back from ${newest} to` })).toBeVisible();
  await expect(dialog.getByRole('radio', { name: String(previous) })).toBeChecked();
  await expect(dialog.getByRole('radio', { name: String(previous) })).toBeFocused();
  await expect(dialog.getByRole('radio', { name: String(FIRST_LATEST) })).not.toBeChecked();
  await expect(dialog.getByRole('button', { name: `Roll back to ${previous}` })).toBeEnabled();
  // The keyboard chooses too: the arrow moves to the older one, and the button follows.
  await page.keyboard.press('ArrowDown');
  await expect(dialog.getByRole('radio', { name: String(FIRST_LATEST) })).toBeChecked();
  await expect(dialog.getByRole('button', { name: `Roll back to ${FIRST_LATEST}` })).toBeVisible();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();
  await expect(open).toBeFocused();
  await expect(installedCell(page)).toHaveText(String(newest));
  expect(versionIn(await bulwark.status())).toBe(newest);

  // The README's picture of the dialog.
  await screenshot(page, 'rollback.png', row(page), async () => {
    await row(page).getByRole('button', { name: 'Roll back Virus Pattern…' }).click();
    await expect(dialog.getByRole('radio', { name: String(previous) })).toBeFocused();
    // The reason, as the CLI's --reason: kept in the history and the audit log.
    await dialog.getByLabel(/^Reason/).fill('false positives on invoices');
  });
  await expect(dialog).toBeVisible();

  // Roll back to the previous version.
  await dialog.getByRole('button', { name: `Roll back to ${previous}` }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByTestId('component-change-result')).toHaveText(`Virus Pattern: rolled back from ${newest} to ${previous}, and pinned there (false positives on invoices).`);
  await expect(installedCell(page)).toContainText(String(previous));
  const badge = installedCell(page).getByTestId('pinned-badge');
  await expect(badge).toHaveText(new RegExp(`^Pinned at ${previous}`));
  await expect(badge).toHaveAttribute('title', 'false positives on invoices');
  // The audit log says who did it, from where, and why.
  const audit = page.getByTestId('audit').getByRole('listitem').first();
  await expect(audit).toContainText(`Rolled back Virus Pattern (${newest} → ${previous}): “false positives on invoices”`);
  await expect(audit).toContainText('console, browser at 127.0.0.1');
  await expect(row(page).getByRole('button', { name: 'Unpin Virus Pattern' })).toBeVisible();
  await expect(row(page).getByRole('button', { name: 'Pin Virus Pattern', exact: true })).toHaveCount(0);
  await expect(page.getByTestId('component-change-error')).toHaveCount(0);

  // The server agrees, and so does the agent, by itself: its server's pins are its pins.
  expect(versionIn(await bulwark.status())).toBe(previous);
  await agentHolds(alpha, previous);
  // The history says what happened.
  await expect(page.getByRole('region', { name: 'Recent updates' }).getByRole('listitem').first()).toContainText(String(previous));

  // A pinned version stays through Update now.
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  await expect(installedCell(page)).toContainText(`Pinned at ${previous}`);
  expect(versionIn(await bulwark.status())).toBe(previous);

  // Unpinned: the next Update now brings the newest back, to the server and to the agent.
  await row(page).getByRole('button', { name: 'Unpin Virus Pattern' }).click();
  await expect(page.getByTestId('component-change-result')).toHaveText('Virus Pattern: unpinned: updates move it again.');
  await expect(badge).toHaveCount(0);
  await expect(row(page).getByRole('button', { name: 'Pin Virus Pattern', exact: true })).toBeFocused();
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(installedCell(page)).toHaveText(String(newest));
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  expect(versionIn(await bulwark.status())).toBe(newest);
  await agentHolds(alpha, newest);

  // Pin keeps the installed version (and says so); what it kept is offered to roll back to.
  await row(page).getByRole('button', { name: 'Pin Virus Pattern', exact: true }).click();
  await expect(page.getByTestId('component-change-result')).toHaveText(`Virus Pattern: pinned at ${newest}.`);
  await expect(installedCell(page).getByTestId('pinned-badge')).toHaveAttribute('title', 'pinned by the operator');
  await row(page).getByRole('button', { name: 'Roll back Virus Pattern…' }).click();
  await expect(dialog.getByRole('radio')).toHaveCount(2);
  await page.keyboard.press('Escape');
  await expect(dialog).toBeHidden();
});

test("a kept version whose file no longer matches the vendor's signed metadata is refused, plainly, and nothing changes", async ({ page, bulwark, source }) => {
  await openConsole(page, bulwark);
  const newest = await releaseNext(page, source);

  // Someone changed the kept file of the version before: its bytes are no longer the vendor's.
  const kept = path.join(bulwark.dataDir, 'store', ID, String(FIRST_LATEST));
  fs.chmodSync(kept, 0o644);
  fs.writeFileSync(kept, Buffer.concat([fs.readFileSync(kept), Buffer.from('tampered')]));

  await row(page).getByRole('button', { name: 'Roll back Virus Pattern…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Roll back Virus Pattern?' });
  await dialog.getByRole('button', { name: `Roll back to ${FIRST_LATEST}` }).click();
  await expect(dialog).toBeHidden();
  const refusal = page.getByTestId('component-change-error');
  await expect(refusal).toHaveRole('alert');
  await expect(refusal).toHaveText(`Could not roll Virus Pattern back to ${FIRST_LATEST}: The vendor's catalogue does not vouch for ${ID} ${FIRST_LATEST} with this content`);
  await expect(page.getByTestId('component-change-result')).toBeEmpty();

  // Nothing changed: the newest stays installed and unpinned, here and on the server.
  await expect(installedCell(page)).toHaveText(String(newest));
  await expect(installedCell(page).getByTestId('pinned-badge')).toHaveCount(0);
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  expect(versionIn(await bulwark.status())).toBe(newest);
});
