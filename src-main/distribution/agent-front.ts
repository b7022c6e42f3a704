// The native front of a file thread (native/agent_front.c): it takes the thread's agents' connections
// on the thread's own event loop and answers, with one read and one write and no JavaScript, every
// request whose exact head bytes it has been given the answer to. It parses nothing. A head it does not
// know is shown here: read as the fast path reads heads (PlainHeads), answered from the thread's
// ResponseCache when the fast path would answer it from memory (the answer is then kept in the front
// under those bytes), else the connection is handed over, with its unread bytes, to the fast path
// and node:http for the rest of its life. Where the addon is missing, the fast path serves alone.
import type http from 'node:http';
import net from 'node:net';
import { loadAddon } from '../engine/native-addon.js';
import type { FrontAnswer, ThreadServing } from './agent-http.js';
import { MAX_HEAD_BYTES } from './fast-path.js';

interface FrontOptions {
  keepAliveMs: number;
  headersTimeoutMs: number;
  onHead(head: Buffer): FrontAnswer | undefined;
  /** True once a socket owns `fd`; the front closes it otherwise. */
  onHandOver(fd: number, unread: Buffer): boolean;
}

/** native/agent_front.node's functions (agent_front.c says what each does). */
interface FrontAddon {
  createFront(options: FrontOptions): object;
  listen(front: object, host: string, port: number, backlog: number): void;
  forget(front: object): void;
  answered(front: object): number;
  connections(front: object): number;
  close(front: object): void;
}

/** BULWARK_AGENT_FRONT=off leaves the file threads' connections to the fast path (for tests and comparisons). */
export const TURN_OFF_FRONT = 'BULWARK_AGENT_FRONT';

/** The addon, or why it cannot be used here. */
export function frontAddon(): FrontAddon | Error {
  if (process.env[TURN_OFF_FRONT] === 'off') return new Error(`turned off by ${TURN_OFF_FRONT}=off`);
  if (process.platform !== 'linux') return new Error(`built for Linux only (this is ${process.platform})`);
  return loadAddon<FrontAddon>('agent_front');
}

export interface AgentFrontOptions {
  serving: ThreadServing;
  /**
   * The thread's agents' server (its fast path in front, agentHttpServer): handed-over connections
   * reach it as connections it accepted. It listens nowhere; the front keeps its keep-alive and head timeouts.
   */
  server: http.Server;
}

export class AgentFront {
  private readonly front: object;
  /** Connections handed over and still open: ended with the front (those node:http has are its server's too). */
  private readonly handedOver = new Set<net.Socket>();

  constructor(
    private readonly addon: FrontAddon,
    { serving, server }: AgentFrontOptions,
  ) {
    const { cache, heads } = serving;
    // node:http enforces headersTimeout (and lists connections for closeAllConnections) from the moment
    // a server listens: this one never does, and a slow head handed over would otherwise wait for ever.
    server.emit('listening');
    this.front = addon.createFront({
      keepAliveMs: server.keepAliveTimeout,
      headersTimeoutMs: server.headersTimeout,
      onHead: (head) => {
        // As on the fast path, a head over node:http's limit is node:http's to refuse (431).
        if (head.length - 4 > MAX_HEAD_BYTES) return undefined;
        const request = heads.read(head.toString('latin1', 0, head.length - 4));
        return request && cache.frontAnswer(request);
      },
      onHandOver: (fd, unread) => {
        let socket: net.Socket;
        try {
          socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
        } catch {
          return false;
        }
        try {
          // Put back while no one reads: the fast path, then node:http, reads them before anything read later.
          if (unread.length) socket.unshift(unread);
          this.handedOver.add(socket);
          socket.once('close', () => this.handedOver.delete(socket));
          server.emit('connection', socket);
        } catch (error) {
          // The socket owns the descriptor (closing it here too could close a later connection's): it
          // goes, and the error is the thread's uncaught exception, as a throwing listener's would be.
          socket.destroy();
          process.nextTick(() => {
            throw error;
          });
        }
        return true;
      },
    });
    // An answer kept under a head is only right while the cache holds what it was made from.
    cache.onRemove(() => addon.forget(this.front));
  }

  /**
   * Listen on `host`:`port` with SO_REUSEPORT (the port shared with the other threads), an address the
   * main thread has bound already (so "::" is known to work here); throws as listen(2) fails.
   */
  listen(host: string, port: number, backlog: number): void {
    this.addon.listen(this.front, host, port, backlog);
  }

  /** Answers written by the front since the last call. */
  answered(): number {
    return this.addon.answered(this.front);
  }

  /** Connections the front holds (handed-over ones are node's). */
  connections(): number {
    return this.addon.connections(this.front);
  }

  /** Stop listening and end every connection it took, those it handed over included. */
  close(): void {
    this.addon.close(this.front);
    for (const socket of this.handedOver) socket.destroy();
    this.handedOver.clear();
  }
}
