// node:http's values, loaded with require. An ES import of a built-in module reads every export to
// build its namespace, and node:http's WebSocket, CloseEvent and MessageEvent are getters that load
// Node's own copy of undici: about 5 MB in each thread that imports it, for classes Bulwark never
// uses (the agents' file threads are several such threads). Types still come from 'node:http' with
// `import type`, which leaves no import behind.
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const { createServer, STATUS_CODES } = http;
