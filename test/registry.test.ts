// The agent registry's fleet-wide questions, answered by SQLite on real files: each agent's state
// (agent-status.ts) from the facts it reported, the console's filtered and sorted page, the streamed
// JSON list, the agents the reminders name (silent, one address family only), failures ring by ring,
// heartbeats that keep the last run, the migration of a registry written before the derived columns,
// and a read-only open beside the running server's.
import fs from 'node:fs';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { versionsJson, type AgentState, type StateBasis } from '../src-main/distribution/agent-status.js';
import { AgentsOverview, agentReminders, pictureOf } from '../src-main/distribution/overview.js';
import { AgentRegistry, type AgentListed, type AgentPageQuery, type AgentSort } from '../src-main/distribution/registry.js';
import type { AgentLastRun, AgentReport, Ring } from '../src-main/protocol/agent-protocol.js';
import { Distribution, type Release } from '../src-main/distribution/release.js';
import { ComponentStore } from '../src-main/engine/store.js';
import { tempDir } from './helpers/fixtures.js';

/** A poll interval long enough that no agent goes silent during a test unless it is meant to. */
const POLL = 3600;

let dir: string;
let opened: AgentRegistry[] = [];

beforeEach(() => {
  dir = tempDir('bulwark-registry-');
});
afterEach(async () => {
  for (const registry of opened) await registry.close();
  opened = [];
  fs.rmSync(dir, { recursive: true, force: true });
});

async function openRegistry(options: { readOnly?: boolean } = {}): Promise<AgentRegistry> {
  const registry = await AgentRegistry.open(dir, options);
  opened.push(registry);
  return registry;
}

/**
 * A release serving these component versions. stateSql reads only index.release and
 * index.components (id and version), so the rest of a Release is left out.
 */
function release(number: number, components: Record<string, number>): Release {
  return { index: { release: number, components: Object.entries(components).map(([id, version]) => ({ id, version })) } } as unknown as Release;
}

const components = (versions: Record<string, number>) => Object.entries(versions).map(([id, version]) => ({ id, version }));

function run(result: AgentLastRun['result'], at: number | string = Date.now(), error?: string): AgentLastRun {
  return { result, at: typeof at === 'number' ? new Date(at).toISOString() : at, method: 'incremental', bytes: 1024, ...(error ? { error } : {}) };
}

type Overrides = Partial<AgentReport> & { ring?: string; address?: string };

/** Enroll an agent and have it report once (IPv4 only, idle, no components unless overridden); its id. */
async function enrollAndReport(registry: AgentRegistry, name: string, overrides: Overrides = {}): Promise<string> {
  const id = await enrollOnly(registry, name, overrides);
  const { ring: _ring, address = '10.0.0.1', ...report } = overrides;
  await registry.report(id, { name, hostname: `${name}.lan`, addresses: [{ address, family: 4 }], components: [], phase: 'idle', pollSeconds: POLL, ...report }, address);
  return id;
}

async function enrollOnly(registry: AgentRegistry, name: string, overrides: Overrides = {}): Promise<string> {
  // The token decides the ring.
  const { id } = await registry.enroll(await registry.enrollmentToken((overrides.ring as Ring | undefined) ?? 'broad'), {
    name,
    hostname: overrides.hostname ?? `${name}.lan`,
    address: overrides.address ?? '10.0.0.1',
    pollSeconds: overrides.pollSeconds ?? POLL,
  });
  return id;
}

/** Every agent (up to 1,000) in name order. */
async function everyone(registry: AgentRegistry, basis: StateBasis, query: Partial<AgentPageQuery> = {}) {
  return registry.page(basis, { sort: 'name', descending: false, limit: 1000, ...query });
}

async function statesByName(registry: AgentRegistry, basis: StateBasis): Promise<Record<string, AgentState>> {
  return Object.fromEntries((await everyone(registry, basis)).agents.map((a) => [a.name, a.state]));
}

/** Let the clock move on a millisecond or two, so reports' last-seen times differ. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 3));

/** Statements run on a database file with sqlite3 itself (for a registry written by an older Bulwark). */
async function onDatabase(file: string, work: (run: (sql: string, params?: unknown[]) => Promise<void>) => Promise<void>): Promise<void> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const opening: sqlite3.Database = new sqlite3.Database(file, (error) => (error ? reject(error) : resolve(opening)));
  });
  try {
    await work((sql, params = []) => new Promise<void>((resolve, reject) => db.run(sql, params, (error) => (error ? reject(error) : resolve()))));
  } finally {
    await new Promise<void>((resolve) => db.close(() => resolve()));
  }
}

