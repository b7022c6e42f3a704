// A caching mirror with a standard HTTP cache: nginx (Debian's package) runs with the configuration
// docs/mirror.md gives (addresses replaced), between 20 agents and their server. Every file the agents
// fetch comes through the mirror, and the server sees one download per file however many agents ask
// at once. A mirror that is down costs the agents nothing but a request: they fall back to the server.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src-main/agent/agent.js';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, until } from './helpers/cli.js';
import { freePort, hasCommand } from './helpers/proxies.js';

const skipReason = hasCommand('nginx') ? '' : 'needs nginx (apt-get install nginx)';
if (skipReason) console.warn(`mirror tests SKIPPED: ${skipReason}`);

/** The nginx block of docs/mirror.md, pointed at `upstream`, listening on `port`, caching in `cacheDir`. */
function mirrorConfig(upstream: string, port: number, cacheDir: string): string {
  const doc = fs.readFileSync(new URL('../docs/mirror.md', import.meta.url), 'utf8');
  const block = /```nginx\n([\s\S]*?)```/.exec(doc)?.[1];
  if (!block) throw new Error('docs/mirror.md has no nginx block');
  return block
    .replace('bulwark-server.example:8470', upstream)
    .replace('/var/cache/bulwark-mirror', cacheDir)
    .replace('listen 8480;', `listen 127.0.0.1:${port};`)
    .replace('listen [::]:8480;', '');
}

let lab: AgentsLab;
let nginx: ChildProcess | undefined;
let counter: http.Server;
const upstreamRequests = new Map<string, number>();
let mirrorUrl = '';
const agents: Agent[] = [];

async function startNginx(dir: string, upstream: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const conf = [
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    'user root;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/logs/error.log warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${dir}/logs/access.log;`,
    `  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy_temp; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
    mirrorConfig(upstream, port, path.join(dir, 'cache')),
    '}',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  execFileSync('nginx', ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'pipe' });
  const child = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/`;
  await until(async () => (await fetch(`${url}metadata/timestamp.json`).then((r) => r.status).catch(() => 0)) !== 0, 15_000, 'nginx to listen');
  return { child, url };
}

describe.skipIf(Boolean(skipReason))(`a caching mirror (nginx, as docs/mirror.md configures it)${skipReason ? ` (SKIPPED: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    ensureBuilt();
    lab = await new AgentsLab().start({ versions: 2, bytes: 300_000 });
    await lab.startServer(['--agent-spread', '2']);
    // Between nginx and the server: a pass-through that counts what reaches the server.
    counter = http.createServer((req, res) => {
      upstreamRequests.set(req.url ?? '', (upstreamRequests.get(req.url ?? '') ?? 0) + 1);
      const forward = http.request(new URL(req.url ?? '/', lab.agentsUrl), { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => counter.listen(0, '127.0.0.1', resolve));
    const started = await startNginx(path.join(lab.dir, 'nginx'), `127.0.0.1:${(counter.address() as AddressInfo).port}`);
    nginx = started.child;
    mirrorUrl = started.url;
  }, 90_000);

  afterAll(async () => {
    try {
      await Promise.all(agents.map((agent) => agent.stop()));
      if (nginx?.pid && nginx.exitCode === null && nginx.signalCode === null) {
        process.kill(nginx.pid, 'SIGQUIT');
        await until(() => nginx!.exitCode !== null || nginx!.signalCode !== null, 10_000, 'nginx to stop').catch(() => process.kill(nginx!.pid!, 'SIGKILL'));
      }
      counter?.closeAllConnections();
      await new Promise((resolve) => counter?.close(resolve));
    } finally {
      await lab?.stop();
    }
  }, 60_000);

  it('20 agents update through the mirror; the server sees one download per file', { timeout: 180_000 }, async () => {
    const token = await lab.token();
    for (let i = 0; i < 20; i++) {
      agents.push(new Agent({ server: lab.agentsUrl, token, name: `m${i}`, dataDir: lab.agentDir(`m${i}`), mirrors: [mirrorUrl] }));
    }
    await Promise.all(agents.map((agent) => agent.start()));
    for (let i = 0; i < 20; i++) await lab.waitForVersion(lab.agentDir(`m${i}`), lab.latest, 60_000);

    upstreamRequests.clear();
    const next = await lab.release();
    for (let i = 0; i < 20; i++) expect(await lab.waitForVersion(lab.agentDir(`m${i}`), next, 60_000)).toMatchObject({ method: 'incremental' });

    const files = [...upstreamRequests].filter(([url]) => /^\/(targets|made)\/|^\/metadata\/\d+\.(snapshot|targets)\.json$/.test(url));
    // The incremental and the new metadata went from the server to the mirror once each...
    expect(files.some(([url]) => /\.v_\d+\.\d+$/.test(url))).toBe(true);
    expect(files.some(([url]) => /\.snapshot\.json$/.test(url))).toBe(true);
    expect(files.filter(([, count]) => count !== 1)).toEqual([]);
    // ...while the timestamp, which says what is current, was asked of the server by every agent.
    expect(upstreamRequests.get('/metadata/timestamp.json')).toBeGreaterThanOrEqual(20);
  });

  it('with the mirror down, agents fall back to the server and still update', { timeout: 120_000 }, async () => {
    process.kill(nginx!.pid!, 'SIGQUIT');
    await until(() => nginx!.exitCode !== null || nginx!.signalCode !== null, 10_000, 'nginx to stop');
    upstreamRequests.clear();
    const next = await lab.release();
    // Straight to the server now (the counter only sees what nginx forwards).
    for (let i = 0; i < 20; i += 5) expect((await lab.waitForVersion(lab.agentDir(`m${i}`), next, 60_000)).version).toBe(next);
    expect([...upstreamRequests.keys()].filter((url) => url.startsWith('/targets/'))).toEqual([]);
  });
});
