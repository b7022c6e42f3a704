import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Distribution } from '../src-main/distribution/release.js';
import { Engine } from '../src-main/engine/engine.js';
import { ComponentStore } from '../src-main/engine/store.js';
import type { RunRecord } from '../src-main/engine/history.js';
import { Settings } from '../src-main/engine/settings.js';
import { isBusy, StateMachine, type EngineState, type EngineStateType } from '../src-main/engine/state.js';
import { closedPort } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

const TYPES: EngineStateType[] = ['idle', 'checking', 'downloading', 'applying', 'distributing', 'failed'];

function state(type: EngineStateType): EngineState {
  switch (type) {
    case 'idle':
      return { type };
    case 'checking':
    case 'distributing':
      return { type, trigger: 'manual' };
    case 'downloading':
      return { type, trigger: 'manual', component: 'virus-pattern', index: 0, total: 1, method: 'full', bytes: 0 };
    case 'applying':
      return { type, trigger: 'manual', component: 'virus-pattern', index: 0, total: 1, bytes: 10 };
    case 'failed':
      return { type, error: 'boom', at: new Date(0).toISOString() };
  }
}

/** A legal way from idle to each state. */
const PATH_TO: Record<EngineStateType, EngineStateType[]> = {
  idle: [],
  checking: ['checking'],
  downloading: ['checking', 'downloading'],
  applying: ['checking', 'downloading', 'applying'],
  distributing: ['checking', 'downloading', 'applying', 'distributing'],
  failed: ['checking', 'failed'],
};

/** The transitions documented in state.ts (its diagram and its notes). */
const DOCUMENTED: Record<EngineStateType, EngineStateType[]> = {
  idle: ['checking'],
  checking: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  downloading: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  applying: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  distributing: ['idle', 'failed'],
  failed: ['checking'],
};

function machineIn(type: EngineStateType): StateMachine {
  const machine = new StateMachine();
  for (const step of PATH_TO[type]) machine.transition(state(step));
  expect(machine.state.type).toBe(type);
  return machine;
}

describe('StateMachine', () => {
  it('starts idle', () => {
    expect(new StateMachine().state).toEqual({ type: 'idle' });
  });

  for (const from of TYPES) {
    for (const to of TYPES) {
      const legal = DOCUMENTED[from].includes(to);
      it(`${legal ? 'allows' : 'refuses'} ${from} -> ${to}`, () => {
        const machine = machineIn(from);
        const before = machine.state;
        const changes: [EngineState, EngineState][] = [];
        machine.on('change', (next, previous) => changes.push([next, previous]));
        const next = state(to);
        if (legal) {
          machine.transition(next);
          expect(machine.state).toBe(next);
          expect(changes).toEqual([[next, before]]);
          expect(changes[0]![1]).toBe(before);
        } else {
          expect(() => machine.transition(next)).toThrow(`illegal engine transition ${from} -> ${to}`);
          expect(machine.state).toBe(before);
          expect(changes).toEqual([]);
        }
      });
    }
  }

  it('emits change with (next, previous) along a whole run', () => {
    const machine = new StateMachine();
    const seen: string[] = [];
    machine.on('change', (next, previous) => seen.push(`${previous.type}->${next.type}`));
    for (const step of ['checking', 'downloading', 'applying', 'downloading', 'applying', 'distributing', 'idle', 'checking', 'failed', 'checking', 'idle'] as const) {
      machine.transition(state(step));
    }
    expect(seen).toEqual([
      'idle->checking',
      'checking->downloading',
      'downloading->applying',
      'applying->downloading',
      'downloading->applying',
      'applying->distributing',
      'distributing->idle',
      'idle->checking',
      'checking->failed',
      'failed->checking',
      'checking->idle',
    ]);
  });

  it('isBusy is true exactly while a run is in progress', () => {
    expect(TYPES.filter((t) => isBusy(state(t)))).toEqual(['checking', 'downloading', 'applying', 'distributing']);
  });
});

