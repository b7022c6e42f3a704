// The agent's record of its server's orders (agent/orders.ts): a damaged file is said, a missing one is not.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readOrders } from '../src-main/agent/orders.js';
import { tempDir } from './helpers/fixtures.js';

describe('readOrders', () => {
  it('says when orders.json is there but damaged, and knows no order; a missing file is no news', () => {
    const dir = tempDir('bulwark-orders-');
    const said: string[] = [];
    expect(readOrders(dir, (m) => said.push(m))).toEqual({ pins: {}, current: [] });
    expect(said).toEqual([]);
    fs.writeFileSync(path.join(dir, 'orders.json'), '{"holdSince": "2026-');
    expect(readOrders(dir, (m) => said.push(m))).toEqual({ pins: {}, current: [] });
    expect(said).toEqual([expect.stringMatching(/orders\.json is damaged \(.*\): the server's hold, if any, is counted again from the next run$/)]);
    fs.writeFileSync(path.join(dir, 'orders.json'), JSON.stringify({ holdSince: '2026-12-07T00:00:00.000Z', pins: {}, current: [] }));
    expect(readOrders(dir, (m) => said.push(m))).toMatchObject({ holdSince: '2026-12-07T00:00:00.000Z' });
    expect(said).toHaveLength(1);
  });
});
