// The agents' service on several threads (src-main/distribution/file-thread.ts): file threads share
// the port with the main thread through SO_REUSEPORT where Node has it (22.12+ on Linux; CI runs this
// file on Node 20 and on Node 22). Whichever thread an agent's connection lands on, it hears of a
// release, and from that moment every connection answers the new release's timestamp.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, runCli, until } from './helpers/cli.js';
import { freePort } from './helpers/proxies.js';
import { parseJoinString } from '../src-main/protocol/agent-protocol.js';
import { AGENT_LISTENERS_PER_THREAD } from '../src-main/distribution/agent-http.js';
import { frontAddon, TURN_OFF_FRONT } from '../src-main/distribution/agent-front.js';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const portSharing = process.platform === 'linux' && (major > 22 || (major === 22 && minor >= 12));
/** A file thread listens once per address on its native front (agent-front.ts), else with the fast path's servers. */
const front = !(frontAddon() instanceof Error);
const socketsPerThread = front ? 1 : AGENT_LISTENERS_PER_THREAD;

let lab: AgentsLab;
beforeAll(() => ensureBuilt());
afterEach(async () => {
  await lab?.stop();
});

/** One request on its own connection (so the kernel may give it to any thread). */
function get(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function enroll(url: string, token: string, name: string): Promise<string> {
  const response = await fetch(new URL('agents/v1/enroll', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, name, hostname: name }) });
  expect(response.status).toBe(200);
  return ((await response.json()) as { credential: string }).credential;
}

