// The Agents view against real processes: the fixture's server and source, and real `bulwark agent`
// children (each with its own data directory) that enroll, follow the server's releases and report.
// The server tells its agents to fetch a release at once (--agent-spread 0) and to poll and report
// every 10 s (--agent-poll 10, the least it takes), so an agent is unreachable after 20 s of silence.
import net from 'node:net';
import type { Page } from '@playwright/test';
import { expect, holdRequests, NAMES, openConsole, PUBLISHED, test, type Agents, type ComponentId } from './fixtures.js';

test.use({ serveArgs: ['--agent-spread', '0', '--agent-poll', '10'] });

/** The latest version of each published component (versions go up by 2). */
const latest = (id: ComponentId) => PUBLISHED[id].first + 2 * (PUBLISHED[id].versions - 1);
const IDS = Object.keys(PUBLISHED) as ComponentId[];

/** alpha and bravo, started side by side; resolves once both run (enrolled, start-up update done). */
const startTwo = (agents: Agents) => Promise.all([agents.start('alpha'), agents.start('bravo')]);

const agentsTable = (page: Page) => page.getByRole('table', { name: 'Agents' });
const row = (page: Page, name: string) => page.getByTestId(`agent-row-${name}`);
/** The agents' names in the order the table lists them. */
const names = (page: Page) => agentsTable(page).locator('tbody th .agent-name').allTextContents();

async function expectVersions(page: Page, name: string, versions: Partial<Record<ComponentId, number>>): Promise<void> {
  for (const [id, version] of Object.entries(versions)) {
    await expect(row(page, name).getByTestId(`agent-version-${id}`), `${name} ${id}`).toHaveText(String(version));
  }
}

test('the Agents view lists both agents as current with their versions; the counts, filter and sort narrow and order them', async ({ page, bulwark, agents }) => {
  await startTwo(agents);
  await openConsole(page, bulwark);

  // The overview's one line about the agents leads to the view.
  const line = page.getByTestId('agents-summary');
  await expect(line).toHaveText('2 of 2 current');
  await expect(line).toHaveAccessibleName('Agents: 2 of 2 current');
  await expect(page.getByRole('link', { name: 'Overview' })).toHaveAttribute('aria-current', 'page');
  await line.click();
  await expect(page).toHaveURL(`${bulwark.origin}/#agents`);
  await expect(page).toHaveTitle('Agents · Bulwark');
  await expect(page.getByRole('heading', { name: 'Agents', level: 1 })).toBeFocused();
  await expect(page.getByRole('link', { name: 'Agents', exact: true })).toHaveAttribute('aria-current', 'page');
  await expect(page.getByRole('link', { name: 'Overview' })).not.toHaveAttribute('aria-current', /.*/);

  // Both, current, from loopback, with every component at the version the server holds.
  await expect(agentsTable(page).locator('tbody tr')).toHaveCount(2);
  const all = Object.fromEntries(IDS.map((id) => [id, latest(id)]));
  for (const name of ['alpha', 'bravo']) {
    await expect(row(page, name).getByTestId('agent-state')).toHaveText('current');
    await expect(row(page, name).getByRole('cell').nth(1)).toContainText('127.0.0.1');
    await expect(row(page, name).getByRole('cell').nth(1)).toContainText(/IPv[46]/);
    await expectVersions(page, name, all);
    // Each version's abbreviation is explained (on hover, to screen readers, and in the legend under the table).
    await expect(row(page, name).locator('abbr', { hasText: 'VP' })).toHaveAttribute('title', NAMES['virus-pattern']);
    await expect(page.getByTestId('versions-legend')).toContainText('VP Virus Pattern');
    await expect(row(page, name).getByRole('cell').nth(4)).toContainText('succeeded');
  }
  await expect(page.getByRole('button', { name: '2 agents' })).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByRole('button', { name: '2 current' })).toBeVisible();
  for (const state of ['outdated', 'updating', 'failed', 'unreachable']) await expect(page.getByRole('button', { name: `0 ${state}` })).toBeVisible();
  await expect(page.getByText(`Agents connect to ${bulwark.agentsUrl}`)).toBeVisible();

  // The text filter (sent once typing pauses).
  const filter = page.getByRole('searchbox', { name: 'Filter agents' });
  await filter.fill('brav');
  await expect.poll(() => names(page)).toEqual(['bravo']);
  await expect(page.getByTestId('agents-matching')).toHaveText('1 of 2');
  await filter.fill('127.0.0');
  await expect.poll(() => names(page)).toEqual(['alpha', 'bravo']);
  await filter.fill('');
  await expect(page.getByTestId('agents-matching')).toHaveCount(0);

  // The state select, and the counts as filters: none unreachable, both current.
  const select = page.getByRole('combobox', { name: 'State' });
  await select.selectOption('unreachable');
  await expect(page.getByTestId('agents-empty')).toContainText('No agent matches this filter.');
  await page.getByRole('button', { name: 'Clear the filter' }).click();
  await expect(select).toHaveValue('');
  await expect.poll(() => names(page)).toEqual(['alpha', 'bravo']);
  await page.getByRole('button', { name: '2 current' }).click();
  await expect(page.getByRole('button', { name: '2 current' })).toHaveAttribute('aria-pressed', 'true');
  await expect(select).toHaveValue('current');
  await expect.poll(() => names(page)).toEqual(['alpha', 'bravo']);
  await page.getByRole('button', { name: '0 failed' }).click();
  await expect(page.getByTestId('agents-empty')).toContainText('No agent matches this filter.');
  await page.getByRole('button', { name: '2 agents' }).click();
  await expect(select).toHaveValue('');

  // Sorting: by state (the default), then by name either way; aria-sort says which.
  const header = (name: string) => agentsTable(page).getByRole('columnheader', { name });
  await expect(header('State')).toHaveAttribute('aria-sort', 'ascending');
  await header('Name').getByRole('button').click();
  await expect(header('Name')).toHaveAttribute('aria-sort', 'ascending');
  await expect(header('State')).not.toHaveAttribute('aria-sort', /.*/);
  await expect.poll(() => names(page)).toEqual(['alpha', 'bravo']);
  await header('Name').getByRole('button').click();
  await expect(header('Name')).toHaveAttribute('aria-sort', 'descending');
  await expect.poll(() => names(page)).toEqual(['bravo', 'alpha']);
  // Last seen starts with the most recent.
  await header('Last seen').getByRole('button').click();
  await expect(header('Last seen')).toHaveAttribute('aria-sort', 'descending');
  await expect(agentsTable(page).locator('tbody tr')).toHaveCount(2);
  // (The README's picture of this view is taken in rollout.spec.ts, with a release under way.)
});

