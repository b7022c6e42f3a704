// The installation in words (engine/words.ts): the one headline the console, the tray and `bulwark
// status` share, worst first; failures without their raw text; the saving of a download.
import { describe, expect, it } from 'vitest';
import { headline, plainError, runFailureWords, savedWords, type HeadlineInput } from '../src-main/engine/words.js';
import { trayModel } from '../src-main/electron/tray-menu.js';
import { agentBadge } from '../src-renderer/lib/format.js';

const counts = (c: Partial<NonNullable<HeadlineInput['agents']>['counts']> = {}) => ({ total: 5, current: 5, outdated: 0, updating: 0, failed: 0, unreachable: 0, ...c });
const input = (over: Partial<HeadlineInput> = {}): HeadlineInput => ({
  engine: { type: 'idle' },
  neverUpdated: false,
  sourceSet: true,
  agents: { enabled: true, counts: counts(), held: 0, outdatedSince: null, halted: null },
  nameOf: (id) => ({ 'virus-pattern': 'Virus Pattern' })[id] ?? id,
  now: Date.parse('2026-12-07T12:00:00Z'),
  ...over,
});
const agents = (over: Partial<NonNullable<HeadlineInput['agents']>>) => ({ agents: { ...input().agents!, ...over } });

describe('headline', () => {
  it('says the server and the fleet when all is well', () => {
    expect(headline(input())).toEqual({ tone: 'ok', text: 'Up to date: server and 5 agents' });
    expect(headline(input({ agents: null }))).toEqual({ tone: 'ok', text: 'Up to date' });
    // Held agents are counted apart from the outdated ones (agent-status.ts).
    expect(headline(input(agents({ counts: counts({ current: 3 }), held: 2 })))).toEqual({ tone: 'ok', text: 'Up to date: server and 3 of 5 agents (2 agents waiting for the rollout)' });
    expect(headline(input(agents({ counts: counts({ current: 2, outdated: 1 }), held: 2 })))).toEqual({ tone: 'warning', text: '1 agent out of date' });
  });

  it('puts the worst first: a halted rollout over a green server, a failing server over outdated agents', () => {
    const halted = input(agents({ counts: counts({ current: 0, failed: 1, outdated: 4 }), halted: { reason: '1 of 1 canary agent failed with release 7' } }));
    expect(headline(halted)).toEqual({ tone: 'error', text: 'Rollout halted: 1 of 1 canary agent failed' });
    // Content an engine would not load: which, and in which engine (its words are in the reminder).
    const refused = input(agents({ halted: { reason: 'the content failed to load in clamd on canary-1: LibClamAV Error: Malformed database', content: { component: 'clamav-test-sigs', version: 3, engine: 'clamd' } } }));
    expect(headline(refused)).toEqual({ tone: 'error', text: 'Rollout halted: clamav-test-sigs 3 failed to load in clamd' });
    const failing = input({ engine: { type: 'failed', code: 'ERR_NETWORK', error: 'cannot reach http://x: connection refused' }, ...agents({ counts: counts({ current: 2, outdated: 3 }) }) });
    expect(headline(failing)).toEqual({ tone: 'error', text: 'Updates failing: the update source cannot be reached' });
    expect(headline(input(agents({ counts: counts({ current: 4, failed: 1 }) })))).toEqual({ tone: 'error', text: '1 agent failed to update' });
    expect(headline(input(agents({ counts: counts({ current: 3, unreachable: 2 }) })))).toEqual({ tone: 'warning', text: '2 agents not heard from' });
  });

  it('says how long outdated agents have been behind, once it is long enough to matter', () => {
    const behind = (since: string) => headline(input(agents({ counts: counts({ current: 0, outdated: 5 }), outdatedSince: since })));
    expect(behind('2026-12-04T12:00:00Z')).toEqual({ tone: 'warning', text: '5 agents out of date for 3 days' });
    expect(behind('2026-12-07T11:50:00Z')).toEqual({ tone: 'warning', text: '5 agents out of date' });
  });

  it('a fresh install is set up, not failed; busy says what runs', () => {
    expect(headline(input({ neverUpdated: true, sourceSet: false }))).toEqual({ tone: 'setup', text: 'Set up: choose an update source' });
    expect(headline(input({ engine: { type: 'downloading', component: 'virus-pattern', index: 1, total: 4 } }))).toEqual({ tone: 'busy', text: 'Updating 2 of 4: Virus Pattern' });
  });
});

describe('plainError', () => {
  it('says a system error in words, without paths or codes', () => {
    expect(plainError("virus-pattern failed: EROFS: read-only file system, open '/var/lib/bulwark-agent/tmp/x.part'")).toBe('its disk is read-only');
    expect(plainError('cannot reach http://127.0.0.1:9: connection refused: connect ECONNREFUSED 127.0.0.1:9')).toBe('nothing answers at that address (connection refused)');
    expect(plainError('ENOSPC: no space left on device, write')).toBe('its disk is full');
    expect(plainError('something odd happened in /tmp/abc/def: details')).toBe('something odd happened in a file');
  });
});

