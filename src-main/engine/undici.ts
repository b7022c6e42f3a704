// undici's dispatchers, and only them. The package's index also loads fetch, WebSocket, EventSource,
// caches and mocks, which Bulwark never uses and which cost a long-running server about 13 MB of
// memory (measured: docs/benchmarks.md); its dispatcher modules load on their own.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

// What the index does besides loading everything: give every dispatcher its request/stream/connect
// methods. ProxyAgent opens an HTTPS source's CONNECT tunnel with `connect`, so without this no HTTPS
// update goes through a proxy.
const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
if (!('connect' in Dispatcher.prototype)) Object.assign(Dispatcher.prototype, require('undici/lib/api/index.js'));

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
export const ProxyAgent = require('undici/lib/dispatcher/proxy-agent.js') as typeof Undici.ProxyAgent;
export const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof Undici.EnvHttpProxyAgent;
export type { Dispatcher } from 'undici';
