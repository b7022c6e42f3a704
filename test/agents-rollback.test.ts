// Pin, unpin and roll back, reaching real agent processes: a rollback on the running server (through
// `bulwark component`) takes its agents back within seconds, no update moves them while pinned, and
// unpinning lets the next release through. An agent that never held the version rolled back to has no
// signed metadata for it, and refuses.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, runCli, until } from './helpers/cli.js';

let lab: AgentsLab;

beforeAll(() => ensureBuilt());
afterEach(async () => {
  await lab?.stop();
});

const component = (args: string[]) => runCli(['component', ...args, '--data', lab.serverDir]);

describe('pin and roll back, with agents', () => {
  it('a rollback on the server reaches its agents; pinned, nothing moves them; unpinned, the next release does', { timeout: 180_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer();
    await Promise.all(['one', 'two'].map((name) => lab.startAgent(name)));
    const good = await lab.release();
    const bad = await lab.release();
    for (const name of ['one', 'two']) await lab.waitForVersion(lab.agentDir(name), bad, 30_000);
    // An agent that arrives now holds only `bad`: it never had `good` or the vendor's word for it.
    await lab.startAgent('late');
    await lab.waitForVersion(lab.agentDir('late'), bad, 30_000);

    const rolled = await component(['rollback', 'virus-pattern', String(good), '--reason', 'bad pattern']);
    expect(rolled.stdout + rolled.stderr).toMatch(new RegExp(`virus-pattern: rolled back from ${bad} to ${good}, and pinned there`));
    expect(rolled.code).toBe(0);
    expect(lab.active(lab.serverDir)?.version).toBe(good);
    const serverRecord = lab.history(lab.serverDir).at(-1)!;
    expect(serverRecord.components[0]!.reason).toMatch(/rolled back .*\(bad pattern\)$/);

    // The agents follow within seconds, with no one asking them; the late one refuses and says why.
    for (const name of ['one', 'two']) {
      // Exactly `good` (waitForVersion would take the higher `bad` they hold until the rollback arrives).
      const held = await until(() => (lab.active(lab.agentDir(name))?.version === good ? lab.active(lab.agentDir(name)) : undefined), 30_000, `${name} to roll back to ${good}`);
      expect(held!.version).toBe(good);
      // Its run is recorded just after the version is switched.
      const run = await until(() => lab.history(lab.agentDir(name)).findLast((r) => r.components[0]?.version === good && r.components[0]?.previousVersion === bad), 30_000, `${name}'s rollback to be recorded`);
      expect(run.components[0]!.reason).toBe(`rolled back from ${bad} to the pinned ${good}`);
    }
    await expectEventually(() => {
      const last = lab.history(lab.agentDir('late')).at(-1)?.components[0];
      return last?.result === 'failed' && /virus-pattern \d+ was never installed here \(no signed metadata of it is kept\), so the pin cannot be verified: refused/.test(last.error ?? '') ? last : undefined;
    });
    expect(lab.active(lab.agentDir('late'))?.version).toBe(bad);

    // Pinned: a new release changes nothing, on the server or its agents.
    const next = lab.publish();
    const pinnedRun = await lab.serverUpdate();
    expect(pinnedRun.components[0]).toMatchObject({ version: good, reason: `pinned at ${good}` });
    const updated = await lab.update(lab.agentDir('one'));
    expect(updated.json.components[0]).toMatchObject({ version: good, reason: `pinned at ${good}` });

    // Unpinned: the next update moves the server on, and its agents follow.
    const unpinned = await component(['unpin', 'virus-pattern']);
    expect(unpinned.code).toBe(0);
    expect((await lab.serverUpdate()).components[0]).toMatchObject({ version: next, result: 'ok' });
    for (const name of ['one', 'two', 'late']) await lab.waitForVersion(lab.agentDir(name), next, 30_000);
    expect(JSON.parse(fs.readFileSync(path.join(lab.serverDir, 'pins.json'), 'utf8'))).toEqual({});
  });

  it('refuses a rollback to a version not kept, or without the signed metadata it was installed with', async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer();
    const first = lab.latest;
    lab.publish();
    await lab.serverUpdate();
    const missing = await component(['rollback', 'virus-pattern', '99']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/virus-pattern 99 is not kept here \(kept: /);
    // The vendor's metadata kept with `first`, damaged: its signature no longer holds.
    const pointer = JSON.parse(fs.readFileSync(path.join(lab.serverDir, 'store', 'virus-pattern', `${first}.evidence.json`), 'utf8')) as { targets: string };
    const targets = path.join(lab.serverDir, 'evidence', pointer.targets);
    fs.writeFileSync(targets, fs.readFileSync(targets, 'utf8').replace(/"expires":"(\d{4})/, (_m, y: string) => `"expires":"${Number(y) + 1}`));
    const forged = await component(['rollback', 'virus-pattern', String(first)]);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(new RegExp(`the signed metadata kept for virus-pattern ${first} does not verify against the trusted root`));
    expect(lab.active(lab.serverDir)?.version).toBe(lab.latest);
  });
});

async function expectEventually<T>(check: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
