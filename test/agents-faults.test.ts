// Agents when things go wrong, with real processes: killed mid-update, their server restarted, wrong
// and rotated enrollment tokens, one agent's credential used against another's record, and agent
// credentials tried on the console.
import { getEventListeners } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../src-main/agent/agent.js';
import { followBroker } from '../src-main/agent/broker.js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab, lastLine } from './helpers/agents-lab.js';
import { closedPort, ensureBuilt, runCli, until } from './helpers/cli.js';

let lab: AgentsLab;

beforeAll(() => ensureBuilt());
afterEach(async () => {
  await lab?.stop();
});

/** A free loopback port (so a restarted server comes back at the same address). */
async function freePort(): Promise<number> {
  return closedPort();
}

async function post(url: string, body: unknown, credential?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

function credentialOf(dir: string): string {
  const enrollment = JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8')) as { credential: string };
  return enrollment.credential;
}

/** A lab whose one agent reaches its server through trickleProxy, once the start-up run's reports (as it began, and as it ended) are through. */
async function agentBehindProxy(name: string) {
  lab = await new AgentsLab().start({ versions: 2 });
  await lab.startServer();
  const proxy = await trickleProxy(lab.agentsUrl);
  try {
    const agent = await lab.startAgent(name, [], { server: proxy.url });
    const dir = lab.agentDir(name);
    await lab.waitForVersion(dir, lab.latest);
    await until(() => proxy.reportsInFlight === 0 && proxy.reports.at(-1) === 'idle', 10_000, 'the start-up reports');
    return { proxy, agent, dir };
  } catch (error) {
    await proxy.close();
    throw error;
  }
}

describe('agents and faults', () => {
  it('an agent killed mid-download keeps its version and finishes on restart', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2, bytes: 400_000 });
    await lab.startServer();
    // A slow road to the server: file downloads trickle, so the kill lands mid-download.
    const slow = await trickleProxy(lab.agentsUrl);
    try {
      const agent = await lab.startAgent('victim', [], { server: slow.url });
      const dir = lab.agentDir('victim');
      const before = await lab.waitForVersion(dir, lab.latest);
      const latest = lab.publish(3); // a jump: the agent needs a server-made file
      slow.trickle = true;
      expect((await lab.serverUpdate()).result).toBe('ok');
      const downloads = path.join(dir, 'tmp', 'downloads');
      const partial = () => fs.readdirSync(downloads).filter((n) => n.endsWith('.part')).some((n) => (fs.statSync(path.join(downloads, n), { throwIfNoEntry: false })?.size ?? 0) > 0);
      await until(() => slow.fileRequests > 0 && fs.existsSync(downloads) && partial(), 30_000, 'a download in progress');
      process.kill(agent.pid, 'SIGKILL');
      await until(() => !agent.running, 5000, 'the agent to die');
      expect(lab.active(dir)).toEqual(before);

      slow.trickle = false;
      await lab.startAgent('victim', [], { server: slow.url });
      const after = await lab.waitForVersion(dir, latest);
      expect(after.version).toBe(latest);
      // The broken-off download was resumed, not started over.
      expect(slow.ranges.some((r) => /^bytes=[1-9]\d*-$/.test(r))).toBe(true);
    } finally {
      await slow.close();
    }
  });

  it('reports reach the server in the order the agent made them: a slow one sent as a run began cannot outlast the run', { timeout: 120_000 }, async () => {
    const { proxy, dir } = await agentBehindProxy('ordered');
    try {
      // The report that says the next run began is held; the run ends long before it arrives.
      proxy.holdUpdatingReportsMs = 1500;
      const before = proxy.reports.length;
      const latest = await lab.release();
      await lab.waitForVersion(dir, latest);
      await until(() => proxy.reportsInFlight === 0 && proxy.reports.length >= before + 2, 20_000, 'the run\'s reports');
      expect(proxy.reports.slice(before)).toEqual(['updating', 'idle']);
      const listed = await lab.agents();
      expect(listed.agents.find((a) => a.name === 'ordered')).toMatchObject({ state: 'current', components: [{ id: 'virus-pattern', version: latest }] });
    } finally {
      await proxy.close();
    }
  });

  it('a report the server could not take (503 twice) is sent again within seconds, not at the next poll a minute away', { timeout: 120_000 }, async () => {
    const { proxy, dir, agent } = await agentBehindProxy('retried');
    try {
      // The run's last report, and the first retry of it, are refused: the server last heard "updating".
      proxy.refuseIdleReports = 2;
      const before = proxy.reports.length;
      const latest = await lab.release();
      await lab.waitForVersion(dir, latest);
      await until(() => proxy.refused.length === 2, 20_000, 'the refused reports');
      // Sent again with back-off (up to 2 s, then up to 4 s), long before the 60 s poll.
      const listed = await until(async () => {
        const { agents } = await lab.agents();
        const row = agents.find((a) => a.name === 'retried');
        return row?.state === 'current' ? row : undefined;
      }, 15_000, 'the report sent again');
      expect(listed).toMatchObject({ components: [{ id: 'virus-pattern', version: latest }] });
      // What got through: the run's "updating" (a second run, when the release was announced twice, says so too), then "idle".
      expect(proxy.reports.slice(before)[0]).toBe('updating');
      expect(proxy.reports.at(-1)).toBe('idle');
      expect(agent.stdout).toMatch(/the server refused the report \(HTTP 503\): "busy"/);
    } finally {
      await proxy.close();
    }
  });

  it('after a server restart, agents reconnect with back-off and catch up', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    const port = await freePort();
    const server = await lab.startServer([], `127.0.0.1:${port}`);
    const agents = await Promise.all(['r1', 'r2'].map((name) => lab.startAgent(name)));
    await Promise.all(['r1', 'r2'].map((name) => lab.waitForVersion(lab.agentDir(name), lab.latest)));

    await server.stop('SIGTERM');
    // While the server is down the agents keep trying, spread out and backing off.
    await until(() => agents.every((a) => (a.stdout.match(/reconnecting in/g) ?? []).length >= 2), 30_000, 'agents retrying');
    for (const agent of agents) {
      const waits = [...agent.stdout.matchAll(/reconnecting in ([\d.]+) s/g)].map((m) => Number(m[1]));
      expect(waits.every((w) => w >= 0 && w <= 60)).toBe(true);
    }
    const latest = lab.publish();
    await lab.startServer([], `127.0.0.1:${port}`); // its start-up update installs the new release
    for (const [i, name] of ['r1', 'r2'].entries()) {
      await lab.waitForVersion(lab.agentDir(name), latest, 90_000);
      expect(agents[i]!.stdout).toMatch(/reconnected to the server/);
    }
  });

  it('wrong and rotated enrollment tokens are refused; enrolled agents keep working', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    const server = await lab.startServer();
    const oldToken = await lab.token();
    await lab.startAgent('early', [], { token: oldToken });

    // The same root hash, a token one character off.
    const wrongToken = oldToken.replace(/^(\S{5})(\S)/, (_m, head: string, c: string) => `${head}${c === 'a' ? 'b' : 'a'}`);
    const wrong = await runCli(['agent', '--server', lab.agentsUrl, '--token', wrongToken, '--data', lab.agentDir('wrong'), '--name', 'wrong'], 60_000);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/refused the enrollment token: it is wrong or was rotated/);
    await server.waitFor(/agents: refused an enrollment from 127\.0\.0\.1 \(wrong or rotated enrollment token, or a malformed request\): it gave the name "wrong"/);
    expect(fs.existsSync(path.join(lab.agentDir('wrong'), 'agent.json'))).toBe(false);
    // Nothing was pinned either: the root is kept only with a credential.
    expect(fs.existsSync(path.join(lab.agentDir('wrong'), 'trusted-root.json'))).toBe(false);

    const rotated = await runCli(['agents', 'token', '--data', lab.serverDir, '--rotate']);
    expect(rotated.code).toBe(0);
    const newToken = lastLine(rotated.stdout);
    expect(newToken).not.toBe(oldToken);
    expect(newToken.split(':').slice(1)).toEqual(oldToken.split(':').slice(1)); // the same root
    const late = await runCli(['agent', '--server', lab.agentsUrl, '--token', oldToken, '--data', lab.agentDir('late'), '--name', 'late'], 60_000);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/token/);

    // The agent enrolled before the rotation still updates; a new one enrolls with the new token.
    const latest = await lab.release();
    await lab.waitForVersion(lab.agentDir('early'), latest, 30_000);
    await lab.startAgent('fresh', [], { token: newToken });
    await lab.waitForVersion(lab.agentDir('fresh'), latest, 30_000);
    const names = (await lab.agents()).agents.map((a) => a.name).sort();
    expect(names).toEqual(['early', 'fresh']);
  });

  it("one agent's credential changes only its own record, and opens no console endpoint", { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    const server = await lab.startServer(['--console']);
    const [, consoleUrl] = await server.waitFor(/^Console: (http:\/\/\S+)$/m);
    await lab.startAgent('alpha');
    await lab.startAgent('beta');
    await until(async () => (await lab.agents()).counts.current === 2, 30_000, 'both agents reported');
    const alpha = credentialOf(lab.agentDir('alpha'));
    const betaId = JSON.parse(fs.readFileSync(path.join(lab.agentDir('beta'), 'agent.json'), 'utf8')).id as string;

    const report = { name: 'beta', hostname: 'impostor', addresses: [], components: [{ id: 'virus-pattern', version: 1 }], phase: 'idle', pollSeconds: 60 };
    // The record written is the credential's own: alpha cannot reach beta's row, whatever it claims.
    expect((await post(new URL('agents/v1/report', lab.agentsUrl).href, { ...report, id: betaId }, alpha)).status).toBe(400);
    expect((await post(new URL('agents/v1/report', lab.agentsUrl).href, report, alpha)).status).toBe(200);
    const agents = (await lab.agents()).agents as unknown as { id: string; name: string; hostname: string; components: { version: number }[] }[];
    const beta = agents.find((a) => a.id === betaId)!;
    expect(beta.hostname).not.toBe('impostor');
    expect(beta.components[0]!.version).toBe(lab.latest);
    expect(agents.filter((a) => a.hostname === 'impostor')).toHaveLength(1);

    // A forged or missing credential is refused.
    expect((await post(new URL('agents/v1/report', lab.agentsUrl).href, report, `${betaId}.forged`)).status).toBe(401);
    expect((await post(new URL('agents/v1/report', lab.agentsUrl).href, report)).status).toBe(401);

    // The console does not know agent credentials: every endpoint answers 401.
    const origin = new URL(consoleUrl!).origin;
    for (const [method, pathname] of [['POST', '/api/call/snapshot'], ['POST', '/api/call/agents'], ['POST', '/api/call/enrollmentToken'], ['GET', '/api/events'], ['GET', '/']] as const) {
      const response = await fetch(origin + pathname, {
        method,
        headers: { authorization: `Bearer ${alpha}`, 'content-type': 'application/json', 'x-bulwark-console': '1' },
        ...(method === 'POST' ? { body: pathname.endsWith('enrollmentToken') ? '{"rotate":false}' : 'null' } : {}),
      });
      expect(response.status, `${method} ${pathname}`).toBe(401);
      await response.body?.cancel();
    }
  });
});