test('a new release reaches the agents: after "Update now" their rows go current at the new version, live; "Update agents now" asks both', async ({ page, bulwark, source, agents }) => {
  const [alpha, bravo] = await startTwo(agents);
  await openConsole(page, bulwark);
  const before = latest('virus-pattern');

  // A new virus pattern; the server's download of it waits until the test looks at the agents.
  const next = source.addPattern('virus-pattern');
  source.publish();
  const hold = holdRequests(source, new RegExp(`^/targets/virus-pattern/[0-9a-f]{64}\\.v_${before}\\.${next}$`));
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(page.getByTestId('engine-state')).toHaveText(/Virus Pattern \(downloading, incremental\)$/);
  expect(hold.count).toBe(1);

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  for (const name of ['alpha', 'bravo']) {
    await expect(row(page, name).getByTestId('agent-state')).toHaveText('current');
    await expectVersions(page, name, { 'virus-pattern': before });
  }
  // From here on the page is not reloaded: this mark would be gone if it were.
  await page.evaluate(() => ((window as unknown as { stillTheSamePage: boolean }).stillTheSamePage = true));

  hold.release();
  for (const name of ['alpha', 'bravo']) {
    await expectVersions(page, name, { 'virus-pattern': next });
    await expect(row(page, name).getByTestId('agent-state')).toHaveText('current');
    await expect(row(page, name).getByRole('cell').nth(4)).toContainText('succeeded');
  }
  await expect(page.getByRole('button', { name: '2 current' })).toBeVisible();
  // The agents fetched the incremental the server made, and say so themselves.
  for (const agent of [alpha, bravo]) await agent.process.waitFor(new RegExp(`virus-pattern ${before} → ${next}\\s+incremental`));
  expect(await page.evaluate(() => (window as unknown as { stillTheSamePage?: boolean }).stillTheSamePage)).toBe(true);

  // Asking the agents to update now reaches both, over their notification streams.
  const button = page.getByRole('button', { name: 'Update agents now' });
  await button.click();
  await expect(page.getByTestId('update-agents-result')).toHaveText('Asked 2 agents to update now.');
  await expect(button).toBeEnabled();
  for (const agent of [alpha, bravo]) await agent.process.waitFor(/the server asked for an update/);
});

