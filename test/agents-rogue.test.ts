// The trust boundary, tried as an attacker would (issue 20): a real `bulwark agent` process, a hostile
// HTTP server of the test's own between it and a real `bulwark serve` (helpers/rogue.ts), one test
// per way a server can lie. Each checks that the agent keeps the version it had (or takes only the
// vendor's signed latest), keeps running, and says what the server did. docs/agents.md's table of what
// a server decides and what it cannot points at these tests.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseJoinString } from '../src-main/protocol/agent-protocol.js';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, runCli, until, type CliProcess } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';
import { RogueServer } from './helpers/rogue.js';

let lab: AgentsLab;
let rogue: RogueServer | undefined;
let agent: CliProcess | undefined;

let consoleUrl: URL;

beforeAll(async () => {
  ensureBuilt();
  lab = await new AgentsLab().start({ versions: 2 });
  const server = await lab.startServer(['--console']);
  consoleUrl = new URL((await server.waitFor(/^Console: (http:\/\/\S+)$/m))[1]!);
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

/** A run that follows an announcement at once still takes a moment (fetch, verify, install, record) on a busy machine: well under the 8 s a gap would have grown to. */
const QUIET_GAP_STARTS_OVER_WITHIN_MS = 6_000;

/** An agent named `name` that reaches the server only through a new rogue server; resolves once it holds the latest version. */
async function agentBehindRogue(name: string, extra: string[] = []): Promise<{ dir: string; version: number }> {
  rogue = await new RogueServer(lab.agentsUrl).start();
  agent = await lab.startAgent(name, extra, { server: rogue.url });
  const dir = lab.agentDir(name);
  const { version } = await lab.waitForVersion(dir, lab.latest);
  return { dir, version };
}

/** A hostile client of the server's agent API (the test's own requests, not an agent). */
async function post(pathname: string, body: unknown, credential?: string): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const response = await fetch(new URL(pathname, lab.agentsUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, json: (await response.json().catch(() => ({}))) as Record<string, unknown> };
}

/** The bare enrollment token of a ring (what a hostile client holding it sends). */
async function bareToken(ring = 'broad'): Promise<string> {
  return parseJoinString(await lab.token(false, ring))!.token;
}

describe('an agent behind a rogue server', () => {
  it("1: pins the vendor's root only if it is the join string's: a root swapped at enrollment is refused before the token is sent; with nothing to check it against, no start; --insecure-trust-first-server says so", { timeout: 120_000 }, async () => {
    // Another vendor's root.json: what a server in the middle hands out.
    const other = new TestSource(tempDir('bulwark-other-vendor-'));
    other.addPattern('virus-pattern');
    other.publish();
    const otherRoot = fs.readFileSync(other.rootFile);
    rogue = await new RogueServer(lab.agentsUrl).start();
    const swap = rogue.on(/\/agents\/v1\/root\.json$/, (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(otherRoot));
    agent = await lab.startAgent('newcomer', [], { server: rogue.url, wait: false });
    const dir = lab.agentDir('newcomer');
    await agent.waitFor(/refused the vendor's root\.json the server handed out: its SHA-256 is [0-9a-f]{64}, the join string's is [0-9a-f]{64}\. Nothing was pinned and the token was not sent\..*; trying again in \d+ s/, 20_000);
    expect(fs.existsSync(path.join(dir, 'trusted-root.json'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'agent.json'))).toBe(false);
    expect(rogue.requests.filter((r) => r.includes('/agents/v1/enroll'))).toEqual([]); // the token never left
    expect(lab.active(dir)).toBeUndefined();
    expect(agent.running).toBe(true);
    // The man in the middle gone, the agent (which kept trying) enrolls and installs the vendor's latest.
    swap();
    await lab.waitForVersion(dir, lab.latest, 40_000);
    await agent.waitFor(/enrolled with \S+ as "newcomer" in the broad ring \(its enrollment token's\)/);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8'))).toMatchObject({ trust: 'join-string', ring: 'broad' });
    expect(fs.readFileSync(path.join(dir, 'trusted-root.json'))).toEqual(fs.readFileSync(lab.source.rootFile));
    fs.rmSync(other.dir, { recursive: true, force: true });

    // A bare token, and nothing else to check the root against: refused at once (exit 2), nothing sent.
    const bare = await bareToken();
    const before = (await lab.agents()).agents.length;
    const refused = await runCli(['agent', '--server', lab.agentsUrl, '--token', bare, '--data', lab.agentDir('unchecked'), '--name', 'unchecked'], 30_000);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/enrolling needs a way to verify the vendor's root\.json: give the join string/);
    expect((await lab.agents()).agents.length).toBe(before);

    // Told to trust the first server, it does, and says so: in its own status, and in every report.
    const insecure = await lab.startAgent('insecure', ['--insecure-trust-first-server'], { token: bare });
    expect(insecure.stdout).toMatch(/WARNING: trusting INSECURE: the root\.json the server handed out at enrollment, unchecked/);
    const status = await runCli(['status', '--data', lab.agentDir('insecure')]);
    expect(status.stdout).toMatch(/^Trusts: INSECURE: the root\.json the server handed out at enrollment, unchecked \(--insecure-trust-first-server\)/m);
    await until(async () => ((await lab.agents()).agents as unknown as { name: string; trust: string | null }[]).find((a) => a.name === 'insecure')?.trust === 'first-server', 20_000, "the server to hear how 'insecure' trusts");
    const listed = await runCli(['agents', 'list', '--data', lab.serverDir]);
    expect(listed.stdout).toMatch(/insecure .*\n.*\n\s+INSECURE: trusts the root\.json its server handed out at enrollment, unchecked/);
    await insecure.stop('SIGTERM');
    expect(agent.running).toBe(true);
  });

  it("2: obeys the server's hold and pins only within its own rules: a hold lapses after --max-hold, a pin only to a version it installed, and neither reads as a plain ok", { timeout: 150_000 }, async () => {
    rogue = await new RogueServer(lab.agentsUrl).start();
    agent = await lab.startAgent('ordered', ['--max-hold', '5s'], { server: rogue.url });
    const dir = lab.agentDir('ordered');
    const first = (await lab.waitForVersion(dir, lab.latest)).version;
    const policy = (change: (policy: Record<string, unknown>) => Record<string, unknown>) => rogue!.rewriteJson(/\/agents\/v1\/policy$/, (body) => JSON.stringify(change(body as Record<string, unknown>)));
    const ordersOnServer = async () => (((await lab.agents()).agents as unknown as { name: string; orders: { order: string; version: number }[] | null }[]).find((a) => a.name === 'ordered')?.orders ?? []);

    // A hold that never ends.
    const hold = policy((p) => ({ ...p, hold: true }));
    const next = await lab.release();
    await agent.waitFor(new RegExp(`server order: virus-pattern held by the server's rollout at ${first} since \\S+; the vendor's latest is ${next} \\(the hold lapses at \\S+\\)`), 20_000);
    expect(lab.active(dir)?.version).toBe(first);
    const held = await runCli(['status', '--data', dir]);
    expect(held.stdout).toMatch(new RegExp(`^Server order: virus-pattern held by the server's rollout at ${first} since `, 'm'));
    expect(held.stdout).toMatch(/^Last update: \S+ ok, but kept behind the vendor's latest by the server \(the order above\)$/m);
    await until(async () => (await ordersOnServer()).some((o) => o.order === 'hold'), 20_000, 'a report of the hold');
    // A new agent held before it installed anything is held on the same clock, and says so (never a plain ok).
    const fresh = await new RogueServer(lab.agentsUrl).start();
    fresh.rewriteJson(/\/agents\/v1\/policy$/, (body) => JSON.stringify({ ...(body as object), hold: true, holdAt: {} }));
    const newcomer = await lab.startAgent('held-new', ['--max-hold', '5s'], { server: fresh.url });
    try {
      await newcomer.waitFor(new RegExp(`server order: virus-pattern held by the server's rollout with nothing installed since \\S+; the vendor's latest is ${next} \\(the hold lapses at \\S+\\)`), 20_000);
      expect(lab.active(lab.agentDir('held-new'))).toBeUndefined();
      await until(async () => ((await lab.agents()).agents as unknown as { name: string; orders: { order: string; version: number }[] | null }[]).find((a) => a.name === 'held-new')?.orders?.some((o) => o.order === 'hold' && o.version === 0), 20_000, 'a report of the new agent held');
    } catch (error) {
      await newcomer.stop('SIGTERM', 15_000);
      await fresh.close();
      throw error;
    }
    // Past --max-hold, the next run takes the vendor's latest, and says the hold lapsed.
    const since = Date.parse(JSON.parse(fs.readFileSync(path.join(dir, 'orders.json'), 'utf8')).holdSince as string);
    // The newcomer's clock started at its own first run, later than this agent's.
    const newcomerSince = Date.parse(JSON.parse(fs.readFileSync(path.join(lab.agentDir('held-new'), 'orders.json'), 'utf8')).holdSince as string);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.max(since, newcomerSince) + 5_500 - Date.now())));
    try {
      // The new agent's hold lapses too: it takes the vendor's latest.
      expect((await lab.update(lab.agentDir('held-new'))).json.components[0]).toMatchObject({ version: next, reason: expect.stringMatching(/^hold lapsed: /) });
    } finally {
      await newcomer.stop('SIGTERM', 15_000);
      await fresh.close();
    }
    const lapsed = await lab.update(dir);
    expect(lapsed.code).toBe(0);
    expect(lapsed.json.components[0]).toMatchObject({ version: next, reason: expect.stringMatching(/^hold lapsed: the server has kept this agent behind the vendor's latest since \S+, longer than its maximum of 5 s \(--max-hold\), so it takes the vendor's latest/) });
    await agent.waitFor(/server order: virus-pattern hold lapsed: the server kept it behind the vendor's latest from \S+ until \S+, longer than the agent's --max-hold, so it took the vendor's latest/, 10_000);
    await until(async () => (await ordersOnServer()).some((o) => o.order === 'hold-lapsed'), 20_000, 'a report of the lapse');
    hold();

    // The server's (unsigned) index saying it does not hold the vendor's latest: a wait, on the same clock.
    const index = rogue.rewriteJson(/\/agents\/v1\/index\.json$/, (body) => {
      const lie = body as { components: { id: string; version: number }[] };
      for (const c of lie.components) if (c.id === 'virus-pattern') c.version = 1;
      return JSON.stringify(lie);
    });
    const third = await lab.release();
    await agent.waitFor(new RegExp(`server order: virus-pattern at ${next}, waiting since \\S+ for the server, which says it does not hold the vendor's latest \\(${third}\\) yet \\(the wait lapses at \\S+\\)`), 20_000);
    expect(lab.active(dir)?.version).toBe(next);
    const waitSince = JSON.parse(fs.readFileSync(path.join(dir, 'orders.json'), 'utf8')).holdSince as string;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(waitSince) + 5_500 - Date.now())));
    // The wait lapsed, and the server has none of the files: each run fails, and the clock does not
    // start over (a failed run is no reason to wait another --max-hold, reported as a plain ok).
    const noFiles = rogue.on(/^\/(targets|made)\//, (req, res) => void req.resume().on('end', () => res.writeHead(404).end()));
    for (let i = 0; i < 2; i++) {
      const failed = await lab.update(dir);
      expect(failed.code, JSON.stringify(failed.json)).toBe(1);
      expect(failed.json.components[0]).toMatchObject({ version: next, error: expect.any(String), reason: expect.stringMatching(/^hold lapsed: /) });
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'orders.json'), 'utf8')).holdSince).toBe(waitSince);
    }
    const stillLapsed = (JSON.parse((await runCli(['status', '--data', dir, '--json'])).stdout) as { agent: { orders: { order: string }[] } }).agent.orders;
    expect(stillLapsed).toEqual([expect.objectContaining({ id: 'virus-pattern', order: 'hold-lapsed', version: next, vendorLatest: third })]);
    await agent.waitFor(new RegExp(`server order: virus-pattern hold lapsed: the server has kept it behind the vendor's latest since \\S+, longer than the agent's --max-hold, so it tries the vendor's latest \\(${third}\\), which it does not hold yet`), 10_000);
    noFiles();
    expect((await lab.update(dir)).json.components[0]).toMatchObject({ version: third, reason: expect.stringMatching(/^hold lapsed: /) });
    index();

    // A pin to a version it never installed: refused, and nothing moves.
    const never = policy((p) => ({ ...p, pins: { 'virus-pattern': 1 } }));
    const refused = await lab.update(dir);
    expect(refused.code).toBe(1);
    expect(refused.json.components[0]!.error).toMatch(new RegExp(`virus-pattern 1 was never installed here \\(no signed metadata of it is kept\\), so the pin cannot be verified: refused; staying at ${third}`));
    expect(lab.active(dir)?.version).toBe(third);
    never();

    // A pin back to the version it installed before: obeyed, and said in its status and its reports.
    const back = policy((p) => ({ ...p, pins: { 'virus-pattern': first } }));
    expect((await lab.update(dir)).json.components[0]).toMatchObject({ version: first });
    expect(lab.active(dir)?.version).toBe(first);
    const pinned = await runCli(['status', '--data', dir, '--json']);
    expect((JSON.parse(pinned.stdout) as { agent: { orders: unknown[] } }).agent.orders).toEqual([{ id: 'virus-pattern', order: 'pin', version: first, vendorLatest: third, since: expect.any(String) }]);
    expect((await runCli(['status', '--data', dir])).stdout).toMatch(new RegExp(`^Server order: virus-pattern pinned by the server at ${first} since \\S+; the vendor's latest is ${third}$`, 'm'));
    await until(async () => (await ordersOnServer()).some((o) => o.order === 'pin' && o.version === first), 20_000, 'a report of the pin');
    back();
    // Released, it goes back to the vendor's latest.
    expect((await lab.update(dir)).json.components[0]).toMatchObject({ version: third });
    expect((JSON.parse((await runCli(['status', '--data', dir, '--json'])).stdout) as { agent: { orders: unknown[] } }).agent.orders).toEqual([]);
    expect(agent.running).toBe(true);
  });

  it('3: takes an announcement only as a hint to look: a forged release number (2^53-1) installs nothing and hides no later release', { timeout: 90_000 }, async () => {
    const { dir, version } = await agentBehindRogue('hint');
    await until(() => rogue!.openStreams > 0, 15_000, 'the notification stream');
    const runs = lab.history(dir).length;
    rogue!.inject(`event: release\ndata: {"release":${Number.MAX_SAFE_INTEGER},"spreadSeconds":0}\n\n`);
    await agent!.waitFor(new RegExp(`announced release ${Number.MAX_SAFE_INTEGER}`), 10_000);
    // It looked (one more run), and the verified metadata said there was nothing new.
    await until(() => lab.history(dir).length > runs, 15_000, 'the run the forged announcement asked for');
    expect(lab.active(dir)?.version).toBe(version);
    // The next real announcement is followed within the 2 s an empty announcement's run asks (the agent polls only every 48-72 s here).
    const next = await lab.release();
    await lab.waitForVersion(dir, next, 20_000);
    expect(agent!.running).toBe(true);
  });

  it('4: bounds every call: a policy and reports dripped a byte at a time fail within their deadlines, the run goes on, and a later report gets through', { timeout: 120_000 }, async () => {
    const { dir } = await agentBehindRogue('drip');
    const stopPolicy = rogue!.drip(/\/agents\/v1\/policy$/, '{"pins":{},"ring":"broad","hold":true}', 2_000);
    const stopReports = rogue!.drip(/\/agents\/v1\/report$/, '{"release":1,"pollSeconds":60,"spreadSeconds":0}', 2_000);
    const started = Date.now();
    const next = await lab.release(); // announced: the agent's run asks for the policy first
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
    const next = await lab.release();
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
    // A timer past 2^31-1 ms fires at once: unclamped, the agent ran update after update (60 in 8 s).
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    expect(lab.history(dir).length).toBeLessThanOrEqual(2);
    await agent.waitFor(/the server asked for a poll interval of 10000000000 s; using 86400 s \(an agent takes 10 to 86400 s\)/, 1_000);
    await agent.waitFor(/the server asked for a spread of Infinity s; using 3600 s/, 1_000);
    expect(lab.active(dir)?.version).toBe(version);
    expect(agent.running).toBe(true);
  });

  it("7: the operator's token decides the ring, and names are unique: an agent cannot put itself in canary, a copied name gets a suffix, and a report cannot take the name back", { timeout: 90_000 }, async () => {
    const { dir, version } = await agentBehindRogue('web-01');
    // A second machine that holds the (broad) enrollment token, calls itself web-01 and asks for canary.
    const hostile = await post('agents/v1/enroll', { token: await bareToken(), name: 'web-01', hostname: 'intruder', ring: 'canary' });
    expect(hostile.status).toBe(200);
    expect(hostile.json).toMatchObject({ name: 'web-01-2', ring: 'broad' });
    await lab.server!.waitFor(/agent "web-01-2" enrolled from 127\.0\.0\.1 into broad \(it asked for "web-01", which another agent has\)/, 5_000);
    // Its failing report, under the other's name: it changes neither its name nor its ring.
    const failed = { name: 'web-01', hostname: 'intruder', addresses: [], components: [], phase: 'idle', pollSeconds: 60, lastRun: { result: 'failed', at: new Date().toISOString(), bytes: 0, error: 'boom' } };
    expect((await post('agents/v1/report', failed, hostile.json.credential as string)).status).toBe(200);
    const listed = (await lab.agents()).agents as unknown as { name: string; hostname: string; ring: string }[];
    expect(listed.filter((a) => a.name === 'web-01').map((a) => a.hostname)).not.toContain('intruder');
    expect(listed.find((a) => a.hostname === 'intruder')).toMatchObject({ name: 'web-01-2', ring: 'broad' });
    expect(listed.filter((a) => a.ring === 'canary')).toEqual([]);

    // A real agent cannot choose its ring either; one asking for a taken name is told the name it got.
    const choosing = await runCli(['agent', '--server', lab.agentsUrl, '--token', await lab.token(), '--data', lab.agentDir('chooser'), '--ring', 'canary'], 30_000);
    expect(choosing.code).toBe(2);
    expect(choosing.stderr).toMatch(/an agent cannot choose its rollout ring: the server's operator does, with the join string of `bulwark agents token --ring RING`/);
    const copy = lab.spawn(['agent', '--server', lab.agentsUrl, '--token', await lab.token(), '--data', lab.agentDir('copy'), '--name', 'web-01']);
    await copy.waitFor(/the server already has an agent named "web-01": this one is listed as "web-01-3"/, 30_000);
    // Stopped as soon as it said so, in the middle of its start: it starts nothing more and ends.
    expect((await copy.stop('SIGTERM', 10_000)).code).toBe(0);
    expect(lab.active(dir)?.version).toBe(version);
    expect(agent!.running).toBe(true);
  });

  it('9: makes files only toward the current release, each once: any other pair is 404 and builds nothing', { timeout: 90_000 }, async () => {
    type Index = { components: { id: string; sha256: string; bases: { sha256: string }[] }[] };
    const served = async () => ((await (await fetch(new URL('agents/v1/index.json', lab.agentsUrl))).json()) as Index).components.find((c) => c.id === 'virus-pattern')!;
    while ((await served()).bases.length < 2) await lab.release(); // two older versions kept, at least
    const { dir, version } = await agentBehindRogue('made');
    const current = await served();
    const [older, oldest] = [...current.bases].reverse();
    expect(oldest).toBeDefined();
    const ask = async (name: string) => (await fetch(new URL(`made/virus-pattern/${name}`, lab.agentsUrl))).status;
    const madeDir = path.join(lab.serverDir, 'distribution', 'made', 'virus-pattern');
    const madeNow = () => (fs.existsSync(madeDir) ? fs.readdirSync(madeDir).sort() : []);
    const before = madeNow();
    expect(await ask(`${oldest!.sha256}-${older!.sha256}.patch`)).toBe(404); // between two older versions
    expect(await ask(`${older!.sha256}.zst`)).toBe(404); // the full file of an older one
    expect(await ask(`${current.sha256}-${older!.sha256}.patch`)).toBe(404); // backwards
    expect(await ask(`${'0'.repeat(64)}-${current.sha256}.patch`)).toBe(404); // from nothing kept
    expect(madeNow()).toEqual(before);
    // The pair an agent needs: made once, however often and however concurrently it is asked for.
    const wanted = `${oldest!.sha256}-${current.sha256}.patch`;
    expect(await Promise.all(Array.from({ length: 5 }, () => ask(wanted)))).toEqual([200, 200, 200, 200, 200]);
    const made = path.join(madeDir, wanted);
    const mtime = fs.statSync(made).mtimeMs;
    expect(await ask(wanted)).toBe(200);
    expect(fs.statSync(made).mtimeMs).toBe(mtime);
    expect(madeNow().filter((name) => !before.includes(name))).toEqual([wanted, `${wanted}.sha256`]);
    expect(lab.active(dir)?.version).toBe(version);
    // The agent goes on updating from the server.
    const next = await lab.release();
    await lab.waitForVersion(dir, next, 30_000);
    expect(agent!.running).toBe(true);
  });

  it('10: escapes what an agent sends: a newline in its name forges no log line, and shows as text in `agents list` and in the console', { timeout: 60_000 }, async () => {
    const { dir, version } = await agentBehindRogue('plain');
    const forgedLine = '2030-01-01T00:00:00.000Z agent "ceo-laptop" enrolled from 10.0.0.1 into canary';
    const hostile = await post('agents/v1/enroll', { token: await bareToken(), name: `evil\n${forgedLine}`, hostname: 'h\u202eost' });
    expect(hostile.status).toBe(200);
    const report = { name: 'x', hostname: 'h\u202eost', addresses: [], components: [], phase: 'idle', pollSeconds: 60, lastRun: { result: 'failed', at: new Date().toISOString(), bytes: 0, error: `disk full\n${forgedLine}` } };
    expect((await post('agents/v1/report', report, hostile.json.credential as string)).status).toBe(200);
    await lab.server!.waitFor(/agent "evil\\n2030-01-01T00:00:00\.000Z agent \\"ceo-laptop\\" enrolled from 10\.0\.0\.1 into canary" enrolled from 127\.0\.0\.1 into broad/, 5_000);
    const startsForged = (text: string) => text.split('\n').some((line) => line.trim().startsWith(forgedLine));
    expect(startsForged(lab.server!.stdout)).toBe(false);
    const listed = await runCli(['agents', 'list', '--data', lab.serverDir]);
    expect(startsForged(listed.stdout)).toBe(false);
    expect(listed.stdout).toContain(`evil\\n${forgedLine.slice(0, 20)}`);
    expect(listed.stdout).toContain(`disk full\\n${forgedLine}`);
    // The console gets the same values as visible text (Svelte then writes them as text, never markup).
    const page = await fetch(new URL('/api/call/agents', consoleUrl.origin), {
      method: 'POST',
      headers: { authorization: `Bearer ${consoleUrl.searchParams.get('token')}`, 'content-type': 'application/json', 'x-bulwark-console': '1' },
      body: JSON.stringify({ filter: 'evil' }),
    });
    const shown = ((await page.json()) as { agents: { name: string; hostname: string; lastRun: { error: string } }[] }).agents;
    expect(shown).toHaveLength(1);
    expect(shown[0]!.name).toBe(`evil\\n${forgedLine}`);
    expect(shown[0]!.hostname).toBe('h\\u202eost');
    expect(shown[0]!.lastRun.error).toBe(`disk full\\n${forgedLine}`);
    expect(lab.active(dir)?.version).toBe(version);
    expect(agent!.running).toBe(true);
  });

  // Last: it leaves this address over the limit of failed enrollments for the rest of the minute.
  it("11: enrolls again only on the server's own word: the stream and a report refused together enroll once, a name that is no name is not taken, and a 403 to the re-enrollment ends nothing", { timeout: 120_000 }, async () => {
    const { dir, version } = await agentBehindRogue('again');
    const credential = () => (JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8')) as { name: string; credential: string }).credential;
    // The server forgets the credential (as a restored backup would): the stream and reports with it are refused.
    let forgotten = credential();
    const refusedCalls: string[] = [];
    rogue!.on(/^\/agents\/v1\/(events|report)$/, (req, res, forward) => {
      if (req.headers.authorization !== `Bearer ${forgotten}`) return forward();
      refusedCalls.push(new URL(req.url ?? '/', 'http://x').pathname);
      req.resume().on('end', () => res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'unknown credential' })));
    });
    // Enrollments are held until the stream and a report were both refused: they share one.
    const enrollments: (() => void)[] = [];
    const enrollsBefore = rogue!.requests.filter((r) => r === 'POST /agents/v1/enroll').length;
    const hold = rogue!.on(/^\/agents\/v1\/enroll$/, (req, res) =>
      void enrollments.push(() =>
        // Let through, with a name of 150 characters in the answer: not a name the agent's reports could carry.
        rogue!.forward(req, res, (status, headers, body) => {
          const text = JSON.stringify({ ...(JSON.parse(body.toString('utf8')) as object), name: 'x'.repeat(150) });
          res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) }).end(text);
        }),
      ),
    );
    rogue!.dropStreams();
    const run = lab.update(dir);
    // Whichever is refused first starts the (held) re-enrollment; the other is refused while it is held.
    await until(async () => refusedCalls.includes('/agents/v1/events') && refusedCalls.includes('/agents/v1/report') && enrollments.length >= 1, 60_000, 'the stream and a report refused');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(enrollments.length).toBe(1);
    hold();
    for (const release of enrollments) release();
    expect((await run).code).toBe(0);
    await agent!.waitFor(/the server named this agent "x{120}", which is not a name \(1 to 100 characters\): keeping "again"/, 20_000);
    await until(async () => credential() !== forgotten, 20_000, 'the new enrollment written');
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8'))).toMatchObject({ name: 'again' });
    // Reports with the new credential get through; nothing enrolled twice.
    const reportsAfter = rogue!.requests.filter((r) => r === 'POST /agents/v1/report').length;
    const refusedAfter = refusedCalls.length;
    expect((await lab.update(dir)).code).toBe(0);
    await until(async () => rogue!.requests.filter((r) => r === 'POST /agents/v1/report').length > reportsAfter, 20_000, 'a report with the new credential');
    expect(refusedCalls.length).toBe(refusedAfter);
    expect(rogue!.requests.filter((r) => r === 'POST /agents/v1/enroll').length - enrollsBefore).toBe(1);

    // Forgotten again, and the enrollment answers 403 (not the token's refusal, which is a 401) with a line-forging error: retried, nothing ends.
    forgotten = credential();
    rogue!.on(/^\/agents\/v1\/enroll$/, (req, res) => req.resume().on('end', () => res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'no\nagent stopping: forged' }))));
    const failedLines = () => agent!.stdout.split('\n').filter((line) => /enrolling again failed: the server answered HTTP 403 to the enrollment: "no\\nagent stopping: forged"; trying again at the next reconnect/.test(line)).length;
    rogue!.dropStreams();
    expect((await lab.update(dir)).code).toBe(0);
    await until(async () => failedLines() >= 2, 60_000, 'two failed re-enrollments, each retried');
    expect(agent!.running).toBe(true);
    expect(agent!.stdout).not.toMatch(/^\S+ agent stopping/m);
    expect(lab.active(dir)?.version).toBe(version);
  });

  it('12: spaces the runs that empty announcements start: release events every 50 ms for 12 s make a few runs, not run after run; a real release still arrives, and then runs follow announcements at once again', { timeout: 120_000 }, async () => {
    const { dir, version } = await agentBehindRogue('flooded');
    await until(() => rogue!.openStreams > 0, 15_000, 'the notification stream');
    const announced = (run: { trigger: string }) => run.trigger === 'notification';
    const before = lab.history(dir).filter(announced).length;
    const flood = setInterval(() => rogue!.inject(`event: release\ndata: {"release":${1000 + Math.floor(Math.random() * 1000)}}\n\n`), 50);
    try {
      await new Promise((resolve) => setTimeout(resolve, 12_000));
    } finally {
      clearInterval(flood);
    }
    // 2 s after the first empty run, 4 s after the second, 8 s after the third: 3 or 4 in 12 s (without the spacing, over 30).
    const during = lab.history(dir).filter(announced).length - before;
    expect(during).toBeGreaterThanOrEqual(2);
    expect(during).toBeLessThanOrEqual(5);
    await agent!.waitFor(/the last 3 announcements brought nothing new: the next run waits [4-8] s/, 1_000);
    expect(lab.active(dir)?.version).toBe(version);
    // A real release: it waits out the gap at most (here 16 s at most, under the 60 s poll).
    const next = await lab.release();
    await lab.waitForVersion(dir, next, 30_000);
    // It installed something: the next announcement starts a run at once.
    const third = await lab.release();
    const announcedAt = Date.now();
    await lab.waitForVersion(dir, third, 30_000);
    expect(Date.now() - announcedAt).toBeLessThan(QUIET_GAP_STARTS_OVER_WITHIN_MS);
    expect(agent!.running).toBe(true);
  });

  it('8: limits failed enrollments and refused credentials per address: past 20 a minute, 429 unchecked and logged together; an agent enrolled from that address keeps working', { timeout: 90_000 }, async () => {
    const { dir } = await agentBehindRogue('neighbour');
    const token = await bareToken();
    const wrong = `${token.slice(0, -1)}${token.endsWith('a') ? 'b' : 'a'}`;
    const enrollments = [];
    for (let i = 0; i < 25; i++) enrollments.push(await post('agents/v1/enroll', { token: wrong, name: `guess-${i}`, hostname: 'x' }));
    expect(enrollments.slice(0, 20).map((r) => r.status)).toEqual(Array(20).fill(401));
    expect(enrollments.slice(20).map((r) => r.status)).toEqual(Array(5).fill(429));
    expect(Number(enrollments[24]!.headers.get('retry-after'))).toBeGreaterThan(0);
    // The right token from there is refused too until the minute ends: it is not even checked.
    expect((await post('agents/v1/enroll', { token, name: 'late', hostname: 'x' })).status).toBe(429);
    const reports = [];
    const heartbeat = { name: 'x', hostname: 'x', addresses: [], components: [], phase: 'idle', pollSeconds: 60 };
    for (let i = 0; i < 22; i++) reports.push((await post('agents/v1/report', heartbeat, `forged-${i}.credential`)).status);
    expect(reports).toEqual([...Array(20).fill(401), 429, 429]);
    // One line each at once, not one per attempt.
    const logged = (pattern: RegExp) => lab.server!.stdout.split('\n').filter((line) => pattern.test(line)).length;
    expect(logged(/refused an enrollment from 127\.0\.0\.1/)).toBe(1);
    expect(logged(/refused a request with an agent credential from 127\.0\.0\.1/)).toBe(1);
    // The agent enrolled from the same address still reports: valid credentials are always taken.
    const seen = (await lab.agents()).agents.find((a) => a.name === 'neighbour') as unknown as { lastSeen: string };
    const { code } = await lab.update(dir);
    expect(code).toBe(0);
    await until(async () => ((await lab.agents()).agents.find((a) => a.name === 'neighbour') as unknown as { lastSeen: string }).lastSeen > seen.lastSeen, 20_000, 'a report from the neighbour');
    expect(agent!.running).toBe(true);
    // The rest of the minute's refusals, logged as one line each (here as the server stops).
    await lab.server!.stop('SIGTERM', 15_000);
    expect(lab.server!.stdout).toMatch(/agents: 26 enrollments refused from 127\.0\.0\.1 in the last \d+ s \(wrong or rotated enrollment token, or a malformed request; 6 of them answered 429 unchecked, over the limit of 20 a minute\)/);
    expect(lab.server!.stdout).toMatch(/agents: 22 requests with agent credentials refused from 127\.0\.0\.1 in the last \d+ s \(unknown agent or wrong credential; 2 of them answered 429 unchecked/);
  });
});