describe('Engine runs', () => {
  let source: TestSource;
  let dataDir: string;
  let engine: Engine | undefined;

  beforeEach(async () => {
    source = await new TestSource().start();
    source.addPattern('virus-pattern', { bytes: 100_000 });
    source.publish();
    dataDir = tempDir('bulwark-state-engine-');
  });

  afterEach(async () => {
    await engine?.stop();
    engine = undefined;
    await source.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(source.dir, { recursive: true, force: true });
  });

  const timestampRequests = () => source.requests.filter((r) => r.endsWith('/timestamp.json')).length;

  /** A server's engine: it distributes to agents, so new components pass through 'distributing'. */
  function engineFor(url = source.url): { engine: Engine; settings: Settings; states: EngineState[] } {
    const settings = Settings.open(dataDir);
    settings.set('source', { url, trustedRoot: source.rootFile });
    engine = new Engine({ dataDir, settings, distributor: new Distribution(dataDir, new ComponentStore(dataDir)) });
    const states: EngineState[] = [];
    engine.on('state', (s) => states.push(s));
    return { engine, settings, states };
  }

  it('joins concurrent update() calls into one run (single flight)', async () => {
    const { engine } = engineFor();
    const first = engine.update();
    const second = engine.update('schedule');
    expect(second).toBe(first);
    expect(engine.state.type).toBe('checking');
    const [a, b] = await Promise.all([first, second]);
    expect(b).toBe(a);
    expect(a.result).toBe('ok');
    expect(a.trigger).toBe('manual');
    expect(a.components.map((c) => [c.id, c.method])).toEqual([['virus-pattern', 'full']]);
    expect(timestampRequests()).toBe(1);
    expect(engine.history.recent()).toHaveLength(1);

    // Once it has finished, the next call starts a new run.
    const third = engine.update();
    expect(third).not.toBe(first);
    const c = await third;
    expect(c).not.toBe(a);
    expect(timestampRequests()).toBe(2);
    expect(engine.history.recent()).toHaveLength(2);
  });

  it('goes checking -> downloading -> applying -> distributing -> idle on a first install, and checking -> idle with nothing new', async () => {
    const { engine, states } = engineFor();
    const install = await engine.update();
    expect(install.result).toBe('ok');
    expect(states.map((s) => s.type)).toEqual(['checking', 'downloading', 'applying', 'distributing', 'idle']);
    expect(states[0]).toEqual({ type: 'checking', trigger: 'manual' });
    expect(states[1]).toMatchObject({ type: 'downloading', trigger: 'manual', component: 'virus-pattern', index: 0, total: 1, method: 'full' });
    expect(states[2]).toMatchObject({ type: 'applying', component: 'virus-pattern', index: 0, total: 1 });
    expect((states[2] as Extract<EngineState, { type: 'applying' }>).bytes).toBeGreaterThan(0);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, 'distribution', 'release.json'), 'utf8')).index.components).toMatchObject([{ id: 'virus-pattern', version: 171 }]);
    expect(engine.state).toEqual({ type: 'idle' });

    states.length = 0;
    const again = await engine.update('schedule');
    expect(again.result).toBe('ok');
    expect(again.components.map((c) => c.reason)).toEqual(['up to date']);
    expect(states).toEqual([{ type: 'checking', trigger: 'schedule' }, { type: 'idle' }]);

    // A new version is an incremental: downloading (incremental) -> applying -> distributing.
    source.addPattern('virus-pattern');
    source.publish();
    states.length = 0;
    const incremental = await engine.update();
    expect(incremental.components.map((c) => c.method)).toEqual(['incremental']);
    // (applying is reported twice here, rebuilding and then storing: applying -> applying is legal)
    const collapsed = states.map((s) => s.type).filter((t, i, all) => t !== all[i - 1]);
    expect(collapsed).toEqual(['checking', 'downloading', 'applying', 'distributing', 'idle']);
    expect(states[1]).toMatchObject({ type: 'downloading', method: 'incremental' });
  });

  it('without agents to hand the result to (a one-off update, an agent) goes applying -> idle', async () => {
    const settings = Settings.open(dataDir);
    settings.set('source', { url: source.url, trustedRoot: source.rootFile });
    engine = new Engine({ dataDir, settings });
    const states: EngineStateType[] = [];
    engine.on('state', (s) => states.push(s.type));
    expect((await engine.update()).result).toBe('ok');
    expect(states).toEqual(['checking', 'downloading', 'applying', 'idle']);
    expect(fs.existsSync(path.join(dataDir, 'distribution'))).toBe(false);
  });

  it('ends in failed with the error when the source is unreachable, and the next update goes failed -> checking', async () => {
    const port = await closedPort();
    const { engine, settings, states } = engineFor(`http://127.0.0.1:${port}/`);

    const failed: RunRecord = await engine.update();
    expect(failed.result).toBe('failed');
    expect(failed.error).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*connection refused`));
    expect(failed.errorCode).toBe('ERR_NETWORK');
    expect(states.map((s) => s.type)).toEqual(['checking', 'failed']);
    expect(engine.state).toMatchObject({ type: 'failed', code: 'ERR_NETWORK', at: failed.finishedAt });
    expect((engine.state as Extract<EngineState, { type: 'failed' }>).error).toBe(failed.error);
    expect(engine.history.last()).toEqual(failed);

    // Still unreachable: failed -> checking -> failed.
    const again = await engine.update();
    expect(again.result).toBe('failed');
    expect(states.map((s) => s.type)).toEqual(['checking', 'failed', 'checking', 'failed']);

    // The source is fixed in the settings: the next update recovers from failed.
    settings.set('source', { url: source.url, trustedRoot: source.rootFile });
    const fixed = await engine.update();
    expect(fixed.result).toBe('ok');
    expect(states.map((s) => s.type)).toEqual([
      'checking', 'failed', 'checking', 'failed',
      'checking', 'downloading', 'applying', 'distributing', 'idle',
    ]);
    expect(engine.store.list().map((c) => c.id)).toEqual(['virus-pattern']);
  });

  it('reports a run it cannot record in history.jsonl (a directory there), logs why, and goes on updating', async () => {
    fs.mkdirSync(path.join(dataDir, 'history.jsonl'));
    const settings = Settings.open(dataDir);
    settings.set('source', { url: source.url, trustedRoot: source.rootFile });
    const logged: string[] = [];
    engine = new Engine({ dataDir, settings, log: (line) => logged.push(line) });
    const runs: RunRecord[] = [];
    engine.on('run', (run) => runs.push(run));

    const first = await engine.update();
    expect(first.result).toBe('ok');
    expect(first.components.map((c) => c.method)).toEqual(['full']);
    expect(runs).toEqual([first]);
    expect(engine.state).toEqual({ type: 'idle' });
    expect(engine.status().lastRun).toBe(first);
    expect(logged.filter((line) => line.includes('history.jsonl'))).toEqual([
      expect.stringMatching(/^cannot record the run in .*history\.jsonl: it is a directory, not a file \(EISDIR\)$/),
    ]);

    source.addPattern('virus-pattern');
    source.publish();
    const second = await engine.update('schedule');
    expect(second.components.map((c) => c.method)).toEqual(['incremental']);
    expect(runs).toEqual([first, second]);
    expect(engine.store.list().map((c) => c.version)).toEqual([source.series.get('virus-pattern')!.version]);
  });

  it('fails with a clear message when no source is configured', async () => {
    engine = new Engine({ dataDir, settings: Settings.open(dataDir) });
    const states: EngineStateType[] = [];
    engine.on('state', (s) => states.push(s.type));
    const record = await engine.update();
    expect(record.result).toBe('failed');
    expect(record.error).toMatch(/no update source is configured/);
    expect(record.errorCode).toBe('ERR_USAGE');
    expect(states).toEqual(['checking', 'failed']);
    expect(timestampRequests()).toBe(0);
  });
});