test('the join string is shown, copied and rotated: the old one is refused, an agent with the new one enrolls; a canary join string enrolls into canary', async ({ page, context, bulwark, agents }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: bulwark.origin });
  const oldToken = await agents.token();
  // The join string: the token and the SHA-256 of the vendor's root.json the server trusts.
  expect(oldToken).toMatch(/^bw\S+:sha256:[0-9a-f]{64}$/);
  await agents.start('alpha', oldToken);
  await openConsole(page, bulwark, '#agents');
  await expect(row(page, 'alpha').getByTestId('agent-state')).toHaveText('current');

  // Hidden until asked for.
  const value = page.getByTestId('enrollment-token');
  await expect(value).toHaveCount(0);
  await expect(page.getByTestId('enrollment-token-hidden')).not.toContainText(oldToken);
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(value).toHaveValue(oldToken);
  await expect(page.getByTestId('token-note')).toHaveText('Agents that enroll with it join the broad ring.');
  await page.getByRole('button', { name: 'Hide' }).click();
  await expect(value).toHaveCount(0);

  await page.getByRole('button', { name: 'Copy' }).click();
  await expect(page.getByTestId('token-note')).toHaveText('Copied to the clipboard.');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(oldToken);

  // Rotating asks first; cancelling changes nothing.
  await page.getByRole('button', { name: 'Rotate…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Rotate the broad enrollment token?' });
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText('Agents already enrolled keep working');
  await expect(dialog).toContainText('New agents will need the new join string.');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();
  expect(await agents.token()).toBe(oldToken);

  await page.getByRole('button', { name: 'Rotate…' }).click();
  await dialog.getByRole('button', { name: 'Rotate token' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByTestId('token-note')).toHaveText('The broad token was rotated. New agents need this new join string; enrolled agents keep working.');
  await expect(value).not.toHaveValue(oldToken);
  const newToken = await value.inputValue();
  expect(newToken).toMatch(/^bw\S+:sha256:[0-9a-f]{64}$/);
  expect(newToken.split(':')[0]).not.toBe(oldToken.split(':')[0]);
  expect(newToken.split(':').slice(1)).toEqual(oldToken.split(':').slice(1)); // the same root
  // The server agrees.
  expect(await agents.token()).toBe(newToken);

  // An agent with the old token is refused: exit code 1, and it says why.
  const refused = agents.spawn('charlie', oldToken);
  expect(await refused.exited).toEqual({ code: 1, signal: null });
  expect(refused.process.stderr).toMatch(/enrollment token/);
  expect(bulwark.process.stdout).toMatch(/refused an enrollment from 127\.0\.0\.1 \(wrong or rotated enrollment token, or a malformed request\): it gave the name "charlie"/);

  // One with the new token enrolls and appears, without reloading the page; alpha keeps working.
  await agents.start('delta', newToken);
  await expect(row(page, 'delta').getByTestId('agent-state')).toHaveText('current');
  await expect(row(page, 'charlie')).toHaveCount(0);
  await expect(page.getByRole('button', { name: '2 agents' })).toBeVisible();
  await page.getByRole('button', { name: 'Update agents now' }).click();
  await expect(page.getByTestId('update-agents-result')).toHaveText('Asked 2 agents to update now.');

  // Each ring has its own join string: the operator picks the ring, the agent joins it.
  await page.getByTestId('enrollment-ring').selectOption('canary');
  await expect(page.getByTestId('token-note')).toHaveText('Agents that enroll with it join the canary ring.');
  const canary = await value.inputValue();
  expect(canary).not.toBe(newToken);
  expect(await agents.token({ ring: 'canary' })).toBe(canary);
  const echo = await agents.start('echo', canary);
  await echo.process.waitFor(/in the canary ring \(its enrollment token's\)/);
  await expect(row(page, 'echo').getByTestId('agent-ring')).toHaveValue('canary');
});

test('an agent killed outright turns unreachable after twice its poll interval, and the overview shows the reminder', async ({ page, bulwark, agents }) => {
  test.slow();
  const [alpha] = await startTwo(agents);
  await openConsole(page, bulwark, '#agents');
  await expect(row(page, 'alpha').getByTestId('agent-state')).toHaveText('current');
  await expect(row(page, 'bravo').getByTestId('agent-state')).toHaveText('current');

  // No goodbye: SIGKILL by PID, so it never reports again.
  const killed = Date.now();
  process.kill(alpha.process.pid, 'SIGKILL');
  await alpha.exited;

  // Unreachable once silent for 2 × 10 s; the server notices at its next look at the registry (the
  // other agent's reports, at the latest its half-minute refresh), and the view follows its event.
  await expect
    .poll(() => row(page, 'alpha').getByTestId('agent-state').textContent(), { timeout: 45_000, intervals: [500] })
    .toBe('unreachable');
  const seconds = (Date.now() - killed) / 1000;
  test.info().annotations.push({ type: 'unreachable after', description: `${seconds.toFixed(1)} s` });
  expect(seconds, 'not before twice the poll interval after its last report (at most 12 s before the kill)').toBeGreaterThan(20 - 12);
  await expect(row(page, 'bravo').getByTestId('agent-state')).toHaveText('current');
  await expect(page.getByRole('button', { name: '1 unreachable' })).toBeVisible();
  await expect(page.getByRole('button', { name: '1 current' })).toBeVisible();

  await page.getByRole('link', { name: 'Overview' }).click();
  await expect(page.getByTestId('agents-summary')).toHaveText('1 of 2 current · 1 unreachable');
  const card = page.getByRole('status').filter({ has: page.getByRole('heading', { name: '1 agent has not been heard from' }) });
  await expect(card).toBeVisible();
  await expect(card).toContainText('alpha did not report for more than twice its poll interval');
  // The command is shown as code, without its backticks.
  await expect(card).toContainText(`What to do: Check that bulwark agent runs there and can reach this server at ${bulwark.agentsUrl}.`);
  await expect(card.locator('code')).toHaveText('bulwark agent');
});

test.describe('with agents turned off', () => {
  test.use({ agentsListen: 'off' });

  test('the overview and the Agents view say so, and nobody can be asked to update', async ({ page, bulwark }) => {
    await openConsole(page, bulwark);
    await expect(page.getByTestId('agents-summary')).toHaveText('turned off');
    await page.getByTestId('agents-summary').click();
    await expect(page.getByTestId('agents-notice')).toContainText('Agents are turned off on this server.');
    await expect(page.getByTestId('agents-notice')).toContainText('bulwark serve --agents-listen ADDRESS:PORT');
    await expect(page.getByRole('button', { name: 'Update agents now' })).toBeDisabled();
    await expect(page.getByTestId('agents-empty')).toContainText('No agents yet.');
  });
});

test.describe('with the agent address taken', () => {
  // Something else holds the address the server is told to serve agents on.
  test.use({
    agentsListen: async ({}, use) => {
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
      await use(`127.0.0.1:${(squatter.address() as net.AddressInfo).port}`);
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    },
  });

  test('the overview and the Agents view say why agents cannot connect, and what to do', async ({ page, bulwark, agentsListen }) => {
    await openConsole(page, bulwark);
    const card = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'Agents cannot connect to this server' }) });
    await expect(card).toContainText(`Cannot serve agents on ${agentsListen}`);
    await expect(page.getByTestId('agents-summary')).toHaveText('cannot be served');

    await page.getByRole('link', { name: 'Agents', exact: true }).click();
    const notice = page.getByTestId('agents-notice');
    await expect(notice).toHaveRole('alert');
    await expect(notice).toContainText('Agents cannot connect to this server.');
    await expect(notice).toContainText(`Cannot serve agents on ${agentsListen}`);
    await expect(notice).toContainText('bulwark serve --agents-listen ADDRESS:PORT');
    await expect(page.getByRole('button', { name: 'Update agents now' })).toBeDisabled();
  });
});