describe('agent states', () => {
  // virus-pattern has a dash: the JSON path into `versions` must quote it.
  const served = release(7, { 'virus-pattern': 175, engine: 12 });
  const upToDate = components({ 'virus-pattern': 175, engine: 12 });
  const behind = components({ 'virus-pattern': 174, engine: 12 });

  /** One agent per state, some with facts that lose to a state of higher precedence. */
  async function fleet(registry: AgentRegistry): Promise<number> {
    // Silent (poll 1 s) although also updating and failed: unreachable wins.
    await enrollAndReport(registry, 'silent', { ring: 'canary', pollSeconds: 1, phase: 'updating', lastRun: run('failed', Date.now(), 'boom'), components: upToDate });
    // Updating although its last run failed: updating wins.
    await enrollAndReport(registry, 'busy', { phase: 'updating', lastRun: run('failed', Date.now(), 'boom'), components: behind });
    // Failed although it holds everything: failed wins over current.
    await enrollAndReport(registry, 'broken', { lastRun: run('failed', Date.now(), 'disk full'), components: upToDate });
    // Newer than served, and notified: current wins over notified.
    const fresh = await enrollAndReport(registry, 'fresh', { ring: 'early', lastRun: run('ok'), components: components({ 'virus-pattern': 176, engine: 12 }) });
    const told = await enrollAndReport(registry, 'told', { lastRun: run('ok'), components: behind });
    // Told of an older release only: outdated.
    const toldBefore = await enrollAndReport(registry, 'told-before', { components: behind });
    // No engine at all: a missing component counts as version 0.
    await enrollAndReport(registry, 'lacking', { components: components({ 'virus-pattern': 175 }) });
    await registry.markNotified([fresh, told], 7);
    await registry.markNotified([toldBefore], 6);
    // The silent agent's two poll intervals (2 s) have passed a minute from now; the others' (2 h) have not.
    return Date.now() + 60_000;
  }

  it('each of the seven states arises from its facts, in precedence order, in the page and the tally', async () => {
    const registry = await openRegistry();
    const now = await fleet(registry);
    const basis = { release: served, now };

    expect(await statesByName(registry, basis)).toEqual({
      silent: 'unreachable',
      busy: 'updating',
      broken: 'failed',
      fresh: 'current',
      told: 'notified',
      'told-before': 'outdated',
      lacking: 'outdated',
    });

    const tallies = await registry.tally(basis);
    const key = (t: { ring: string; state: string }) => `${t.ring}/${t.state}`;
    expect([...tallies].sort((a, b) => key(a).localeCompare(key(b)))).toEqual([
      { state: 'failed', ring: 'broad', agents: 1 },
      { state: 'notified', ring: 'broad', agents: 1 },
      { state: 'outdated', ring: 'broad', agents: 2 },
      { state: 'updating', ring: 'broad', agents: 1 },
      { state: 'unreachable', ring: 'canary', agents: 1 },
      { state: 'current', ring: 'early', agents: 1 },
    ]);

    // The console's counts: a notified agent is still outdated.
    const picture = pictureOf(tallies);
    expect(picture.counts).toEqual({ total: 7, current: 1, held: 0, outdated: 3, updating: 1, failed: 1, unreachable: 1 });
    expect(picture.rings).toEqual({ broad: { agents: 5, current: 0, failed: 1 }, canary: { agents: 1, current: 0, failed: 0 }, early: { agents: 1, current: 1, failed: 0 } });

    // The rollout holds broad back: its agents not current are held (the notified and the outdated),
    // but unreachable, updating and failed still say what they say.
    const held = { ...basis, held: ['broad'] };
    expect(await statesByName(registry, held)).toEqual({
      silent: 'unreachable',
      busy: 'updating',
      broken: 'failed',
      fresh: 'current',
      told: 'held',
      'told-before': 'held',
      lacking: 'held',
    });
    expect(pictureOf(await registry.tally(held)).counts).toEqual({ total: 7, current: 1, held: 3, outdated: 0, updating: 1, failed: 1, unreachable: 1 });
    expect(names(await everyone(registry, held, { states: ['held'] }))).toEqual(['lacking', 'told', 'told-before']);
  });

  it('judges silence by each agent\'s own poll interval, and says when the next one falls silent', async () => {
    const registry = await openRegistry();
    const now = await fleet(registry);
    const { agents } = await everyone(registry, { release: served, now });
    // The silent agent (poll 1 s) is unreachable after 2 s unheard, not at 2 s.
    const silentSeen = Date.parse(agents.find((a) => a.name === 'silent')!.lastSeen);
    expect((await statesByName(registry, { release: served, now: silentSeen + 2000 })).silent).toBe('updating');
    expect((await statesByName(registry, { release: served, now: silentSeen + 2001 })).silent).toBe('unreachable');

    // A minute on, the silent agent is excluded; the next to fall silent is the earliest-seen of the rest.
    const rest = agents.filter((a) => a.name !== 'silent');
    expect(await registry.nextSilence(now)).toBe(Math.min(...rest.map((a) => Date.parse(a.lastSeen) + 2 * POLL * 1000)));
    // Two hours and more on, every agent is silent: none left to fall silent.
    expect(await registry.nextSilence(now + 2 * POLL * 1000 + 1)).toBeUndefined();
    expect(Object.values(await statesByName(registry, { release: served, now: now + 2 * POLL * 1000 }))).toEqual(Array(7).fill('unreachable'));
  });

  it('with no release, every reachable, idle agent whose last run did not fail is current', async () => {
    const registry = await openRegistry();
    const now = await fleet(registry);
    const basis = { release: undefined, now };
    expect(await statesByName(registry, basis)).toEqual({
      silent: 'unreachable',
      busy: 'updating',
      broken: 'failed',
      fresh: 'current',
      told: 'current',
      'told-before': 'current',
      lacking: 'current',
    });
    expect(pictureOf(await registry.tally(basis)).counts).toEqual({ total: 7, current: 4, held: 0, outdated: 0, updating: 1, failed: 1, unreachable: 1 });
  });

  it('a served component at version 0 is held by an agent without it; a newer release makes a current agent outdated', async () => {
    const registry = await openRegistry();
    await enrollAndReport(registry, 'plain', { components: components({ 'virus-pattern': 175 }) });
    const now = Date.now();
    expect(await statesByName(registry, { release: release(1, { 'virus-pattern': 175, 'new-thing': 0 }), now })).toEqual({ plain: 'current' });
    expect(await statesByName(registry, { release: release(2, { 'virus-pattern': 176 }), now })).toEqual({ plain: 'outdated' });
  });

  it('an agent holding exactly the release is current whatever order it lists its components in, and so is one whose versions an older Bulwark wrote', async () => {
    const registry = await openRegistry();
    await enrollAndReport(registry, 'listed-backwards', { components: components({ 'virus-pattern': 175, engine: 12 }) });
    await enrollAndReport(registry, 'older-text', { components: upToDate });
    // The text an older Bulwark wrote: the agent's own order, spaced differently from versionsJson's.
    await onDatabase(path.join(dir, 'agents.sqlite'), (sql) => sql(`UPDATE agents SET versions = '{"virus-pattern": 175, "engine": 12}' WHERE name = 'older-text'`));
    await enrollAndReport(registry, 'one-behind', { components: components({ engine: 12, 'virus-pattern': 174 }) });
    const basis = { release: served, now: Date.now() };
    expect(await statesByName(registry, basis)).toEqual({ 'listed-backwards': 'current', 'older-text': 'current', 'one-behind': 'outdated' });
    expect(pictureOf(await registry.tally(basis)).counts).toMatchObject({ total: 3, current: 2, outdated: 1 });
    // The text both sides are written as: ids in order, whatever order they came in.
    expect(versionsJson(components({ 'virus-pattern': 175, engine: 12 }))).toBe('{"engine":12,"virus-pattern":175}');
    expect(versionsJson(served.index.components)).toBe(versionsJson(upToDate));
  });

  it('a notification does not overwrite an agent that is updating, and its next report ends the notified phase', async () => {
    const registry = await openRegistry();
    const busy = await enrollAndReport(registry, 'busy', { phase: 'updating', components: behind });
    const idle = await enrollAndReport(registry, 'idle', { components: behind });
    await registry.markNotified([busy, idle], 7);
    const basis = { release: served, now: Date.now() };
    const rows = (await everyone(registry, basis)).agents;
    expect(rows.map((a) => [a.name, a.phase, a.notifiedRelease, a.state])).toEqual([
      ['busy', 'updating', 0, 'updating'],
      ['idle', 'notified', 7, 'notified'],
    ]);
    await registry.report(idle, { name: 'idle', hostname: 'idle.lan', addresses: [], components: behind, phase: 'updating', pollSeconds: POLL }, '10.0.0.1');
    expect(await statesByName(registry, { release: served, now: Date.now() })).toEqual({ busy: 'updating', idle: 'updating' });
  });
});

