// The fetcher against real HTTP servers on loopback: downloads stay in the data directory, an endless
// body costs no more than the length allowed, broken-off downloads of immutable files resume with a
// Range request (and start afresh where the server ignores Range), and cool-downs read from disk are
// capped.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetworkError } from '../src-main/engine/errors.js';
import { HttpFetcher, MAX_COOLDOWN_MS, readCooldowns, sweepDownloads } from '../src-main/engine/fetcher.js';
import { tempDir } from './helpers/fixtures.js';

const BODY = crypto.randomBytes(300_000);

let server: http.Server;
let base: string;
let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
let dir: string;
const closed: string[] = [];

beforeEach(async () => {
  dir = tempDir('bulwark-fetcher-');
  closed.length = 0;
  server = http.createServer((req, res) => {
    req.socket.once('close', () => closed.push(req.url ?? ''));
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function fetcher(extra: Partial<ConstructorParameters<typeof HttpFetcher>[0]> = {}): HttpFetcher {
  return new HttpFetcher({ timeoutMs: 5000, tempDir: path.join(dir, 'downloads'), resumable: (url) => url.includes('/targets/'), ...extra });
}

describe('HttpFetcher', () => {
  it('downloads into its own temporary folder and removes the file after the handler', async () => {
    handler = (_req, res) => res.end(BODY);
    let seen = '';
    const hash = await fetcher().downloadFile(`${base}/metadata/x.json`, BODY.length, async (file) => {
      seen = file;
      return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    });
    expect(path.dirname(seen)).toBe(path.join(dir, 'downloads'));
    expect(hash).toBe(crypto.createHash('sha256').update(BODY).digest('hex'));
    expect(fs.readdirSync(path.join(dir, 'downloads'))).toEqual([]);
  });

  it('stops an endless body at the length allowed and closes the connection', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 1);
      const pump = () => {
        while (res.write(chunk));
        res.once('drain', pump);
      };
      pump();
    };
    const f = fetcher();
    await expect(f.downloadBytes(`${base}/metadata/timestamp.json`, 100_000)).rejects.toBeInstanceOf(DownloadLengthMismatchError);
    expect(f.bytesReceived).toBeLessThan(100_000 + 64 * 1024 + 1024);
    await expect.poll(() => closed).toContain('/metadata/timestamp.json');
    expect(fs.readdirSync(path.join(dir, 'downloads'))).toEqual([]);
  });

  it('resumes a broken-off download of an immutable file with a Range request', async () => {
    const ranges: (string | undefined)[] = [];
    handler = (req, res) => {
      ranges.push(req.headers.range);
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      if (from === 0) {
        // Half the file, then the connection drops.
        res.writeHead(200, { 'content-length': BODY.length });
        res.write(BODY.subarray(0, 100_000), () => setTimeout(() => res.destroy(), 50));
        return;
      }
      res.writeHead(206, { 'content-range': `bytes ${from}-${BODY.length - 1}/${BODY.length}`, 'content-length': BODY.length - from });
      res.end(BODY.subarray(from));
    };
    const url = `${base}/targets/virus-pattern/abc.175.zst`;
    const f = fetcher();
    await expect(f.downloadBytes(url, BODY.length)).rejects.toBeInstanceOf(NetworkError);
    // The partial file is kept for the next attempt...
    const partial = fs.readdirSync(path.join(dir, 'downloads')).filter((n) => n.endsWith('.part'));
    expect(partial).toHaveLength(1);
    expect(fs.statSync(path.join(dir, 'downloads', partial[0]!)).size).toBe(100_000);
    // ...which asks only for the rest, and the file comes out whole.
    const bytesBefore = f.bytesReceived;
    const whole = await f.downloadBytes(url, BODY.length);
    expect(whole.equals(BODY)).toBe(true);
    expect(ranges).toEqual([undefined, 'bytes=100000-']);
    expect(f.bytesReceived - bytesBefore).toBeLessThan(BODY.length - 100_000 + 1024);
    expect(fs.readdirSync(path.join(dir, 'downloads'))).toEqual([]);
  });

  it('starts afresh where the server ignores Range, and never resumes a mutable file', async () => {
    let calls = 0;
    handler = (_req, res) => {
      calls++;
      if (calls === 1) {
        res.writeHead(200, { 'content-length': BODY.length });
        res.write(BODY.subarray(0, 50_000), () => setTimeout(() => res.destroy(), 50));
        return;
      }
      res.end(BODY); // 200 whatever the Range header says
    };
    const url = `${base}/targets/virus-pattern/abc.175.zst`;
    await expect(fetcher().downloadBytes(url, BODY.length)).rejects.toBeInstanceOf(NetworkError);
    expect((await fetcher().downloadBytes(url, BODY.length)).equals(BODY)).toBe(true);

    calls = 0;
    await expect(fetcher().downloadBytes(`${base}/metadata/timestamp.json`, BODY.length)).rejects.toBeInstanceOf(NetworkError);
    expect(fs.readdirSync(path.join(dir, 'downloads'))).toEqual([]);
  });

  it('sweeps temporary files and stale partial downloads', () => {
    const downloads = path.join(dir, 'downloads');
    fs.mkdirSync(downloads, { recursive: true });
    fs.writeFileSync(path.join(downloads, '.dead.tmp'), 'x');
    fs.writeFileSync(path.join(downloads, 'fresh.part'), 'x');
    fs.writeFileSync(path.join(downloads, 'stale.part'), 'x');
    const old = new Date(Date.now() - 2 * 86_400_000);
    fs.utimesSync(path.join(downloads, 'stale.part'), old, old);
    sweepDownloads(downloads);
    expect(fs.readdirSync(downloads)).toEqual(['fresh.part']);
  });

  it('caps a cool-down read from disk at a day, and ignores junk', () => {
    const file = path.join(dir, 'cooldown.json');
    const now = Date.UTC(2026, 11, 2);
    fs.writeFileSync(file, JSON.stringify({ 'http://a': Date.UTC(2286, 0, 1), 'http://b': now + 60_000, 'http://c': 'soon', 'http://d': now - 1 }));
    expect(readCooldowns(file, now)).toEqual({ 'http://a': now + MAX_COOLDOWN_MS, 'http://b': now + 60_000 });
    fs.writeFileSync(file, '[1,2');
    expect(readCooldowns(file, now)).toEqual({});
  });
});
