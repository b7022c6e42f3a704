// The agent trusts the vendor's signatures, not its server: a rogue server between the agent and the
// real one (a proxy in this process) modifies files, modifies metadata, replays old metadata (a
// downgrade) or answers without end. For each, the agent refuses, keeps the version it has, and says
// why; then, the server honest again, it updates.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt } from './helpers/cli.js';

type Mode = 'honest' | 'modify-files' | 'modify-metadata' | 'replay-metadata' | 'endless-metadata' | 'endless-files';

/** A proxy to the real server that lies the way `mode` says. */
async function rogueServer(upstream: string) {
  const state = { mode: 'honest' as Mode, recorded: undefined as Buffer | undefined, requests: [] as string[] };
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    state.requests.push(path);
    const files = /^\/(targets|made)\//.test(path);
    if (state.mode === 'endless-metadata' && path === '/metadata/timestamp.json') return endless(res);
    if (state.mode === 'endless-files' && files) return endless(res);
    if (state.mode === 'replay-metadata' && path === '/metadata/timestamp.json' && state.recorded) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': state.recorded.length }).end(state.recorded);
      return;
    }
    const forward = http.request(new URL(path, upstream), { method: req.method, headers: { ...req.headers, host: new URL(upstream).host } }, (answer) => {
      const tamper = (state.mode === 'modify-files' && files) || (state.mode === 'modify-metadata' && path.startsWith('/metadata/') && answer.statusCode === 200);
      if (!tamper) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        let body = Buffer.concat(chunks);
        if (path.startsWith('/metadata/')) {
          // Same shape, one signed field changed: the signature no longer covers it.
          body = Buffer.from(body.toString('utf8').replace(/"expires":"(\d{4})/, (_m, year: string) => `"expires":"${Number(year) + 1}`));
        } else {
          for (let i = 64; i < body.length; i += 101) body[i] = body[i]! ^ 0x5a;
        }
        const headers = { ...answer.headers, 'content-length': String(body.length) };
        delete headers.etag;
        res.writeHead(answer.statusCode ?? 502, headers).end(body);
      });
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    state,
    async record() {
      const response = await fetch(new URL('metadata/timestamp.json', upstream));
      state.recorded = Buffer.from(await response.arrayBuffer());
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A 200 answer that never ends (until the client goes away). */
function endless(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  const chunk = Buffer.alloc(64 * 1024, 0x7b);
  const pump = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  pump();
}

let lab: AgentsLab;
let rogue: Awaited<ReturnType<typeof rogueServer>> | undefined;

beforeAll(() => ensureBuilt());
afterEach(async () => {
  await rogue?.close();
  await lab?.stop();
});

describe('an agent behind a rogue server', () => {
  it('refuses modified files, modified metadata, a downgrade and endless answers, keeping its version, then updates once the server is honest', { timeout: 240_000 }, async () => {
    lab = await new AgentsLab().start({ versions: 2 });
    await lab.startServer();
    rogue = await rogueServer(lab.agentsUrl);
    const first = lab.latest;
    await lab.startAgent('target', [], { server: rogue.url });
    const dir = lab.agentDir('target');
    const installed = await lab.waitForVersion(dir, first);
    await rogue.record(); // the metadata of the release the agent holds: replayed later as a downgrade

    // From now on the server lies about files; two new releases upstream, installed by the server
    // (the agent, told of each, already tries and refuses them).
    rogue.state.mode = 'modify-files';
    lab.publish();
    expect((await lab.serverUpdate()).result).toBe('ok');
    const latest = await lab.release();

    const expectRefused = async (mode: Mode, why: RegExp) => {
      rogue!.state.mode = mode;
      const { code, json } = await lab.update(dir); // joins the running agent's run, or starts one
      expect(code, `${mode}: ${JSON.stringify(json)}`).toBe(1);
      expect(json.result).toBe('failed');
      expect(`${json.error} ${json.components.map((c) => `${c.reason} ${c.error ?? ''}`).join(' ')}`).toMatch(why);
      expect(lab.active(dir)).toEqual(installed); // same version, same file, same record
    };
    await expectRefused('modify-files', /does not match (its|the) signed length and hash/);
    await expectRefused('modify-metadata', /metadata could not be verified|signature/i);
    await expectRefused('replay-metadata', /version|rollback|older/i);
    await expectRefused('endless-metadata', /longer than|max length|length/i);
    const before = rogue.state.requests.length;
    await expectRefused('endless-files', /longer than the \d+ bytes allowed/);
    expect(rogue.state.requests.length - before).toBeGreaterThan(0);

    rogue.state.mode = 'honest';
    const { code, json } = await lab.update(dir);
    expect(code).toBe(0);
    expect(json.components[0]).toMatchObject({ version: latest, method: 'incremental' });
    expect(lab.active(dir)?.version).toBe(latest);
  });
});