/** A notification stream on its own connection; `releases` fills with the release numbers it is told of. */
function openStream(url: string, credential: string): Promise<{ releases: number[]; close: () => void }> {
  return new Promise((resolve, reject) => {
    const releases: number[] = [];
    const req = http.get(new URL('agents/v1/events', url), { agent: false, headers: { authorization: `Bearer ${credential}`, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream answered ${res.statusCode}`));
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (.*)$/m.exec(message)?.[1];
          if (message.startsWith('event: hello')) resolve({ releases, close: () => req.destroy() });
          if (message.startsWith('event: release') && data) releases.push((JSON.parse(data) as { release: number }).release);
        }
      });
    });
    req.on('error', reject);
  });
}

/** Sockets listening on a TCP port, from the kernel's table (one per thread that takes connections). */
function listeningSockets(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(table)) continue;
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (local?.endsWith(`:${hexPort}`) && state === '0A') count++;
    }
  }
  return count;
}

/** The snapshot version a timestamp answer names. */
const snapshotOf = (timestamp: string) => (JSON.parse(timestamp) as { signed: { meta: Record<string, { version: number }> } }).signed.meta['snapshot.json']!.version;

describe('the agents service on several threads', () => {
  it('streams on every thread hear of a release, and every connection then answers its timestamp', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    // Started twice: the second time the threads begin with a release (in memory from their first moment).
    await (await lab.startServer()).stop('SIGTERM');
    const server = await lab.startServer(['--agent-threads', '2']);
    if (portSharing) {
      expect(server.stdout).toMatch(/serving agents at \S+ \(2 file threads\)/);
      // The threads take the connections, each on its native front where it is built; the main thread does not listen.
      expect(listeningSockets(Number(new URL(lab.agentsUrl).port))).toBe(2 * socketsPerThread);
      if (front) expect(server.stdout).not.toMatch(/without the native front/);
    } else {
      expect(server.stdout).toMatch(/file threads need Node 22\.12 or later on Linux .*; the main thread serves alone/);
      expect(server.stdout).toMatch(/serving agents at \S+ \(main thread alone\)/);
    }
    const url = lab.agentsUrl;
    const before = snapshotOf((await get(new URL('metadata/timestamp.json', url).href)).body);

    // Thirty streams, each on its own connection: the kernel spreads them over the threads.
    const token = parseJoinString(await lab.token())!.token;
    const streams = await Promise.all(Array.from({ length: 30 }, async (_, i) => openStream(url, await enroll(url, token, `sim-${i}`))));
    try {
      // Every thread has answered the timestamp (and cached it) before the release.
      for (const answer of await Promise.all(Array.from({ length: 30 }, () => get(new URL('metadata/timestamp.json', url).href)))) expect(snapshotOf(answer.body)).toBe(before);

      lab.publish();
      expect((await lab.serverUpdate()).result).toBe('ok');
      const release = JSON.parse((await get(new URL('agents/v1/index.json', url).href)).body) as { release: number };
      await server.waitFor(new RegExp(`30 connected agents notified of release ${release.release}`), 20_000);
      // Told on whichever thread holds it (the log line comes as the main thread hands the event to
      // the threads; each writes it to its streams), and by then no thread answers the old timestamp.
      await until(() => streams.every((stream) => stream.releases.length > 0), 10_000, 'every stream to hear of the release');
      for (const stream of streams) expect(stream.releases).toEqual([release.release]);
      const answers = await Promise.all(Array.from({ length: 30 }, () => get(new URL('metadata/timestamp.json', url).href)));
      for (const answer of answers) expect(snapshotOf(answer.body)).toBeGreaterThan(before);
      const indexes = await Promise.all(Array.from({ length: 30 }, () => get(new URL('agents/v1/index.json', url).href)));
      for (const index of indexes) expect((JSON.parse(index.body) as { release: number }).release).toBe(release.release);

      // Routes the main thread decides still answer through any thread.
      for (const answer of await Promise.all(Array.from({ length: 10 }, () => get(new URL('agents/v1/policy', url).href, { authorization: 'Bearer wrong' })))) {
        expect(answer.status).toBe(401);
        expect(answer.body).toMatch(/unknown agent or wrong credential/);
      }
      for (const answer of await Promise.all(Array.from({ length: 10 }, () => get(new URL('targets/nothing-here', url).href)))) expect(answer.status).toBe(404);

      // The registry saw each stream's agent.
      const listed = await lab.agents();
      expect(listed.agents.filter((a) => a.name.startsWith('sim-'))).toHaveLength(30);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it.skipIf(!portSharing)('without the native front the file threads serve on the fast path, and the server says why once', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    process.env[TURN_OFF_FRONT] = 'off';
    let server;
    try {
      server = await lab.startServer(['--agent-threads', '2']);
    } finally {
      delete process.env[TURN_OFF_FRONT];
    }
    expect(server.stdout.match(/file threads serve without the native front \(turned off by BULWARK_AGENT_FRONT=off\)/g)).toHaveLength(1);
    expect(listeningSockets(Number(new URL(lab.agentsUrl).port))).toBe(2 * AGENT_LISTENERS_PER_THREAD);
    const answers = await Promise.all(Array.from({ length: 10 }, () => get(new URL('metadata/timestamp.json', lab.agentsUrl).href)));
    for (const answer of answers) expect(answer.status).toBe(200);
  });

  it('by default a small fleet is served by the main thread; file threads join once 1,000 agents are enrolled', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 1 });
    const server = await lab.startServer();
    if (!portSharing || os.availableParallelism() < 2) {
      expect(server.stdout).toMatch(/serving agents at \S+ \(main thread alone\)\n/);
      return;
    }
    expect(server.stdout).toMatch(/serving agents at \S+ \(main thread alone; file threads join from 1,000 enrolled agents\)/);
    const token = parseJoinString(await lab.token())!.token;
    const url = lab.agentsUrl;
    const port = Number(new URL(url).port);
    expect(listeningSockets(port)).toBe(1);
    // Streams the main thread holds when the threads come stay with it, and still hear releases.
    const onMain = await Promise.all(Array.from({ length: 5 }, async (_, i) => openStream(url, await enroll(url, token, `early-${i}`))));
    for (let next = 5; next < 999; ) {
      const batch = Array.from({ length: Math.min(50, 999 - next) }, () => next++);
      await Promise.all(batch.map((i) => enroll(url, token, `sim-${i}`)));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(server.stdout).not.toMatch(/agents enrolled: \d+ file threads? now take/);
    await enroll(url, token, 'sim-999');
    const joined = await server.waitFor(/1000 agents enrolled: (\d+) file threads? now take the agents' connections; the main thread keeps those it holds/, 20_000);
    const threads = Number(joined[1]);
    expect(threads).toBe(Math.min(os.availableParallelism(), 4));
    await until(() => listeningSockets(port) === threads * socketsPerThread, 5_000, 'the main thread to stop listening');
    const onThreads = await Promise.all(Array.from({ length: 10 }, async (_, i) => openStream(url, await enroll(url, token, `late-${i}`))));
    try {
      // The threads answer from the current release at once.
      const index = JSON.parse((await get(new URL('agents/v1/index.json', url).href)).body) as { release: number };
      for (const answer of await Promise.all(Array.from({ length: 30 }, () => get(new URL('agents/v1/index.json', url).href)))) expect(JSON.parse(answer.body)).toEqual(index);

      lab.publish();
      expect((await lab.serverUpdate()).result).toBe('ok');
      const release = (JSON.parse((await get(new URL('agents/v1/index.json', url).href)).body) as { release: number }).release;
      expect(release).toBeGreaterThan(index.release);
      const all = [...onMain, ...onThreads];
      await until(() => all.every((stream) => stream.releases.length > 0), 20_000, 'every stream, on the main thread or a file thread, to hear of the release');
      for (const stream of all) expect(stream.releases).toEqual([release]);
    } finally {
      for (const stream of [...onMain, ...onThreads]) stream.close();
    }
  });

  it('a second server cannot take a port one already serves on, threads or not', { timeout: 120_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 1 });
    const port = await freePort();
    await lab.startServer(['--agent-threads', '2'], `127.0.0.1:${port}`);
    const second = lab.spawn(['serve', '--data', path.join(lab.dir, 'second'), '--source', lab.source.url, '--trusted-root', lab.source.rootFile, '--agents-listen', `127.0.0.1:${port}`, '--agent-threads', '2']);
    await second.waitFor(new RegExp(`cannot serve agents on 127\\.0\\.0\\.1:${port}: .*(EADDRINUSE|in use)`), 30_000);
    // The first still answers every request.
    for (const answer of await Promise.all(Array.from({ length: 20 }, () => get(new URL('agents/v1/index.json', lab.agentsUrl).href)))) expect(answer.status).toBe(200);
  });

  it('--agent-threads takes 0 to 16 or auto, saved in the settings; a wrong value changes nothing', { timeout: 60_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 1 });
    const server = await lab.startServer(['--agent-threads', '0']);
    expect(server.stdout).toMatch(/serving agents at \S+ \(main thread alone\)/);
    await server.stop('SIGTERM');
    const settingsFile = path.join(lab.serverDir, 'settings.json');
    const saved = fs.readFileSync(settingsFile, 'utf8');
    expect(JSON.parse(saved).distribution.threads).toBe(0);
    for (const value of ['17', 'two', '1.5', '']) {
      const result = await runCli(['serve', '--data', lab.serverDir, `--agent-threads=${value}`]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/--agent-threads must be a whole number from 0 to 16/);
      expect(fs.readFileSync(settingsFile, 'utf8')).toBe(saved);
    }
    // auto: back to one per core (the setting removed).
    await lab.startServer(['--agent-threads', 'auto']);
    expect(JSON.parse(fs.readFileSync(settingsFile, 'utf8')).distribution.threads).toBeUndefined();
  });
});