describe('plainError for an engine that would not take a version', () => {
  it("names the engine, the component and the version, without the engine's raw output", () => {
    expect(plainError('clamav-test-sigs failed: clamd refused clamav-test-sigs 3 at its check (clamscan exit 2): LibClamAV Error: cli_loadhash: Malformed database')).toBe('clamd would not load clamav-test-sigs 3');
    expect(plainError('clamav-test-sigs failed: clamav-test-sigs 3 was refused by clamd at 2026-12-07T03:00:00.000Z: Malformed database')).toBe('clamd would not load clamav-test-sigs 3');
    expect(plainError('x failed: clamd did not reload x 4 (clamdscan exit 2): ERROR: Could not connect; the previous version is back in place')).toBe('clamd did not reload x 4');
    expect(plainError('x failed: clamd failed its health probe with x 5 for 30 s (clamdscan exit 0): /p: OK')).toBe('clamd failed its health probe with x 5');
  });
});

describe('runFailureWords', () => {
  it("keeps which components a run failed on, and says why in words", () => {
    expect(runFailureWords("virus-pattern failed: EROFS: read-only file system, open '/var/lib/bulwark-agent/tmp/x.part'")).toBe('Virus Pattern failed (its disk is read-only)');
    expect(runFailureWords("virus-pattern, scan-engine failed: EISDIR: illegal operation on a directory, rename '/a' -> '/b'")).toBe('Virus Pattern, Scan Engine failed (something else is in the way of its files)');
    expect(runFailureWords('acme-rules failed: the vendor changed its mind')).toBe('Acme Rules failed (the vendor changed its mind)');
    expect(runFailureWords('yara-rules failed: yara refused yara-rules 1 at its check (yara exit 1): error: rule "broken"')).toBe('Yara Rules failed (yara would not load yara-rules 1)');
    expect(runFailureWords('cannot reach http://127.0.0.1:9: connection refused')).toBe('nothing answers at that address (connection refused)');
  });
});

describe('savedWords', () => {
  it('never says "saved 0.0%" or "saved 100.0%"', () => {
    expect(savedWords('full', 1200, 1000)).toBe('compressed: no saving');
    expect(savedWords('incremental', 1000, 1000)).toBe('no saving');
    expect(savedWords('incremental', 16, 4_000_000)).toBe('saved 99.9%');
    expect(savedWords('full', 999_990, 1_000_000)).toBe('saved less than 0.1%');
    expect(savedWords('incremental', 16_200, 4_000_000)).toBe('saved 99.5%');
    expect(savedWords('full', 10, 0)).toBe('');
  });
});

describe('the tray', () => {
  it('shows the headline, and turns its icon to failed for a halted rollout while the server itself is idle', () => {
    const model = trayModel({ type: 'idle' }, { startAtLogin: false, reminders: [{ title: 'something else' }], headline: { tone: 'error', text: 'Rollout halted: 1 of 1 canary agent failed' } });
    expect(model.icon).toBe('failed');
    expect(model.tooltip).toBe('Bulwark: Rollout halted: 1 of 1 canary agent failed');
    expect(model.menu[0]).toMatchObject({ label: 'Rollout halted: 1 of 1 canary agent failed' });
    expect(trayModel({ type: 'idle' }, { startAtLogin: false, headline: { tone: 'ok', text: 'Up to date: server and 5 agents' } }).icon).toBe('idle');
  });
});

describe("an agent's badge in the console", () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  const ago = (seconds: number) => new Date(now - seconds * 1000).toISOString();
  it('tells "updating" from "silent since it started updating" (killed mid-run): past a poll interval and a half without a report', () => {
    expect(agentBadge({ state: 'updating', lastSeen: ago(30), pollSeconds: 300 }, now)).toMatchObject({ word: 'updating', tone: 'info' });
    // A live agent mid-run reports at each poll (at most 1.2 poll intervals apart).
    expect(agentBadge({ state: 'updating', lastSeen: ago(360), pollSeconds: 300 }, now).word).toBe('updating');
    const silent = agentBadge({ state: 'updating', lastSeen: ago(460), pollSeconds: 300 }, now);
    expect(silent).toMatchObject({ word: 'silent since it started updating', tone: 'warning' });
    expect(silent.title).toMatch(/may have been stopped mid-update/);
    // Other states keep their words, however long the silence (unreachable comes from the server at twice the interval).
    expect(agentBadge({ state: 'current', lastSeen: ago(460), pollSeconds: 300 }, now).word).toBe('current');
    expect(agentBadge({ state: 'unreachable', lastSeen: ago(700), pollSeconds: 300 }, now).word).toBe('unreachable');
  });
});
