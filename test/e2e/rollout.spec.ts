// Rolling releases out ring by ring, against real processes: the fixture's server and source, and real
// `bulwark agent` children enrolled in canary (with the canary join string) or broad. The soak is ten minutes
// (--rollout-soak 600), far longer than a test: a ring after canary is released only by the console's
// Promote now. Agents fetch a release at once (--agent-spread 0) and report every 10 s (--agent-poll 10).
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from '@playwright/test';
import { tempDir } from '../helpers/fixtures.js';
import { expect, openConsole, PUBLISHED, screenshot, test, type AgentProcess, type StatusJson } from './fixtures.js';

test.use({ serveArgs: ['--agent-spread', '0', '--agent-poll', '10', '--rollout-soak', '600'] });

const ID = 'virus-pattern';
/** The latest virus pattern the source publishes before the server starts (versions go up by 2). */
const BEFORE = PUBLISHED[ID].first + 2 * (PUBLISHED[ID].versions - 1);

const versionIn = (status: StatusJson) => status.components.find((c) => c.id === ID)?.version;
const card = (page: Page) => page.getByRole('region', { name: /^Rollout/ });
const ring = (page: Page, name: 'canary' | 'early' | 'broad') => card(page).getByTestId(`rollout-ring-${name}`);
const row = (page: Page, name: string) => page.getByTestId(`agent-row-${name}`);

interface RolloutJson {
  release?: number;
  stage?: string;
  halted?: { reason: string };
}

async function agentHolds(agent: AgentProcess, version: number): Promise<void> {
  await expect.poll(async () => versionIn(await agent.status()), { timeout: 30_000, message: `${agent.name} holds ${ID} ${version}` }).toBe(version);
}

/** Publish the next virus pattern and install it on the server with Update now (on the overview); resolves with its version. */
async function releaseNext(page: Page, source: { addPattern(id: string): number; publish(): unknown }): Promise<number> {
  const next = source.addPattern(ID);
  source.publish();
  await page.getByRole('button', { name: 'Update now' }).click();
  await expect(page.getByTestId(`component-row-${ID}`).getByRole('cell').nth(0)).toHaveText(String(next));
  await expect(page.getByTestId('engine-state')).toHaveText('Up to date');
  return next;
}

