// The trust boundary, tried as an attacker would (issue 20): a real `bulwark agent` process, a hostile
// HTTP server of the test's own between it and a real `bulwark serve` (helpers/rogue.ts), one test
// per way a server can lie. Each checks that the agent keeps the version it had (or takes only the
// vendor's signed latest), keeps running, and says what the server did. docs/agents.md's table of what
// a server decides and what it cannot points at these tests.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, until, type CliProcess } from './helpers/cli.js';
import { RogueServer } from './helpers/rogue.js';

let lab: AgentsLab;
let rogue: RogueServer | undefined;
let agent: CliProcess | undefined;

beforeAll(async () => {
  ensureBuilt();
  lab = await new AgentsLab().start({ versions: 2 });
  await lab.startServer();
}, 120_000);
afterEach(async () => {
  if (agent?.running) await agent.stop('SIGTERM', 15_000);
  agent = undefined;
  await rogue?.close();
  rogue = undefined;
});
afterAll(async () => {
  await lab?.stop();
});

/** An agent named `name` that reaches the server only through a new rogue server; resolves once it holds the latest version. */
async function agentBehindRogue(name: string, extra: string[] = []): Promise<{ dir: string; version: number }> {
  rogue = await new RogueServer(lab.agentsUrl).start();
  agent = await lab.startAgent(name, extra, { server: rogue.url });
  const dir = lab.agentDir(name);
  const { version } = await lab.waitForVersion(dir, lab.latest);
  return { dir, version };
}

/** A new release upstream, installed by the server (which announces it to its agents); its version. */
async function newRelease(): Promise<number> {
  const version = lab.publish();
  expect((await lab.serverUpdate()).result).toBe('ok');
  return version;
}

describe('an agent behind a rogue server', () => {
  it('3: takes an announcement only as a hint to look: a forged release number (2^53-1) installs nothing and hides no later release', { timeout: 90_000 }, async () => {
    const { dir, version } = await agentBehindRogue('hint');
    await until(() => rogue!.openStreams > 0, 15_000, 'the notification stream');
    const runs = lab.history(dir).length;
    rogue!.inject(`event: release\ndata: {"release":${Number.MAX_SAFE_INTEGER},"spreadSeconds":0}\n\n`);
    await agent!.waitFor(new RegExp(`announced release ${Number.MAX_SAFE_INTEGER}`), 10_000);
    // It looked (one more run), and the verified metadata said there was nothing new.
    await until(() => lab.history(dir).length > runs, 15_000, 'the run the forged announcement asked for');
    expect(lab.active(dir)?.version).toBe(version);
    // The next real announcement is followed at once (the agent polls only every 48-72 s here).
    const next = await newRelease();
    await lab.waitForVersion(dir, next, 20_000);
    expect(agent!.running).toBe(true);
  });

  it('4: bounds every call: a policy and reports dripped a byte at a time fail within their deadlines, the run goes on, and a later report gets through', { timeout: 120_000 }, async () => {
    const { dir } = await agentBehindRogue('drip');
    const stopPolicy = rogue!.drip(/\/agents\/v1\/policy$/, '{"pins":{},"ring":"broad","hold":true}', 2_000);
    const stopReports = rogue!.drip(/\/agents\/v1\/report$/, '{"release":1,"pollSeconds":60,"spreadSeconds":0}', 2_000);
    const started = Date.now();
    const next = await newRelease(); // announced: the agent's run asks for the policy first
    const { code, json } = await lab.update(dir); // joins that run, through the agent's control channel
    const took = Date.now() - started;
    expect(code, JSON.stringify(json)).toBe(0);
    expect(json.components[0]).toMatchObject({ version: next });
    // Held up by the policy's deadline (10 s), not more.
    expect(took).toBeGreaterThan(9_000);
    expect(took).toBeLessThan(25_000);
    await agent!.waitFor(/did not finish answering the policy within 10 s \(it sent \d+ bytes? of the answer\): too slow, gave up; this run goes on without it/, 5_000);
    await agent!.waitFor(/cannot report to the server: .*did not finish answering the report within 10 s/, 15_000);
    stopPolicy();
    stopReports();
    // The reports queued behind the dripped ones go out: the server learns the version.
    await until(async () => (await lab.agents()).agents.find((a) => a.name === 'drip')?.components.some((c) => c.version === next), 40_000, 'the server to hear of the new version');
    expect(agent!.running).toBe(true);
  });

  it('5: bounds the notification stream: an event that never ends is dropped at 64 kB, and the agent reconnects with back-off', { timeout: 90_000 }, async () => {
    const { dir, version } = await agentBehindRogue('flood');
    await until(() => rogue!.openStreams > 0, 15_000, 'the notification stream');
    const line = `data: ${'x'.repeat(1000)}\n`;
    rogue!.inject(`event: release\n${line.repeat(70)}`);
    await agent!.waitFor(/notification stream: the server sent an event of over 64 kB .*: dropped the connection; reconnecting in \d+\.\d s/, 10_000);
    expect(lab.active(dir)?.version).toBe(version);
    await until(() => rogue!.openStreams > 0, 30_000, 'the agent to reconnect');
    const next = await newRelease();
    await lab.waitForVersion(dir, next, 20_000);
    expect(agent!.running).toBe(true);
  });

  it('6: clamps the timing values a server sends: a poll interval of 1e10 s and a spread of 1e999 run no burst of updates', { timeout: 90_000 }, async () => {
    rogue = await new RogueServer(lab.agentsUrl).start();
    const overflow = (body: unknown) => JSON.stringify(body).replace(/"pollSeconds":\d+/, '"pollSeconds":1e10').replace(/"spreadSeconds":\d+/, '"spreadSeconds":1e999');
    rogue.rewriteJson(/\/agents\/v1\/(enroll|report)$/, overflow);
    rogue.rewriteStream(/\/agents\/v1\/events$/, (text) => text.replace(/"pollSeconds":\d+/, '"pollSeconds":1e10'));
    agent = await lab.startAgent('timing', [], { server: rogue.url });
    const dir = lab.agentDir('timing');
    const { version } = await lab.waitForVersion(dir, lab.latest);
    // A timer past 2^31-1 ms fires at once: unclamped, the agent ran update after update (51 in 15 s).
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    expect(lab.history(dir).length).toBeLessThanOrEqual(2);
    await agent.waitFor(/the server asked for a poll interval of 10000000000 s; using 86400 s \(an agent takes 10 to 86400 s\)/, 1_000);
    await agent.waitFor(/the server asked for a spread of Infinity s; using 3600 s/, 1_000);
    expect(lab.active(dir)?.version).toBe(version);
    expect(agent.running).toBe(true);
  });
});
