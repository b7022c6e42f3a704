// Release notifications through an MQTT broker: mosquitto (Debian's package) started by the test with
// its own configuration, a server publishing to it (--notify) and agent processes subscribed to it
// (--notify) instead of holding a stream to the server. A release reaches them through the broker;
// so does "Update agents now"; an agent that starts later reads the retained release at once.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentsLab } from './helpers/agents-lab.js';
import { ensureBuilt, until } from './helpers/cli.js';
import { freePort, hasCommand } from './helpers/proxies.js';

const skipReason = hasCommand('mosquitto') ? '' : 'needs mosquitto (apt-get install mosquitto)';
if (skipReason) console.warn(`broker tests SKIPPED: ${skipReason}`);

let lab: AgentsLab;
let mosquitto: ChildProcess | undefined;
let broker = '';

describe.skipIf(Boolean(skipReason))(`release notifications through an MQTT broker (mosquitto)${skipReason ? ` (SKIPPED: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    ensureBuilt();
    lab = await new AgentsLab().start({ versions: 2 });
    const port = await freePort();
    const dir = path.join(lab.dir, 'mosquitto');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'mosquitto.conf'), [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stdout', 'user root'].join('\n') + '\n');
    mosquitto = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () => {
            socket.destroy();
            resolve(true);
          });
          socket.on('error', () => resolve(false));
        }),
      15_000,
      'mosquitto to listen',
    );
    broker = `mqtt://127.0.0.1:${port}/bulwark/test/releases`;
    await lab.startServer(['--notify', broker, '--console']);
  }, 90_000);

  afterAll(async () => {
    await lab?.stop();
    if (mosquitto?.pid && mosquitto.exitCode === null) {
      process.kill(mosquitto.pid, 'SIGTERM');
      await until(() => mosquitto!.exitCode !== null || mosquitto!.signalCode !== null, 10_000, 'mosquitto to stop');
    }
  }, 60_000);

  it('agents subscribed to the broker learn of a release within seconds, and of "update now"', { timeout: 120_000 }, async () => {
    const agents = await Promise.all(['b1', 'b2'].map((name) => lab.startAgent(name, ['--notify', broker])));
    const first = lab.latest;
    for (const name of ['b1', 'b2']) {
      await lab.waitForVersion(lab.agentDir(name), first);
      // Idle at that version (its run recorded), so the release below is news to a quiet agent.
      await lab.runThatInstalled(lab.agentDir(name), first);
    }
    const next = await lab.release();
    // They hold no stream to the server: the broker carries their notifications.
    expect(lab.server!.stdout).toMatch(/distribution: 0 connected agents notified of release \d+/);
    for (const [i, name] of ['b1', 'b2'].entries()) {
      expect(await lab.waitForVersion(lab.agentDir(name), next, 30_000)).toMatchObject({ method: 'incremental' });
      expect(agents[i]!.stdout).toMatch(/the server announced release \d+/);
      expect((await lab.runThatInstalled(lab.agentDir(name), next)).trigger).toBe('notification');
    }

    // "Update agents now" goes through the broker too.
    const { asked } = await updateAgentsNow();
    expect(asked).toBe(0); // no agent holds a stream to the server...
    for (const agent of agents) await agent.waitFor(/the server asked for an update/, 30_000); // ...yet both heard it

    // An agent that starts now reads the retained release and polls at once.
    const late = await lab.startAgent('late', ['--notify', broker]);
    await lab.waitForVersion(lab.agentDir('late'), next, 30_000);
    expect(late.stdout).not.toMatch(/notification stream/);
  });
});

/** The console's "Update agents now", over the server's HTTP console API. */
async function updateAgentsNow(): Promise<{ asked: number }> {
  const [, url] = /^Console: (http:\/\/\S+)$/m.exec(lab.server!.stdout)!;
  const console = new URL(url!);
  const response = await fetch(`${console.origin}/api/call/updateAgentsNow`, {
    method: 'POST',
    headers: { authorization: `Bearer ${console.searchParams.get('token')}`, 'content-type': 'application/json', 'x-bulwark-console': '1' },
    body: 'null',
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { asked: number };
}