/**
 * A proxy to the server in this process that, while `trickle` is set, sends file bodies a few bytes at
 * a time, and records the Range headers agents send. Reports go through whole: `holdUpdatingReportsMs`
 * holds the ones that say a run began for that long, and `reports` lists the phases in the order
 * they reached the server.
 */
async function trickleProxy(upstream: string) {
  const state = { trickle: false, fileRequests: 0, ranges: [] as string[], holdUpdatingReportsMs: 0, refuseIdleReports: 0, refused: [] as number[], reports: [] as string[], reportsInFlight: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/agents/v1/report') {
      state.reportsInFlight++;
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const { phase } = JSON.parse(body.toString('utf8')) as { phase: string };
        // A server that cannot take the report now (restarting, overloaded): 503, never forwarded.
        if (phase === 'idle' && state.refuseIdleReports > 0) {
          state.refuseIdleReports--;
          state.refused.push(Date.now());
          state.reportsInFlight--;
          res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'busy' }));
          return;
        }
        setTimeout(() => {
          const forward = http.request(new URL(req.url!, upstream), { method: 'POST', headers: { ...req.headers, host: new URL(upstream).host } }, (answer) => {
            state.reports.push(phase);
            state.reportsInFlight--;
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          });
          forward.on('error', () => res.destroy());
          forward.end(body);
        }, phase === 'updating' ? state.holdUpdatingReportsMs : 0);
      });
      return;
    }
    const files = /^\/(targets|made)\//.test(req.url ?? '');
    if (files) {
      if (state.trickle) state.fileRequests++;
      if (req.headers.range) state.ranges.push(req.headers.range);
    }
    const forward = http.request(new URL(req.url ?? '/', upstream), { method: req.method, headers: { ...req.headers, host: new URL(upstream).host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (!files || !state.trickle) {
        answer.pipe(res);
        return;
      }
      answer.on('data', (chunk: Buffer) => {
        answer.pause();
        let offset = 0;
        const drip = () => {
          if (res.destroyed) return;
          res.write(chunk.subarray(offset, offset + 512));
          offset += 512;
          if (offset < chunk.length) setTimeout(drip, 20);
          else answer.resume();
        };
        drip();
      });
      answer.on('end', () => res.end());
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

describe('an agent reconnecting over and over', () => {
  it('adds no abort listener per reconnection: 300 reconnects (streams ended cleanly or with 503, no wait between them) and no MaxListenersExceededWarning', { timeout: 60_000 }, async () => {
    let streams = 0;
    const server = http.createServer((req, res) => {
      if (req.url!.startsWith('/agents/v1/events')) {
        streams += 1;
        // Half end cleanly, half fail: both ways go through the back-off (and its sleep).
        if (streams % 2) res.writeHead(200, { 'content-type': 'text/event-stream' }).end();
        else res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"busy"}');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"the server has no release yet"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-reconnects-'));
    fs.writeFileSync(path.join(dataDir, 'agent.json'), JSON.stringify({ server: url, id: 'r1', credential: 'r1.secret', name: 'r1', enrolledAt: new Date().toISOString() }));
    // Only its presence is checked: with no release on the server, no run reads it.
    fs.writeFileSync(path.join(dataDir, 'trusted-root.json'), '{"signed":{"_type":"root"}}');
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    const lines: string[] = [];
    // random() = 0: every back-off wait is 0 ms, so hundreds of reconnections take a moment.
    const agent = new Agent({ server: url, dataDir, random: () => 0, log: (line) => lines.push(line) });
    try {
      await agent.start();
      await until(() => streams >= 300, 30_000, '300 reconnections');
      const signal = (agent as unknown as { abort: AbortController }).abort.signal;
      expect(getEventListeners(signal, 'abort').length, 'abort listeners left on the agent\'s signal').toBeLessThanOrEqual(2);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
      expect(lines.filter((l) => /notification stream: the server ended it; reconnecting in 0\.0 s/.test(l)).length).toBeGreaterThan(100);
    } finally {
      process.off('warning', onWarning);
      await agent.stop();
      server.closeAllConnections();
      server.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('an agent whose MQTT broker drops every connection', () => {
  it('reconnects through the same capped back-off as the notification stream (waits that grow, said in the log) and stops when the agent does', { timeout: 30_000 }, async () => {
    // A broker that accepts and closes at once: the worst a restarting or overloaded broker does.
    const connections: number[] = [];
    const broker = net.createServer((socket) => {
      connections.push(Date.now());
      socket.destroy();
    });
    await new Promise<void>((resolve) => broker.listen(0, '127.0.0.1', resolve));
    const port = (broker.address() as AddressInfo).port;
    const lines: string[] = [];
    const abort = new AbortController();
    // random() = 1: each wait is its step's cap (1 s, 2 s, 4 s …), so the growth is exact.
    const following = followBroker(
      { url: `mqtt://127.0.0.1:${port}`, topic: 'bulwark/test' },
      { clientId: 'backoff-test', signal: abort.signal, random: () => 1, log: (line) => lines.push(line) },
      () => undefined,
    );
    try {
      await until(() => connections.length >= 3, 15_000, 'three connections to the broker');
      const waits = lines.map((line) => /connection closed; reconnecting in ([\d.]+) s/.exec(line)?.[1]).filter(Boolean);
      expect(waits.slice(0, 2)).toEqual(['1.0', '2.0']);
      // The gaps between attempts follow the waits (not MQTT.js's fixed period).
      expect(connections[1]! - connections[0]!).toBeGreaterThanOrEqual(900);
      expect(connections[2]! - connections[1]!).toBeGreaterThanOrEqual(1900);
    } finally {
      abort.abort();
      await following;
    }
    const after = connections.length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(connections.length, 'no reconnection after the agent stopped').toBe(after);
    broker.close();
  });
});
