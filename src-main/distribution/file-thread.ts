// A file thread: one of the event loops that take the agents' connections off the main thread (their
// sockets share the agents' port with SO_REUSEPORT, so the kernel spreads connections over them). It
// answers what it holds in memory — the metadata, the incrementals, the timestamp and the index —
// by itself, and asks the main thread, which owns the registry and the release, for everything
// else; it then writes that answer itself and holds the notification streams opened on it. HTTP
// parsing is most of the cost of serving a release to thousands of agents, and one event loop
// does it on one core (docs/benchmarks.md). Where the native front loads (agent-front.ts), it takes
// the thread's connections and answers the repeated requests itself; the rest come here.
import type http from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { PING_MS } from '../protocol/agent-protocol.js';
import { AgentFront, frontAddon } from './agent-front.js';
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
  /** `withoutFront`: why the native front does not take this thread's connections (absent: it does). */
  | { type: 'listening'; withoutFront?: string }
  | { type: 'request'; id: number; request: AgentRequest }
  | { type: 'opened' | 'closed'; agentId: string }
  | { type: 'released'; seq: number };

const port = parentPort!;
const data = workerData as FileThreadData;
const post = (message: FromFileThread) => port.postMessage(message);
let front: AgentFront | undefined;
const serving = threadServing(() => front?.answered() ?? 0);
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

const addon = frontAddon();
// With the front, one server takes what it hands over and listens nowhere; without it, the fast path's servers listen.
const addresses = addon instanceof Error ? data.listen.flatMap((address) => Array.from({ length: AGENT_LISTENERS_PER_THREAD }, () => address)) : [];
const servers = addon instanceof Error ? addresses.map(() => agentHttpServer(onRequest, serving)) : [agentHttpServer(onRequest, serving)];
if (!(addon instanceof Error)) {
  // A handed-over connection reaches the server as one it accepted: the fast path, then node:http.
  front = new AgentFront(addon, { serving, server: servers[0]!.server });
  for (const address of data.listen) front.listen(address.host, address.port, AGENT_LISTEN_BACKLOG);
}
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
      front?.close();
      for (const { server, fastPath } of servers) {
        fastPath.closeAllConnections();
        server.close();
      }
      port.close();
      return;
  }
});

// Without the front, each server listens on its address (with the front, `addresses` is empty).
await Promise.all(
  addresses.map(
    (address, i) =>
      new Promise<void>((resolve, reject) => {
        const { server } = servers[i]!;
        server.once('error', reject);
        server.listen({ host: address.host, port: address.port, ipv6Only: false, reusePort: true, backlog: AGENT_LISTEN_BACKLOG }, () => resolve());
      }),
  ),
);
post({ type: 'listening', ...(addon instanceof Error ? { withoutFront: addon.message } : {}) });
