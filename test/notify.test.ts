// Notifications for a headless server: a real `bulwark serve`, a real local HTTP receiver for the
// webhook, and real syslog receivers (a UDP socket and a TCP listener) the test starts, as rsyslog would
// listen. New versions installed and a failed update each arrive at both; a receiver that is down is
// logged and changes nothing.
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess, closedPort, ensureBuilt, killChildren, runCli, until } from './helpers/cli.js';
import { tempDir, TestSource } from './helpers/fixtures.js';

beforeAll(() => ensureBuilt(), 180_000);
afterEach(() => killChildren());

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

interface Received {
  webhook: { event: string; title: string; body: string; at: string; host: string }[];
  udp: string[];
  tcp: string[];
}

async function receivers(): Promise<{ received: Received; webhook: string; udp: string; tcp: string; close(): Promise<void> }> {
  const received: Received = { webhook: [], udp: [], tcp: [] };
  const web = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.method === 'POST' && req.headers['content-type'] === 'application/json') received.webhook.push(JSON.parse(body) as Received['webhook'][number]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  const udp = dgram.createSocket('udp4');
  udp.on('message', (message) => received.udp.push(message.toString('utf8')));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  // RFC 6587 octet counting: "LENGTH SP MESSAGE".
  const tcp = net.createServer((socket) => {
    let data = '';
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    socket.on('end', () => {
      const match = /^(\d+) ([\s\S]*)$/.exec(data);
      if (match && Buffer.byteLength(match[2]!) === Number(match[1])) received.tcp.push(match[2]!);
    });
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  return {
    received,
    webhook: `http://127.0.0.1:${(web.address() as net.AddressInfo).port}/hooks/bulwark`,
    udp: `udp://127.0.0.1:${(udp.address() as net.AddressInfo).port}`,
    tcp: `tcp://127.0.0.1:${(tcp.address() as net.AddressInfo).port}`,
    close: async () => {
      udp.close();
      await Promise.all([new Promise((resolve) => web.close(resolve)), new Promise((resolve) => tcp.close(resolve))]);
    },
  };
}

describe('notifications from a headless server', () => {
  it('go to the webhook and to syslog (UDP, then TCP) after new versions are installed and after a failed update', async () => {
    const work = tempDir('bulwark-notify-');
    dirs.push(work);
    const source = new TestSource(path.join(work, 'source'));
    source.addPattern('virus-pattern', { bytes: 20_000 });
    source.publish();
    await source.start();
    const at = await receivers();
    const data = path.join(work, 'data');
    let serve: CliProcess | undefined;
    try {
      expect((await runCli(['init', '--data', data, '--source', source.url, '--trusted-root', source.rootFile])).code).toBe(0);
      // A wrong value is refused at its field, and changes nothing.
      const refused = await runCli(['settings', '--data', data, 'set', 'notifications.syslog', 'syslog.example:514']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/syslog "syslog\.example:514" must be udp:\/\/HOST:PORT or tcp:\/\/HOST:PORT/);
      for (const [key, value] of [['notifications.webhook', at.webhook], ['notifications.syslog', at.udp]]) {
        const set = await runCli(['settings', '--data', data, 'set', key!, value!]);
        expect(set.code, set.stderr).toBe(0);
      }

      serve = new CliProcess(['serve', '--data', data, '--agents-listen', 'off']);
      await serve.waitFor(/next update at /, 30_000);
      await until(() => at.received.webhook.length >= 1 && at.received.udp.length >= 1, 10_000, 'the installed notification');
      expect(at.received.webhook[0]).toMatchObject({ event: 'components-installed', title: 'Component updated', body: expect.stringMatching(/^Virus Pattern \d+$/) });
      expect(Date.parse(at.received.webhook[0]!.at)).toBeGreaterThan(Date.now() - 60_000);
      // <user.notice>1 TIMESTAMP HOST bulwark PID MSGID - MSG
      expect(at.received.udp[0]).toMatch(/^<13>1 \d{4}-\d\d-\d\dT\S+Z \S+ bulwark \d+ components-installed - Component updated: Virus Pattern \d+$/);

      // The source goes away; an update asked for from the command line (to the running server) fails.
      await source.stop();
      await serve.stop('SIGTERM');
      expect((await runCli(['settings', '--data', data, 'set', 'notifications.syslog', at.tcp])).code).toBe(0);
      serve = new CliProcess(['serve', '--data', data, '--agents-listen', 'off']);
      await serve.waitFor(/next update at /, 30_000);
      await until(() => at.received.webhook.some((n) => n.event === 'update-failed') && at.received.tcp.length >= 1, 15_000, 'the failure notification');
      const failed = at.received.webhook.find((n) => n.event === 'update-failed')!;
      expect(failed.title).toBe('Bulwark update failed');
      expect(failed.body).toMatch(/^Cannot reach http:\/\/127\.0\.0\.1:\d+/);
      // <user.err>
      expect(at.received.tcp[0]).toMatch(/^<11>1 \S+ \S+ bulwark \d+ update-failed - Bulwark update failed: /);

      // A receiver that is down is logged; the server goes on.
      const down = await closedPort();
      await serve.stop('SIGTERM');
      expect((await runCli(['settings', '--data', data, 'set', 'notifications.webhook', `http://127.0.0.1:${down}/`])).code).toBe(0);
      serve = new CliProcess(['serve', '--data', data, '--agents-listen', 'off']);
      await serve.waitFor(/next update at /, 30_000);
      // Update now from the command line (asks the running server): a failure asked for is always told.
      expect((await runCli(['update', '--data', data])).code).toBe(1);
      await serve.waitFor(new RegExp(`cannot notify the webhook http://127\\.0\\.0\\.1:${down}`), 30_000);
      expect(serve.running).toBe(true);
    } finally {
      await serve?.stop('SIGTERM').catch(() => undefined);
      await at.close();
      await source.stop().catch(() => undefined);
    }
  }, 120_000);
});
