// No network event may kill the process. undici 7's HTTP/1 client crashes with an uncatchable
// assertion when a peer closes a connection whose response body is paused under backpressure
// (nodejs/undici#5360); Bulwark's downloads never pause the parser (src-main/engine/http.ts). Here
// many updates run at once, as separate processes and inside one server, against a source that
// trickles, breaks off mid-body, closes right after the body, or answers normally — and every
// process must end with a result (0 or 1), never a crash.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestUpdate } from '../src-main/engine/control.js';
import { staticHandler } from '../src-main/demo/static-server.js';
import { CliProcess, ensureBuilt, runCli } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

let source: TestSource;
let hostile: http.Server;
let url: string;
let dir: string;
let requests = 0;

/** Each request gets the next behaviour in turn, so every kind is met many times. */
const BEHAVIOURS = ['normal', 'trickle', 'break-off', 'close-after-body', 'slow-start'] as const;

beforeAll(async () => {
  ensureBuilt();
  dir = tempDir('bulwark-soak-');
  source = new TestSource(path.join(dir, 'source'));
  source.addPattern('virus-pattern', { bytes: 600_000 });
  source.addPattern('spyware-pattern', { bytes: 300_000 });
  source.writeVersion('scan-engine', 9, Buffer.alloc(400_000, 3));
  source.publish();
  const serveFile = staticHandler(source.out);
  hostile = http.createServer((req, res) => {
    const behaviour = BEHAVIOURS[requests++ % BEHAVIOURS.length]!;
    if (behaviour === 'normal') return serveFile(req, res);
    // Capture the static answer, then deliver it badly.
    const chunks: Buffer[] = [];
    let status = 200;
    let headers: http.OutgoingHttpHeaders = {};
    const fake = Object.assign(new Writable({ write: (c: Buffer, _e: string, cb: () => void) => (chunks.push(Buffer.from(c)), cb()) }), {
      writeHead(code: number, h?: http.OutgoingHttpHeaders) {
        status = code;
        headers = h ?? {};
        return fake;
      },
    });
    fake.on('finish', () => {
      const body = Buffer.concat(chunks);
      if (behaviour === 'close-after-body') {
        res.writeHead(status, { ...headers, connection: 'close' });
        res.end(body, () => req.socket.end());
      } else if (behaviour === 'break-off') {
        res.writeHead(status, headers);
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => req.socket.destroy());
      } else if (behaviour === 'slow-start') {
        setTimeout(() => res.writeHead(status, headers).end(body), 300);
      } else {
        res.writeHead(status, headers);
        let offset = 0;
        const drip = () => {
          if (res.destroyed) return;
          res.write(body.subarray(offset, offset + 16 * 1024));
          offset += 16 * 1024;
          if (offset < body.length) setTimeout(drip, 5);
          else res.end();
        };
        drip();
      }
    });
    serveFile(req, fake as unknown as http.ServerResponse);
  });
  hostile.keepAliveTimeout = 100;
  await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  hostile.closeAllConnections();
  await new Promise((resolve) => hostile.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('network faults never kill the process', () => {
  it('36 one-off updates, 6 at a time, against a trickling, breaking and closing source: every one ends with 0 or 1', { timeout: 240_000 }, async () => {
    const results: { code: number | null; signal: string | null; stderr: string }[] = [];
    for (let round = 0; round < 6; round++) {
      results.push(
        ...(await Promise.all(
          Array.from({ length: 6 }, (_, i) => runCli(['update', '--data', path.join(dir, `one-off-${round}-${i}`), '--source', url, '--trusted-root', source.rootFile, '--json'], 120_000)),
        )),
      );
    }
    for (const result of results) {
      expect(result.signal).toBeNull();
      expect([0, 1]).toContain(result.code);
      expect(result.stderr).not.toMatch(/AssertionError|Uncaught|unhandled/i);
    }
    // The faults were real: some runs failed on them, and the source was asked many times.
    expect(results.some((r) => r.code === 1)).toBe(true);
    expect(requests).toBeGreaterThan(36 * 3);
  });

  it('a server takes 30 updates asked for at once and one after another against the same source, and is still there', { timeout: 240_000 }, async () => {
    const data = path.join(dir, 'server');
    const server = new CliProcess(['serve', '--data', data, '--source', url, '--trusted-root', source.rootFile, '--agents-listen', 'off', '--schedule', 'every 1 minute']);
    try {
      await server.waitFor(/next update at /, 60_000);
      for (let i = 0; i < 10; i++) {
        // Three at once join one run; each round a new one.
        const records = await Promise.all([requestUpdate(data), requestUpdate(data), requestUpdate(data)]);
        for (const record of records) expect(record?.result).toMatch(/^(ok|failed)$/);
        expect(server.running).toBe(true);
      }
      expect(server.stderr).not.toMatch(/AssertionError|Uncaught|unhandled/i);
    } finally {
      const { code, signal } = await server.stop('SIGTERM', 30_000);
      expect(signal).toBeNull();
      expect(code).toBe(0);
    }
  });
});
