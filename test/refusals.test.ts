// Failed enrollments and refused credentials, counted per source address (distribution/refusals.ts):
// limited past 20 a minute, and logged in groups. The clock is the test's, the logging real.
import { afterEach, describe, expect, it } from 'vitest';
import { Refusals, sourceOf } from '../src-main/distribution/refusals.js';

let refusals: Refusals | undefined;
afterEach(() => refusals?.stop());

describe('refusals', () => {
  it('logs the first refusal from an address at once and the rest as one line when the minute ends; past 20 it answers "wait" unchecked', () => {
    let now = 1_000_000;
    const lines: string[] = [];
    refusals = new Refusals((line) => lines.push(line), { perAddress: 20, windowMs: 60_000 }, () => now);
    const attempt = (address: string) => {
      const wait = refusals!.retryAfter('enrollment', address);
      if (wait === undefined) refusals!.refused('enrollment', address, 'it gave the name "x"');
      return wait;
    };
    const waits = Array.from({ length: 37 }, () => attempt('10.0.0.5'));
    expect(waits.slice(0, 20)).toEqual(Array(20).fill(undefined));
    expect(waits.slice(20)).toEqual(Array(17).fill(60));
    attempt('10.0.0.6');
    refusals.refused('credential', '10.0.0.5', '');
    expect(lines).toEqual([
      'agents: refused an enrollment from 10.0.0.5 (wrong or rotated enrollment token, or a malformed request): it gave the name "x"; more from there this minute are logged together',
      'agents: refused an enrollment from 10.0.0.6 (wrong or rotated enrollment token, or a malformed request): it gave the name "x"; more from there this minute are logged together',
      'agents: refused a request with an agent credential from 10.0.0.5 (unknown agent or wrong credential); more from there this minute are logged together',
    ]);
    now += 60_000;
    refusals.flush();
    expect(lines.slice(3)).toEqual([
      'agents: 37 enrollments refused from 10.0.0.5 in the last minute (wrong or rotated enrollment token, or a malformed request; 17 of them answered 429 unchecked, over the limit of 20 a minute)',
    ]);
    // A new minute: the address may try again.
    expect(attempt('10.0.0.5')).toBeUndefined();
  });

  it('counts an IPv6 host by its /64, and keeps the count of addresses bounded', () => {
    expect(sourceOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:db8:1:2::99')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:0db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceOf('::1')).toBe('0:0:0:0::/64');
    expect(sourceOf('192.0.2.7')).toBe('192.0.2.7');
    const lines: string[] = [];
    refusals = new Refusals((line) => lines.push(line));
    for (let i = 0; i < 12_000; i++) refusals.refused('credential', `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, '');
    // The first 10,000 addresses each logged once; the rest counted together.
    expect(lines).toHaveLength(10_001);
    expect(lines.at(-1)).toMatch(/from \(other addresses\)/);
  });
});