describe('page', () => {
  const served = release(3, { 'virus-pattern': 10 });
  const held = components({ 'virus-pattern': 10 });

  /** Nine agents in all six states, reported in this order (so last seen in this order), with distinct addresses. */
  async function fleet(registry: AgentRegistry): Promise<{ basis: StateBasis; order: string[] }> {
    const agents: [string, Overrides][] = [
      ['alpha', { ring: 'canary', hostname: 'ALPHA-HOST.corp', address: '10.1.0.1', components: held }],
      ['Bravo', { address: '10.1.0.9', components: [] }],
      ['charlie', { ring: 'canary', address: '10.1.0.3', lastRun: run('failed', Date.now(), 'Disk Full on /var'), components: held }],
      ['delta', { address: '10.9.9.9', components: [] }],
      ['echo', { address: '2001:DB8::E', phase: 'updating' }],
      ['foxtrot', { ring: 'canary', address: '10.1.0.6', pollSeconds: 1, components: held }],
      ['100%_sure', { address: '10.1.0.7', components: held }],
      ['a_b', { address: '10.1.0.8', components: held }],
      ['axb', { address: '10.1.0.2', components: held }],
    ];
    const ids: Record<string, string> = {};
    for (const [name, overrides] of agents) {
      ids[name] = await enrollAndReport(registry, name, overrides);
      await tick();
    }
    await registry.markNotified([ids.delta!], 3);
    return { basis: { release: served, now: Date.now() + 60_000 }, order: agents.map(([name]) => name) };
  }

  it('filters by state, by ring and by both, counting every match', async () => {
    const registry = await openRegistry();
    const { basis } = await fleet(registry);
    const query = (q: Partial<AgentPageQuery>) => everyone(registry, basis, q);

    expect(names(await query({ states: ['failed'] }))).toEqual(['charlie']);
    expect(names(await query({ states: ['outdated', 'notified'] }))).toEqual(['Bravo', 'delta']);
    expect(names(await query({ states: ['unreachable', 'updating'] }))).toEqual(['echo', 'foxtrot']);
    expect(names(await query({ states: ['current'] }))).toEqual(['100%_sure', 'a_b', 'alpha', 'axb']);
    expect(names(await query({ states: [] }))).toHaveLength(9);
    expect(names(await query({ ring: 'canary' }))).toEqual(['alpha', 'charlie', 'foxtrot']);
    expect(names(await query({ ring: 'canary', states: ['current', 'failed'] }))).toEqual(['alpha', 'charlie']);
    expect(await query({ ring: 'nowhere' })).toEqual({ matching: 0, agents: [] });
  });

  it('finds text in the name, host name, address or last error, ignoring ASCII case, with % and _ taken literally', async () => {
    const registry = await openRegistry();
    const { basis } = await fleet(registry);
    const find = async (text: string) => names(await everyone(registry, basis, { text }));

    expect(await find('ALPHA')).toEqual(['alpha']); // name (and host name)
    expect(await find('Host.CORP')).toEqual(['alpha']); // host name only
    expect(await find('bravo.LAN')).toEqual(['Bravo']);
    expect(await find('10.9.9')).toEqual(['delta']); // address
    expect(await find('2001:db8::e')).toEqual(['echo']);
    expect(await find('disk full')).toEqual(['charlie']); // last error
    expect(await find('%')).toEqual(['100%_sure']);
    expect(await find('0%_s')).toEqual(['100%_sure']);
    expect(await find('a_b')).toEqual(['a_b']); // not axb
    expect(await find('_')).toEqual(['100%_sure', 'a_b']);
    expect(await find('no such agent')).toEqual([]);
    // Combined with a state filter and a ring.
    expect(names(await everyone(registry, basis, { text: '.lan', states: ['current'], ring: 'broad' }))).toEqual(['100%_sure', 'a_b', 'axb']);
  });

  it('sorts by state (by urgency), name, last seen, host name and address, both ways', async () => {
    const registry = await openRegistry();
    const { basis, order } = await fleet(registry);
    const sorted = async (sort: AgentSort, descending: boolean) => names(await registry.page(basis, { sort, descending, limit: 100 }));

    // failed, unreachable, outdated, notified, updating, current; ties by name.
    const byState = ['charlie', 'foxtrot', 'Bravo', 'delta', 'echo', '100%_sure', 'a_b', 'alpha', 'axb'];
    expect(await sorted('state', false)).toEqual(byState);
    expect(await sorted('state', true)).toEqual([...byState].reverse());
    expect((await registry.page(basis, { sort: 'state', descending: false, limit: 100 })).agents.map((a) => a.state)).toEqual([
      'failed',
      'unreachable',
      'outdated',
      'notified',
      'updating',
      'current',
      'current',
      'current',
      'current',
    ]);

    // Names ignore case: Bravo between axb and charlie.
    const byName = ['100%_sure', 'a_b', 'alpha', 'axb', 'Bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
    expect(await sorted('name', false)).toEqual(byName);
    expect(await sorted('name', true)).toEqual([...byName].reverse());

    expect(await sorted('lastSeen', false)).toEqual(order);
    expect(await sorted('lastSeen', true)).toEqual([...order].reverse());

    const rows = (await everyone(registry, basis)).agents;
    const by = (key: 'hostname' | 'address') => [...rows].sort((a, b) => (a[key].toLowerCase() < b[key].toLowerCase() ? -1 : 1)).map((a) => a.name);
    expect(by('address')).not.toEqual(byName); // the addresses are not in name order, so this sort is seen
    expect(await sorted('address', false)).toEqual(by('address'));
    expect(await sorted('address', true)).toEqual(by('address').reverse());
    expect(await sorted('hostname', false)).toEqual(by('hostname'));
    expect(await sorted('hostname', true)).toEqual(by('hostname').reverse());
  });

  it('returns at most `limit` agents but counts every match', async () => {
    const registry = await openRegistry();
    const { basis } = await fleet(registry);
    const first = await registry.page(basis, { sort: 'name', descending: false, limit: 3 });
    expect(first.matching).toBe(9);
    expect(names(first)).toEqual(['100%_sure', 'a_b', 'alpha']);
    const current = await registry.page(basis, { states: ['current'], sort: 'name', descending: true, limit: 1 });
    expect(current.matching).toBe(4);
    expect(names(current)).toEqual(['axb']);
    // Addresses in 10.1.0.0/24: all but delta's and echo's.
    const subnet = await registry.page(basis, { text: '10.1.0.', sort: 'address', descending: false, limit: 2 });
    expect(subnet.matching).toBe(7);
    expect(names(subnet)).toEqual(['alpha', 'axb']);
    expect(await registry.page(basis, { ring: 'canary', sort: 'name', descending: false, limit: 0 })).toEqual({ matching: 3, agents: [] });
  });

  it('lists each agent\'s record, state and address families', async () => {
    const registry = await openRegistry();
    const id = await enrollAndReport(registry, 'solo', {
      ring: 'early',
      address: '192.0.2.5',
      addresses: [
        { address: '2001:db8::5', family: 6 },
        { address: '192.0.2.5', family: 4 },
      ],
      components: [{ id: 'virus-pattern', version: 10, sha256: 'ab'.repeat(32), method: 'full' }],
      consumers: [{ id: 'virus-pattern', engine: 'clamd', version: 10, active: true }],
      lastRun: run('ok', '2025-06-01T10:00:00.000Z'),
      pollSeconds: 120,
    });
    const { agents } = await everyone(registry, { release: served, now: Date.now() });
    expect(agents).toEqual([
      {
        id,
        name: 'solo',
        hostname: 'solo.lan',
        ring: 'early',
        enrolledAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        lastSeen: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        address: '192.0.2.5',
        addresses: [
          { address: '2001:db8::5', family: 6 },
          { address: '192.0.2.5', family: 4 },
        ],
        components: [{ id: 'virus-pattern', version: 10, sha256: 'ab'.repeat(32), method: 'full' }],
        consumers: [{ id: 'virus-pattern', engine: 'clamd', version: 10, active: true }],
        lastRun: run('ok', '2025-06-01T10:00:00.000Z'),
        phase: 'idle',
        notifiedRelease: 0,
        trust: null,
        orders: null,
        pollSeconds: 120,
        state: 'current',
        families: [4, 6],
      },
    ]);
    expect(Date.parse(agents[0]!.lastSeen)).toBeGreaterThanOrEqual(Date.parse(agents[0]!.enrolledAt));
  });
});

describe('eachListed', () => {
  it('streams every agent as JSON, in name order and in chunks, equal to the page rows', async () => {
    const registry = await openRegistry();
    const served = release(5, { 'virus-pattern': 3 });
    // Never reported: empty lists, no last run, no families.
    await enrollOnly(registry, 'ada', { ring: 'canary' });
    // JSON-hostile text in the name, the host name and the error.
    await enrollAndReport(registry, 'bea "quoted" \\ slash', {
      hostname: 'tab\there',
      lastRun: run('failed', Date.now(), 'cannot write "C:\\store"\nsecond line'),
      components: components({ 'virus-pattern': 3 }),
    });
    await enrollAndReport(registry, 'cyd', {
      address: '2001:db8::c',
      addresses: [
        { address: '10.0.0.3', family: 4 },
        { address: '2001:db8::c', family: 6 },
      ],
      components: components({ 'virus-pattern': 3 }),
      lastRun: run('ok'),
    });
    const dot = await enrollAndReport(registry, 'dot', { addresses: [{ address: '2001:db8::d', family: 6 }], components: components({ 'virus-pattern': 2 }) });
    await enrollAndReport(registry, 'eve-ünï', { pollSeconds: 1, phase: 'updating' });
    await registry.markNotified([dot], 5);
    const basis = { release: served, now: Date.now() + 60_000 };

    const chunks: Buffer[][] = [];
    const listed = await registry.eachListed(basis, (json) => chunks.push([...json]), 2);
    expect(listed).toBe(5);
    expect(chunks.map((c) => c.length)).toEqual([2, 2, 1]);

    const parsed = chunks.flat().map((json) => JSON.parse(json.toString('utf8')) as AgentListed);
    const { agents } = await everyone(registry, basis);
    expect(parsed).toEqual(agents);
    expect(parsed.map((a) => a.name)).toEqual(['ada', 'bea "quoted" \\ slash', 'cyd', 'dot', 'eve-ünï']);
    expect(parsed.map((a) => a.state)).toEqual(['outdated', 'failed', 'current', 'notified', 'unreachable']);
    expect(parsed.map((a) => a.families)).toEqual([[], [4], [4, 6], [6], [4]]);
    expect(parsed[1]!.lastRun?.error).toBe('cannot write "C:\\store"\nsecond line');
    // The same fields as a page row, no more (no secret hash, no derived columns).
    for (const row of parsed) expect(Object.keys(row).sort()).toEqual(Object.keys(agents[0]!).sort());
    expect(Object.keys(parsed[0]!)).not.toContain('versions');
  });

  it('hands over nothing for an empty registry, and everything in one chunk by default', async () => {
    const registry = await openRegistry();
    const chunks: Buffer[][] = [];
    expect(await registry.eachListed({ release: undefined, now: Date.now() }, (json) => chunks.push(json))).toBe(0);
    expect(chunks).toEqual([]);
    for (const name of ['a', 'b', 'c']) await enrollAndReport(registry, name);
    expect(await registry.eachListed({ release: undefined, now: Date.now() }, (json) => chunks.push(json))).toBe(3);
    expect(chunks.map((c) => c.length)).toEqual([3]);
  });
});

describe('eachListed, when a row cannot be read', () => {
  it('fails rather than hand over part of the list as if it were all', async () => {
    const registry = await openRegistry();
    for (const name of ['a', 'b', 'c']) await enrollAndReport(registry, name, { components: components({ 'virus-pattern': 175 }) });
    // A damaged row in the middle: its versions are no longer JSON, so judging its state fails.
    await onDatabase(path.join(dir, 'agents.sqlite'), (sql) => sql(`UPDATE agents SET versions = 'not json' WHERE name = 'b'`));
    const taken: Buffer[] = [];
    await expect(registry.eachListed({ release: release(1, { 'virus-pattern': 175 }), now: Date.now() }, (json) => taken.push(...json), 1)).rejects.toThrow(/malformed JSON/i);
    expect(taken.length).toBeLessThan(3);
  });
});

describe('strangers and their reminders', () => {
  async function fleet(registry: AgentRegistry): Promise<number> {
    const dual = [
      { address: '10.0.0.9', family: 4 as const },
      { address: '2001:db8::9', family: 6 as const },
    ];
    for (const name of ['quiet-3', 'quiet-1', 'quiet-2']) await enrollAndReport(registry, name, { pollSeconds: 1, addresses: dual });
    const only4 = [{ address: '10.0.0.4', family: 4 as const }, { address: '10.0.1.4', family: 4 as const }];
    for (const name of ['v4-c', 'v4-a', 'v4-b']) await enrollAndReport(registry, name, { pollSeconds: 1, addresses: only4 });
    await enrollAndReport(registry, 'v6-a', { pollSeconds: 1, address: '2001:db8::6', addresses: [{ address: '2001:db8::6', family: 6 }] });
    // Single-stack agents still heard from: they get through (by a proxy), so no family card names them.
    await enrollAndReport(registry, 'v4-live', { addresses: only4 });
    await enrollAndReport(registry, 'v6-live', { address: '2001:db8::7', addresses: [{ address: '2001:db8::7', family: 6 }] });
    await enrollAndReport(registry, 'both', { addresses: dual });
    await enrollAndReport(registry, 'nothing', { addresses: [] });
    await enrollOnly(registry, 'never-reported');
    return Date.now() + 60_000;
  }

  it('counts silent agents, and the silent ones with only IPv4 or only IPv6, and names the first few', async () => {
    const registry = await openRegistry();
    const now = await fleet(registry);
    expect(await registry.strangers(now, 2)).toEqual({
      silent: { agents: 7, names: ['quiet-1', 'quiet-2'] },
      only4: { agents: 3, names: ['v4-a', 'v4-b'] },
      only6: { agents: 1, names: ['v6-a'] },
    });
    expect((await registry.strangers(now)).only4.names).toEqual(['v4-a', 'v4-b', 'v4-c']);
    // Before their two poll intervals pass, nobody is silent, and no single-stack agent is a concern.
    expect(await registry.strangers(Date.now() - 10_000)).toEqual({ silent: { agents: 0, names: [] }, only4: { agents: 0, names: [] }, only6: { agents: 0, names: [] } });
  });

  it('become reminder cards naming the agents a single-stack server cannot reach', async () => {
    const registry = await openRegistry();
    const strangers = await registry.strangers(await fleet(registry), 2);

    const v6server = agentReminders(strangers, { stack: 'ipv6', url: 'https://[2001:db8::1]:8443' });
    expect(v6server.map((r) => r.id)).toEqual(['agents-unreachable', 'agents-family']);
    const [silent, family] = v6server;
    expect(silent!.title).toBe('7 agents have not been heard from');
    expect(silent!.body).toMatch(/^quiet-1, quiet-2 and 5 more did not report/);
    expect(silent!.action).toContain('https://[2001:db8::1]:8443');
    expect(family!.title).toBe('3 agents have only IPv4; this server only IPv6');
    expect(family!.body).toMatch(/^v4-a, v4-b and 1 more cannot reach a pure IPv6 server directly, and have not been heard from/);

    const v4server = agentReminders(strangers, { stack: 'ipv4', url: undefined });
    expect(v4server[1]!.title).toBe('1 agent has only IPv6; this server only IPv4');
    expect(v4server[1]!.body).toMatch(/^v6-a cannot reach a pure IPv4 server/);
    expect(v4server[1]!.body).not.toContain('more');

    expect(agentReminders(strangers, { stack: 'dual', url: undefined }).map((r) => r.id)).toEqual(['agents-unreachable']);
  });
});

describe('failures ring by ring', () => {
  const since = Date.parse('2025-03-01T00:00:00.000Z');

  async function fleet(registry: AgentRegistry): Promise<void> {
    const agents: [string, AgentLastRun | undefined][] = [
      ['c-old-fail', run('failed', since - 1, 'old news')],
      ['c-new-fail', run('failed', since, 'checksum mismatch')],
      ['c-ok', run('ok', since + 1000)],
      ['b-fail-1', run('failed', since + 5000, 'disk full')],
      ['b-fail-2', run('failed', since + 6000)],
      ['b-fail-3', run('failed', since + 7000, 'timeout')],
      ['b-ok', run('ok', since + 8000)],
      ['b-never', undefined],
      ['e-ok', run('ok', since + 9000)],
    ];
    for (const [name, lastRun] of agents) await enrollAndReport(registry, name, lastRun ? { lastRun } : {});
    // Moved after enrolling in broad: by name, and by id.
    expect(await registry.setRing('c-old-fail', 'canary')).toHaveLength(1);
    expect(await registry.setRing('c-new-fail', 'canary')).toHaveLength(1);
    const [cOk] = await registry.setRing('c-ok', 'canary');
    expect(await registry.setRing(cOk!, 'canary')).toEqual([cOk]);
    expect(await registry.setRing('e-ok', 'early')).toHaveLength(1);
    await expect(registry.setRing('nobody', 'early')).rejects.toThrow(/no agent is named or numbered "nobody"/);
  }

  const byRing = <T extends { ring: string }>(rows: T[]) => [...rows].sort((a, b) => a.ring.localeCompare(b.ring));

  it('counts only failures at or after `since`, per ring', async () => {
    const registry = await openRegistry();
    await fleet(registry);
    expect(byRing(await registry.ringFailures(since))).toEqual([
      { ring: 'broad', agents: 5, failing: 3, content: 0 },
      { ring: 'canary', agents: 3, failing: 1, content: 0 },
      { ring: 'early', agents: 1, failing: 0, content: 0 },
    ]);
    expect(byRing(await registry.ringFailures(since - 1)).map((r) => r.failing)).toEqual([3, 2, 0]);
    expect(byRing(await registry.ringFailures(since + 6001)).map((r) => r.failing)).toEqual([1, 0, 0]);
  });

  it('leaves out an agent\'s own (local) failures, counts content failures apart, and dates a refusal from when it was first refused', async () => {
    const registry = await openRegistry();
    const failure = (kind: 'content' | 'local', at: number) => ({ kind, component: 'clamav-test-sigs', version: 3, ...(kind === 'content' ? { engine: 'clamd', stage: 'check' as const } : {}), message: kind === 'content' ? 'Malformed database' : 'EROFS', at: new Date(at).toISOString() });
    await enrollAndReport(registry, 'c-local', { ring: 'canary', lastRun: { ...run('failed', since + 10, 'read-only'), failure: failure('local', since + 10) } });
    await enrollAndReport(registry, 'c-content', { ring: 'canary', lastRun: { ...run('failed', since + 20, 'refused'), failure: failure('content', since + 20) } });
    // Reported again a minute later (no retry): still the refusal of since + 20.
    await enrollAndReport(registry, 'c-refused-before', { ring: 'canary', lastRun: { ...run('failed', since + 60_000, 'refused'), failure: failure('content', since - 5) } });
    expect(await registry.ringFailures(since)).toEqual([{ ring: 'canary', agents: 3, failing: 1, content: 1 }]);
    expect(await registry.failing('canary', since, 10)).toEqual([{ name: 'c-content', error: 'refused', failure: failure('content', since + 20) }]);
    expect((await registry.ringFailures(since - 10))[0]).toMatchObject({ failing: 2, content: 2 });
    // The agents list still shows the local failure as failed.
    expect((await statesByName(registry, { release: undefined, now: Date.now() }))['c-local']).toBe('failed');
  });

  it('names the first failing agents of a ring with their errors', async () => {
    const registry = await openRegistry();
    await fleet(registry);
    expect(await registry.failing('broad', since, 2)).toEqual([
      { name: 'b-fail-1', error: 'disk full' },
      { name: 'b-fail-2', error: 'failed' }, // no error text given
    ]);
    expect(await registry.failing('broad', since, 10)).toHaveLength(3);
    expect(await registry.failing('canary', since, 10)).toEqual([{ name: 'c-new-fail', error: 'checksum mismatch' }]);
    expect(await registry.failing('canary', since - 1, 10)).toEqual([
      { name: 'c-new-fail', error: 'checksum mismatch' },
      { name: 'c-old-fail', error: 'old news' },
    ]);
    expect(await registry.failing('early', 0, 10)).toEqual([]);
  });
});

describe('reports', () => {
  it("says which reports are news (phase, versions or last run changed), and the overview tells of them though the counts stay: a run begun and ended between two counts", async () => {
    const registry = await openRegistry();
    const lastRun = run('ok', Date.now() - 60_000);
    const id = await enrollAndReport(registry, 'blink', { components: components({ 'virus-pattern': 171 }), lastRun });
    const base: AgentReport = { name: 'blink', hostname: 'blink.lan', addresses: [{ address: '10.0.0.1', family: 4 }], components: components({ 'virus-pattern': 171 }), phase: 'idle', pollSeconds: POLL };
    // Only still there: not news, with or without the last run repeated.
    expect(await registry.report(id, base, '10.0.0.1')).toBe(false);
    expect(await registry.report(id, { ...base, lastRun }, '10.0.0.1')).toBe(false);

    const store = new ComponentStore(path.join(dir, 'server'));
    const overview = new AgentsOverview(registry, new Distribution(path.join(dir, 'server'), store));
    let told = 0;
    overview.on('change', () => told++);
    await overview.start();
    try {
      expect(told).toBe(1); // the first count
      const counts = { ...overview.counts };
      // A run begins and ends before the next count: the counts are as they were.
      // (Both in one group of the registry's writes: the second is compared with the first.)
      const thisRun = run('ok');
      const [began, ended] = await Promise.all([
        registry.report(id, { ...base, lastRun, phase: 'updating' }, '10.0.0.1'),
        registry.report(id, { ...base, lastRun: thisRun, phase: 'idle' }, '10.0.0.1'),
      ]);
      expect([began, ended]).toEqual([true, true]);
      overview.reported(began);
      overview.reported(ended);
      await overview.recount();
      expect(overview.counts).toEqual(counts);
      expect(told).toBe(2);
      // A heartbeat right after: heard, but told only once SEEN_EVERY_MS has passed.
      overview.reported(await registry.report(id, { ...base, lastRun: thisRun }, '10.0.0.1'));
      await overview.recount();
      expect(told).toBe(2);
      // New versions are news too; the same report twice in one group, only the first time.
      const newer = { ...base, components: components({ 'virus-pattern': 173 }) };
      expect(await Promise.all([registry.report(id, newer, '10.0.0.1'), registry.report(id, newer, '10.0.0.1')])).toEqual([true, false]);
    } finally {
      overview.stop();
    }
  });

  it('a report without a last run (a heartbeat) keeps the previous run and what is derived from it', async () => {
    const registry = await openRegistry();
    const failedAt = Date.now() - 1000;
    const id = await enrollAndReport(registry, 'flaky', { lastRun: run('failed', failedAt, 'disk full') });
    const heartbeat: AgentReport = { name: 'flaky', hostname: 'flaky.lan', addresses: [{ address: '10.0.0.1', family: 4 }], components: [], phase: 'idle', pollSeconds: POLL };
    await registry.report(id, heartbeat, '10.0.0.1');

    const basis = { release: undefined, now: Date.now() };
    const [row] = (await everyone(registry, basis)).agents;
    expect(row!.state).toBe('failed');
    expect(row!.lastRun).toEqual(run('failed', failedAt, 'disk full'));
    expect(await registry.failing('broad', failedAt, 5)).toEqual([{ name: 'flaky', error: 'disk full' }]);
    expect(await registry.ringFailures(failedAt)).toEqual([{ ring: 'broad', agents: 1, failing: 1, content: 0 }]);
    expect(names(await everyone(registry, basis, { text: 'DISK' }))).toEqual(['flaky']);

    // The next run succeeds: the failure and its error are gone.
    await registry.report(id, { ...heartbeat, lastRun: run('ok') }, '10.0.0.1');
    const after = { release: undefined, now: Date.now() };
    expect((await everyone(registry, after)).agents[0]!.state).toBe('current');
    expect(await registry.failing('broad', 0, 5)).toEqual([]);
    expect(await registry.ringFailures(0)).toEqual([{ ring: 'broad', agents: 1, failing: 0, content: 0 }]);
    expect(names(await everyone(registry, after, { text: 'disk' }))).toEqual([]);
  });

  it("keeps each agent's last 20 runs for its details, once each though reports repeat the last run", async () => {
    const registry = await openRegistry();
    const base = Date.now() - 100_000;
    const id = await enrollAndReport(registry, 'busy', { lastRun: run('ok', base) });
    const other = await enrollAndReport(registry, 'other', { lastRun: run('failed', base, 'read-only file system') });
    const report = (lastRun: ReturnType<typeof run>) =>
      registry.report(id, { name: 'busy', hostname: 'busy.lan', addresses: [{ address: '10.0.0.1', family: 4 }], components: [], phase: 'idle', pollSeconds: POLL, lastRun }, '10.0.0.1');
    for (let i = 1; i <= 24; i++) {
      await report(run(i % 5 ? 'ok' : 'failed', base + i * 1000, 'disk full'));
      await report(run(i % 5 ? 'ok' : 'failed', base + i * 1000, 'disk full')); // the same run, repeated by a heartbeat
    }
    const basis = { release: undefined, now: Date.now() };
    const details = await registry.details(basis, id);
    expect(details!.runs.map((r) => Date.parse(r.at))).toEqual(Array.from({ length: 20 }, (_, i) => base + (24 - i) * 1000));
    expect(details!.runs.filter((r) => r.result === 'failed')).toHaveLength(4);
    expect((await registry.details(basis, other))!.runs).toEqual([run('failed', base, 'read-only file system')]);
    // Forgotten: its row and runs are gone, and so is its credential's standing.
    await registry.remove(id);
    expect(await registry.details(basis, id)).toBeUndefined();
    await expect(report(run('ok'))).rejects.toThrow(/unknown agent/);
  });

  it('one(): by id, by the start of an id, or by a name only one agent has', async () => {
    const registry = await openRegistry();
    const a = await enrollAndReport(registry, 'twin', { hostname: 'a.lan' });
    const b = await enrollAndReport(registry, 'twin', { hostname: 'b.lan' });
    // Names are unique at enrollment (b is twin-2); a registry from before they were can still share one.
    await onDatabase(path.join(dir, 'agents.sqlite'), (sql) => sql(`UPDATE agents SET name = 'twin' WHERE id = ?`, [b]));
    const solo = await enrollAndReport(registry, 'solo');
    expect((await registry.one(a)).id).toBe(a);
    expect((await registry.one(b.slice(0, 8))).id).toBe(b);
    expect((await registry.one('solo')).id).toBe(solo);
    await expect(registry.one('twin')).rejects.toThrow(/^2 agents are named "twin"; give the id of the one you mean: /);
    await expect(registry.one(a.slice(0, 4))).rejects.toThrow(/no agent is named or numbered/);
  });

  it('refuses a report from an agent the registry does not know', async () => {
    const registry = await openRegistry();
    await expect(registry.report('no-such-id', { name: 'x', hostname: 'x', addresses: [], components: [], phase: 'idle', pollSeconds: POLL }, '10.0.0.1')).rejects.toThrow(/unknown agent/);
  });
});

function names(page: { agents: AgentListed[] }): string[] {
  return page.agents.map((a) => a.name);
}

describe('migration', () => {
  it('adds the derived columns to an older registry and fills them from the reports\' JSON', async () => {
    const file = path.join(dir, 'agents.sqlite');
    const now = Date.now();
    const failedAt = '2025-04-02T03:04:05.678Z';
    await onDatabase(file, async (sql) => {
      // The schema before versions, families, last_result, last_run_at and last_error.
      await sql(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
      await sql(`CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        name TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        ring TEXT NOT NULL DEFAULT 'broad',
        enrolled_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        addresses TEXT NOT NULL DEFAULT '[]',
        components TEXT NOT NULL DEFAULT '[]',
        last_run TEXT,
        phase TEXT NOT NULL DEFAULT 'idle',
        notified_release INTEGER NOT NULL DEFAULT 0,
        poll_seconds INTEGER NOT NULL DEFAULT 300
      )`);
      const insert = `INSERT INTO agents (id, secret_hash, name, hostname, ring, enrolled_at, last_seen, address, addresses, components, last_run) VALUES (?, 'x', ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
      await sql(insert, [
        'id-old',
        'old-timer',
        'old.lan',
        'canary',
        now - 5000,
        now,
        '10.0.0.5',
        JSON.stringify([
          { address: '2001:db8::5', family: 6 },
          { address: '10.0.0.5', family: 4 },
          { address: '10.0.1.5', family: 4 },
        ]),
        JSON.stringify([{ id: 'virus-pattern', version: 175 }]),
        JSON.stringify(run('failed', failedAt, 'disk full')),
      ]);
      await sql(insert, ['id-good', 'good', 'good.lan', 'broad', now - 5000, now, '10.0.0.6', JSON.stringify([{ address: '10.0.0.6', family: 4 }]), JSON.stringify([{ id: 'virus-pattern', version: 175 }, { id: 'engine', version: 12 }]), JSON.stringify(run('ok', failedAt))]);
      await sql(insert, ['id-new', 'newcomer', 'new.lan', 'broad', now - 5000, now, '10.0.0.7', '[]', '[]', null]);
    });

    const registry = await openRegistry();
    const basis = { release: release(9, { 'virus-pattern': 175, engine: 12 }), now };
    const { agents } = await everyone(registry, basis);
    expect(agents.map((a) => [a.name, a.state, a.families])).toEqual([
      ['good', 'current', [4]],
      ['newcomer', 'outdated', []],
      ['old-timer', 'failed', [4, 6]],
    ]);
    expect(agents[2]!.lastRun).toEqual(run('failed', failedAt, 'disk full'));
    expect(await registry.failing('canary', Date.parse(failedAt), 5)).toEqual([{ name: 'old-timer', error: 'disk full' }]);
    // last_run_at is the run's millisecond, no later.
    expect(await registry.failing('canary', Date.parse(failedAt) + 1, 5)).toEqual([]);
    expect(names(await everyone(registry, basis, { text: 'DISK FULL' }))).toEqual(['old-timer']);
    // Once silent (two poll intervals of 300 s), its families from the migrated JSON name the IPv4-only one.
    expect(await registry.strangers(now + 601_000)).toMatchObject({ only4: { agents: 1, names: ['good'] }, only6: { agents: 0 } });
    await registry.close();
    opened = [];

    // Opening again finds the columns there and changes nothing.
    const again = await openRegistry();
    expect((await everyone(again, basis)).agents).toEqual(agents);
  });
});

describe('enrollment token', () => {
  it('never starts with "-", so `bulwark agent --token TOKEN` cannot take it for an option', async () => {
    const registry = await openRegistry();
    // base64url starts with "-" one time in 64: 500 tokens would hold one with near certainty.
    const tokens = [await registry.enrollmentToken()];
    for (let i = 0; i < 500; i++) tokens.push(await registry.rotateToken());
    expect(tokens.filter((t) => !/^[A-Za-z0-9]/.test(t))).toEqual([]);
    expect(new Set(tokens).size).toBe(tokens.length);
  });

  it('decides the ring: each ring has its own token, rotated on its own, and what the agent asks for plays no part', async () => {
    const registry = await openRegistry();
    const who = { hostname: 'h', address: '10.0.0.1', pollSeconds: POLL };
    const broad = await registry.enrollmentToken();
    const canary = await registry.enrollmentToken('canary');
    expect(canary).not.toBe(broad);
    expect(await registry.enrollmentToken('canary')).toBe(canary);
    expect(await registry.enroll(broad, { ...who, name: 'b' })).toMatchObject({ ring: 'broad', name: 'b' });
    expect(await registry.enroll(canary, { ...who, name: 'c' })).toMatchObject({ ring: 'canary', name: 'c' });
    // An early token that was never made is no token at all.
    await expect(registry.enroll('', { ...who, name: 'x' })).rejects.toThrow(/wrong or was rotated/);
    const rotated = await registry.rotateToken('canary');
    await expect(registry.enroll(canary, { ...who, name: 'late' })).rejects.toThrow(/wrong or was rotated/);
    expect(await registry.enroll(rotated, { ...who, name: 'd' })).toMatchObject({ ring: 'canary' });
    expect(await registry.enrollmentToken()).toBe(broad); // the other rings' tokens are untouched
    expect((await registry.page({ release: undefined, now: Date.now() }, { sort: 'name', descending: false, limit: 10 })).agents.map((a) => [a.name, a.ring])).toEqual([
      ['b', 'broad'],
      ['c', 'canary'],
      ['d', 'canary'],
    ]);
  });
});

describe('agent names', () => {
  it('are unique ignoring case: a second agent asking for a taken name gets the first free suffix, and a report cannot rename an agent', async () => {
    const registry = await openRegistry();
    const token = await registry.enrollmentToken();
    const enroll = (name: string) => registry.enroll(token, { name, hostname: 'h', address: '10.0.0.1', pollSeconds: POLL });
    expect((await enroll('web-01')).name).toBe('web-01');
    expect((await enroll('WEB-01')).name).toBe('WEB-01-2');
    expect((await enroll('web-01')).name).toBe('web-01-3');
    // At once, too: two enrollments in flight get two names.
    expect((await Promise.all([enroll('db'), enroll('db')])).map((a) => a.name).sort()).toEqual(['db', 'db-2']);
    // Within the 100 characters a name may have.
    const long = 'x'.repeat(100);
    expect((await enroll(long)).name).toBe(long);
    expect((await enroll(long)).name).toBe(`${'x'.repeat(98)}-2`);
    const { id } = await enroll('honest');
    await registry.report(id, { name: 'web-01', hostname: 'h', addresses: [], components: [], phase: 'idle', pollSeconds: POLL, trust: 'first-server' }, '10.0.0.9');
    const listed = (await registry.page({ release: undefined, now: Date.now() }, { text: '10.0.0.9', sort: 'name', descending: false, limit: 10 })).agents;
    expect(listed.map((a) => [a.name, a.trust])).toEqual([['honest', 'first-server']]);
  });
});

describe('read-only', () => {
  it('an older registry opened read-only first (by `bulwark agents list`) gets its columns before it is queried', async () => {
    const now = Date.now();
    await onDatabase(path.join(dir, 'agents.sqlite'), async (sql) => {
      await sql(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
      await sql(`CREATE TABLE agents (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, name TEXT NOT NULL, hostname TEXT NOT NULL DEFAULT '', ring TEXT NOT NULL DEFAULT 'broad',
        enrolled_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, address TEXT NOT NULL DEFAULT '', addresses TEXT NOT NULL DEFAULT '[]', components TEXT NOT NULL DEFAULT '[]',
        last_run TEXT, phase TEXT NOT NULL DEFAULT 'idle', notified_release INTEGER NOT NULL DEFAULT 0, poll_seconds INTEGER NOT NULL DEFAULT 300)`);
      await sql(`INSERT INTO agents (id, secret_hash, name, enrolled_at, last_seen, components, last_run) VALUES ('id-1', 'x', 'old', ?, ?, ?, ?)`, [
        now,
        now,
        JSON.stringify([{ id: 'virus-pattern', version: 175 }]),
        JSON.stringify(run('failed', now, 'disk full')),
      ]);
    });
    const reader = await openRegistry({ readOnly: true });
    const { agents } = await everyone(reader, { release: release(1, { 'virus-pattern': 175 }), now });
    expect(agents.map((a) => [a.name, a.state, a.lastRun?.error])).toEqual([['old', 'failed', 'disk full']]);
    await expect(reader.setRing('old', 'canary')).rejects.toThrow(/readonly|read-only/i);
  });

  it('queries a registry that a read-write registry holds open, and sees its later reports', async () => {
    const writer = await openRegistry();
    await enrollAndReport(writer, 'first', { lastRun: run('failed', Date.now(), 'boom') });

    const reader = await openRegistry({ readOnly: true });
    const basis = () => ({ release: undefined, now: Date.now() });
    expect(await reader.tally(basis())).toEqual([{ state: 'failed', ring: 'broad', agents: 1 }]);
    expect(names(await everyone(reader, basis()))).toEqual(['first']);

    await enrollAndReport(writer, 'second');
    expect(names(await everyone(reader, basis()))).toEqual(['first', 'second']);
    const listed: Buffer[] = [];
    expect(await reader.eachListed(basis(), (json) => listed.push(...json))).toBe(2);
    expect(await reader.count()).toBe(2);

    // It cannot write.
    await expect(reader.setRing('first', 'canary')).rejects.toThrow(/readonly|read-only/i);
    expect(await writer.ringOf((await everyone(writer, basis())).agents[0]!.id)).toBe('broad');
  });

  it('refuses to open a registry that does not exist', async () => {
    await expect(AgentRegistry.open(path.join(dir, 'nothing-here'), { readOnly: true })).rejects.toThrow(/no agent registry/);
    expect(fs.existsSync(path.join(dir, 'nothing-here'))).toBe(false);
  });
});
