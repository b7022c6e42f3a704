// A file thread: one of the event loops that take the agents' connections off the main thread (their
// sockets share the agents' port with SO_REUSEPORT, so the kernel spreads connections over them). It
// answers what it holds in memory — the metadata, the incrementals, the timestamp and the index —
// by itself, and asks the main thread, which owns the registry and the release, for everything
// else; it then writes that answer itself and holds the notification streams opened on it. HTTP
// parsing is most of the cost of serving a release to thousands of agents, and one event loop
// does it on one core (docs/benchmarks.md).
import type http from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { PING_MS } from '../protocol/agent-protocol.js';
import { AGENT_LISTEN_BACKLOG, AGENT_LISTENERS_PER_THREAD, agentHttpServer, agentRequestListener, cacheRelease, Streams, threadServing, type AgentRequest, type ReleaseAnswers, type Reply } from './agent-http.js';

export interface FileThreadData {
  /** The addresses the main thread reserved (port resolved), to bind with SO_REUSEPORT. */
  listen: { host: string; port: number }[];
  release: ReleaseAnswers | undefined;
}

/** Messages from the main thread. */
export type ToFileThread =
  | { type: 'reply'; id: number; reply: Reply }
  /** A new release: answer its timestamp and index from now on, then acknowledge. */
  | { type: 'release'; seq: number; answers: ReleaseAnswers }
  /** An event for every stream this thread holds, or only agent `to`'s. */
  | { type: 'send'; message: string; to?: string }
  | { type: 'close' };

/** Messages to the main thread. */
export type FromFileThread =
  | { type: 'listening' }
  | { type: 'request'; id: number; request: AgentRequest }
  | { type: 'opened' | 'closed'; agentId: string }
  | { type: 'released'; seq: number };

const port = parentPort!;
const data = workerData as FileThreadData;
const post = (message: FromFileThread) => port.postMessage(message);
const serving = threadServing();
const { cache, burst } = serving;
const streams = new Streams();
if (data.release) cacheRelease(cache, data.release);

const pending = new Map<number, (reply: Reply) => void>();
let nextId = 0;
const ask = (request: AgentRequest) =>
  new Promise<Reply>((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    post({ type: 'request', id, request });
  });

const openStream = (agentId: string, res: http.ServerResponse) => {
  const remove = streams.add(agentId, res);
  post({ type: 'opened', agentId });
  return () => {
    remove();
    post({ type: 'closed', agentId });
  };
};

// The main thread logs what fails in its routes; what fails here (reading a request) is the agent's.
const onRequest = agentRequestListener(ask, cache, openStream, () => {}, burst);

const addresses = data.listen.flatMap((address) => Array.from({ length: AGENT_LISTENERS_PER_THREAD }, () => address));
const servers = addresses.map(() => agentHttpServer(onRequest, serving));
const ping = setInterval(() => streams.send(': ping\n\n'), PING_MS);
ping.unref();

port.on('message', (message: ToFileThread) => {
  switch (message.type) {
    case 'reply': {
      const resolve = pending.get(message.id);
      pending.delete(message.id);
      resolve?.(message.reply);
      return;
    }
    case 'release':
      cacheRelease(cache, message.answers);
      post({ type: 'released', seq: message.seq });
      return;
    case 'send':
      streams.send(message.message, message.to);
      return;
    case 'close':
      clearInterval(ping);
      burst.stop();
      streams.endAll();
      for (const { server, fastPath } of servers) {
        fastPath.closeAllConnections();
        server.close();
      }
      port.close();
      return;
  }
});

await Promise.all(
  servers.map(
    ({ server }, i) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: addresses[i]!.host, port: addresses[i]!.port, ipv6Only: false, reusePort: true, backlog: AGENT_LISTEN_BACKLOG }, () => resolve());
      }),
  ),
);
post({ type: 'listening' });