test('a release goes to canary first and broad holds; Halt and Resume change the card; Promote now releases broad; an agent moved to another ring shows it after a reload and in the CLI', async ({
  page,
  bulwark,
  source,
  agents,
}) => {
  test.slow();
  const [alpha, bravo] = await Promise.all([agents.start('alpha', { ring: 'canary' }), agents.start('bravo', { ring: 'broad' })]);
  const rolloutStatus = async () => {
    const result = await bulwark.cli(['rollout', 'status', '--data', bulwark.dataDir, '--json']);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as RolloutJson;
  };
  await openConsole(page, bulwark);
  const mark = bravo.process.stdout.length;
  const next = await releaseNext(page, source);
  const { release, stage } = await rolloutStatus();
  expect(stage).toBe('canary');

  // Canary gets it; broad holds its version (its agent was told of the release, and ran an update that held it).
  await agentHolds(alpha, next);
  await expect.poll(() => bravo.process.stdout.slice(mark), { timeout: 20_000 }).toMatch(new RegExp(`the server announced release ${release}\\b[\\s\\S]*update done`));
  expect(versionIn(await bravo.status())).toBe(BEFORE);

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  await expect(card(page).getByRole('heading', { name: `Rollout release ${release}` })).toBeVisible();
  await expect(card(page).getByTestId('rollout-stage')).toContainText('Canary got it');
  await expect(card(page).getByTestId('rollout-stage')).toContainText('broad follows after a soak of 10 minutes without failures (in 10 minutes)');
  await expect(ring(page, 'canary').getByTestId('ring-state')).toHaveText('released');
  await expect(ring(page, 'canary').getByTestId('ring-counts')).toHaveText('1 of 1 current');
  await expect(ring(page, 'early').getByTestId('ring-state')).toHaveText('held');
  await expect(ring(page, 'early').getByTestId('ring-counts')).toHaveText('no agents');
  await expect(ring(page, 'broad').getByTestId('ring-state')).toHaveText('held');
  await expect(ring(page, 'broad').getByTestId('ring-counts')).toHaveText('0 of 1 current');
  await expect(ring(page, 'broad').getByRole('progressbar', { name: 'Broad: 0 of 1 current' })).toBeVisible();
  await expect(row(page, 'alpha').getByTestId(`agent-version-${ID}`)).toHaveText(String(next));
  await expect(row(page, 'bravo').getByTestId(`agent-version-${ID}`)).toHaveText(String(BEFORE));
  await expect(row(page, 'alpha').getByRole('combobox', { name: 'Ring of alpha' })).toHaveValue('canary');
  await expect(row(page, 'bravo').getByRole('combobox', { name: 'Ring of bravo' })).toHaveValue('broad');
  // bravo says what keeps it behind the vendor's latest (issue 20): in a few words in its row, in full
  // in its title; the table still fits the page.
  const order = row(page, 'bravo').getByTestId('agent-order');
  await expect(order).toHaveText(`${ID} held by the server`);
  await expect(order).toHaveAttribute('title', new RegExp(`^${ID} held by the server's rollout at ${BEFORE} since \\S+; the vendor's latest is ${next} \\(the hold lapses at \\S+\\)$`));
  expect(await page.evaluate(() => [document.documentElement, ...document.querySelectorAll('.scroll')].every((e) => e.scrollWidth <= e.clientWidth))).toBe(true);

  // The README's picture of the Agents view: a release in canary, broad held.
  await screenshot(page, 'agents.png', ring(page, 'broad').getByText('held'));

  // Halt: the card says so and offers Resume; the server agrees.
  await card(page).getByRole('button', { name: 'Halt' }).click();
  await expect(card(page).getByTestId('rollout-result')).toHaveText('Halted: no further ring gets the release until you resume or promote it.');
  await expect(card(page).getByTestId('rollout-stage')).toContainText(`Halted at canary just now: no further ring gets release ${release} until you resume.`);
  await expect(card(page).getByTestId('rollout-halted')).toContainText('Halted by the operator.');
  await expect(card(page).getByRole('button', { name: 'Halt' })).toHaveCount(0);
  expect((await rolloutStatus()).halted?.reason).toBe('halted by the operator');

  // Resume: running again, canary's soak starts over.
  await card(page).getByRole('button', { name: 'Resume' }).click();
  await expect(card(page).getByTestId('rollout-result')).toHaveText("Resumed: canary's soak starts again.");
  await expect(card(page).getByTestId('rollout-stage')).toContainText('Canary got it just now');
  await expect(card(page).getByTestId('rollout-halted')).toHaveCount(0);
  await expect(card(page).getByRole('button', { name: 'Resume' })).toHaveCount(0);
  expect((await rolloutStatus()).halted).toBeUndefined();
  // Still held: neither a halt nor a resume releases broad.
  expect(versionIn(await bravo.status())).toBe(BEFORE);

  // Promote now (to broad: early has no agents, so the server passes it): broad gets the release.
  await card(page).getByRole('button', { name: 'Promote to broad now' }).click();
  await expect(card(page).getByTestId('rollout-result')).toHaveText(`Promoted: broad has release ${release} now.`);
  await expect(ring(page, 'broad').getByTestId('ring-state')).toHaveText('released');
  await expect(card(page).getByTestId('rollout-stage')).toContainText(`Every ring has release ${release}: broad got it just now.`);
  await expect(card(page).getByRole('button', { name: /^Promote/ })).toHaveCount(0);
  await expect(card(page).getByRole('button', { name: 'Halt' })).toHaveCount(0);
  await agentHolds(bravo, next);
  await expect(row(page, 'bravo').getByTestId(`agent-version-${ID}`)).toHaveText(String(next));
  await expect(ring(page, 'broad').getByTestId('ring-counts')).toHaveText('1 of 1 current');
  expect((await rolloutStatus()).stage).toBe('broad');

  // Moving bravo to another ring from the table asks first: choosing in the select moves nothing yet.
  const select = row(page, 'bravo').getByRole('combobox', { name: 'Ring of bravo' });
  const confirm = page.getByRole('dialog', { name: 'Move bravo to canary?' });
  await select.selectOption('canary');
  await expect(confirm).toBeVisible();
  await expect(confirm).toContainText('It is in broad now. In canary, it gets each release first, before any other ring.');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await expect(confirm).toBeHidden();
  await expect(select).toHaveValue('broad');
  await expect(select).toBeFocused();
  expect(((await bulwark.cli(['agents', 'list', '--data', bulwark.dataDir, '--json'])).stdout.match(/"ring":"broad"/g) ?? []).length).toBe(1);

  await select.selectOption('early');
  const confirmEarly = page.getByRole('dialog', { name: 'Move bravo to early?' });
  await confirmEarly.getByRole('button', { name: 'Move to early' }).click();
  await expect(page.getByTestId('ring-move-result')).toContainText('bravo is in early now.');
  // The undo puts it back, and says so; then it is moved again for what follows.
  await page.getByTestId('ring-move-result').getByRole('button', { name: 'Undo' }).click();
  await expect(page.getByTestId('ring-move-result')).toHaveText('bravo is back in broad.');
  await expect(select).toHaveValue('broad');
  await select.selectOption('early');
  await confirmEarly.getByRole('button', { name: 'Move to early' }).click();
  await expect(page.getByTestId('ring-move-result')).toContainText('bravo is in early now.');
  await expect(ring(page, 'early').getByTestId('ring-counts')).toHaveText('1 of 1 current');
  await expect(ring(page, 'broad').getByTestId('ring-counts')).toHaveText('no agents');
  // A new page shows it too, and so does the CLI.
  await page.reload();
  await expect(row(page, 'bravo').getByRole('combobox', { name: 'Ring of bravo' })).toHaveValue('early');
  await expect(row(page, 'alpha').getByRole('combobox', { name: 'Ring of alpha' })).toHaveValue('canary');
  await expect(ring(page, 'early').getByTestId('ring-counts')).toHaveText('1 of 1 current');
  const listed = await bulwark.cli(['agents', 'list', '--data', bulwark.dataDir, '--json']);
  expect(listed.code, listed.stderr).toBe(0);
  const rings = Object.fromEntries((JSON.parse(listed.stdout) as { agents: { name: string; ring: string }[] }).agents.map((a) => [a.name, a.ring]));
  expect(rings).toEqual({ alpha: 'canary', bravo: 'early' });
  // Every operator action is in the audit log, with who: this console.
  const audit = fs.readFileSync(path.join(bulwark.dataDir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { via: string; action: string; detail?: string });
  expect(audit.map((a) => [a.via, a.action])).toEqual([
    ['console', 'halt'],
    ['console', 'resume'],
    ['console', 'promote'],
    ['console', 'ring'],
    ['console', 'ring'],
    ['console', 'ring'],
  ]);
  expect(audit.filter((a) => a.action === 'ring').map((a) => a.detail!.replace(/^\w{8}: /, ''))).toEqual(['broad → early', 'early → broad', 'broad → early']);
});

test('a canary whose engine cannot load the content halts the rollout: the overview names the component, the engine, the agent and its words; the Agents view shows the engine, the failing canary and broad held', async ({
  page,
  bulwark,
  source,
  agents,
}) => {
  test.slow();
  // The canary hands YARA rules to a real yara, which must compile them (its check) before they are placed.
  const dataDir = tempDir('bulwark-e2e-agent-charlie-');
  const rules = path.join(dataDir, 'rules');
  fs.mkdirSync(rules);
  const empty = path.join(dataDir, 'empty');
  fs.writeFileSync(empty, '');
  const consumers = path.join(dataDir, 'consumers.json');
  fs.writeFileSync(consumers, JSON.stringify({ 'yara-rules': { engine: 'yara', path: path.join(rules, 'bulwark.yar'), check: ['yara', '{file}', empty] } }));
  const [charlie, delta] = await Promise.all([agents.start('charlie', { ring: 'canary', dataDir, args: ['--consumers', consumers] }), agents.start('delta', { ring: 'broad' })]);

  await openConsole(page, bulwark);
  // The next release brings rules that do not compile, beside the next virus pattern.
  source.writeVersion('yara-rules', 1, 'rule broken { strings: $a = "x" condition: $b }\n');
  await releaseNext(page, source);
  await charlie.process.waitFor(/FAILED/);

  // The overview's reminder names the component, its version, the engine, the agent and yara's words.
  const reminder = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: /^The rollout of release \d+ is halted: yara-rules 1 failed to load in yara$/ }) });
  await expect(reminder).toBeVisible({ timeout: 20_000 });
  await expect(reminder).toContainText('The content failed to load in yara on charlie: ');
  await expect(reminder).toContainText('undefined string "$b"');
  await expect(reminder).toContainText('The agents that have not received it keep their versions.');
  await reminder.getByRole('button', { name: 'Open the Agents view' }).click();
  await expect(page.getByRole('heading', { name: 'Agents', level: 1 })).toBeFocused();

  // The card: halted at canary, why, which content, and the failing agent with its error; broad still held.
  await expect(card(page).getByTestId('rollout-stage')).toContainText('Halted at canary');
  const halted = card(page).getByTestId('rollout-halted');
  await expect(halted).toContainText('The content failed to load in yara on charlie');
  await expect(card(page).getByTestId('rollout-content')).toHaveText('yara-rules 1 did not load in yara (its check failed); agents that have not received it keep their versions.');
  const failing = halted.getByRole('list', { name: 'Failing agents' }).getByRole('listitem');
  await expect(failing).toHaveCount(1);
  await expect(failing).toContainText('charlie: ');
  // In words (the raw error, yara's own, is behind Details).
  const error = (await row(page, 'charlie').getByTestId('agent-error').textContent())!;
  expect(error).toBe('Yara Rules failed (yara would not load yara-rules 1)');
  await expect(failing).toContainText(error);
  await expect(ring(page, 'canary').getByTestId('ring-counts')).toHaveText('0 of 1 current · 1 failed');
  await expect(ring(page, 'broad').getByTestId('ring-state')).toHaveText('held');
  await expect(card(page).getByRole('button', { name: 'Resume' })).toBeVisible();
  await expect(card(page).getByRole('button', { name: 'Halt' })).toHaveCount(0);
  // Per agent: charlie's engine never got the rules (nothing placed), delta is held (not outdated) and holds its version.
  await expect(row(page, 'charlie').getByTestId('agent-consumer-yara-rules')).toHaveText('yara has nothing yet');
  expect(fs.existsSync(path.join(rules, 'bulwark.yar'))).toBe(false);
  await expect(row(page, 'delta').getByTestId('agent-state')).toHaveText('held');
  await expect(page.getByRole('button', { name: '1 held' })).toBeVisible();
  expect(versionIn(await delta.status())).toBe(BEFORE);
});

test.describe('with rollout rings turned off', () => {
  test.use({ serveArgs: ['--agent-spread', '0', '--agent-poll', '10', '--rollout', 'off'] });

  test('the Rollout card says so in one line, with the flag that turns them on, and offers no buttons', async ({ page, bulwark }) => {
    await openConsole(page, bulwark, '#agents');
    await expect(card(page).getByTestId('rollout-off')).toHaveText(
      'Rollout rings are off: every agent gets each release at once. To go ring by ring (canary, early, broad), start the server with bulwark serve --rollout on.',
    );
    await expect(card(page).getByRole('button')).toHaveCount(0);
    await expect(card(page).getByTestId('rollout-ring-canary')).toHaveCount(0);
  });
});
