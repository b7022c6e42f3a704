// Giving memory back after bursts (src-main/engine/memory.ts, AfterBurst in agent-http.ts): a real
// collection on this process's heap, and the burst detector's rule with a real clock.
import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { AfterBurst } from '../src-main/distribution/agent-http.js';
import { collectGarbage } from '../src-main/engine/memory.js';
import { until } from './helpers/cli.js';

const newSpace = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!.space_size;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('collectGarbage', () => {
  it('frees the garbage of a burst, and from V8 12 on gives the grown young generation back', () => {
    // A burst: short-lived objects enough to grow the young generation to its largest.
    const lengths: number[] = [];
    for (let round = 0; round < 40; round++) lengths.push(Array.from({ length: 100_000 }, (_, i) => ({ i, text: `item ${i}` })).length);
    const grown = newSpace();
    const before = v8.getHeapStatistics().used_heap_size;
    collectGarbage();
    expect(v8.getHeapStatistics().used_heap_size).toBeLessThan(before);
    if (Number(process.versions.v8.split('.')[0]) >= 12) {
      expect(grown).toBeGreaterThan(4 * 1024 * 1024);
      expect(newSpace()).toBeLessThan(grown / 2);
    }
  });
});

describe('AfterBurst', () => {
  it('collects once when a burst of requests is followed by a quiet window, and not again without a new burst', async () => {
    let collections = 0;
    const burst = new AfterBurst({ minRequests: 1_000, quietMs: 50, collect: () => collections++ });
    try {
      for (let i = 0; i < 1_000; i++) burst.request();
      await until(() => collections === 1, 5_000, 'the collection after the burst');
      await sleep(300);
      expect(collections).toBe(1);
      for (let i = 0; i < 1_000; i++) burst.request();
      await until(() => collections === 2, 5_000, 'the collection after the second burst');
    } finally {
      burst.stop();
    }
  });

  it('takes a flood of large answers (few requests, many bytes read) for a burst too, once the bytes stop', async () => {
    let collections = 0;
    let bytes = 0;
    const burst = new AfterBurst({ minRequests: 1_000, quietMs: 50, collect: () => collections++, fileBytes: () => bytes, minFileBytes: 1_000_000 });
    try {
      for (let i = 0; i < 10; i++) burst.request();
      bytes = 999_999;
      await sleep(300);
      expect(collections).toBe(0);
      // Still reading (no new request): not over yet.
      const reading = setInterval(() => (bytes += 100_000), 10);
      await sleep(300);
      expect(collections).toBe(0);
      clearInterval(reading);
      await until(() => collections === 1, 5_000, 'the collection once the reading stops');
      await sleep(300);
      expect(collections).toBe(1);
    } finally {
      burst.stop();
    }
  });

  it('leaves fewer requests than a burst alone, and stops checking when stopped', async () => {
    let collections = 0;
    const small = new AfterBurst({ minRequests: 1_000, quietMs: 50, collect: () => collections++ });
    const stopped = new AfterBurst({ minRequests: 1_000, quietMs: 50, collect: () => collections++ });
    try {
      for (let i = 0; i < 999; i++) small.request();
      stopped.stop();
      for (let i = 0; i < 5_000; i++) stopped.request();
      await sleep(400);
      expect(collections).toBe(0);
      // The thousandth makes it a burst.
      small.request();
      await until(() => collections === 1, 5_000, 'the collection once the burst is complete');
    } finally {
      small.stop();
    }
  });
});
