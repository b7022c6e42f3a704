// Addresses as people write them: where to listen ("127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0") and
// which MQTT broker to announce releases through ("mqtt://broker.example:1883/bulwark/releases").
import { describeError, UsageError } from '../engine/errors.js';
import { errorCode } from '../engine/network.js';
import type { BrokerAddress } from '../protocol/broker.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Where the console listens: loopback (IPv4's, else IPv6's) when no host is given. `remembered`: no
 * address was asked for, so the one it had before a restart is taken again when it is free.
 */
export type ConsoleListen = { host?: string; port: number; remembered?: boolean };

/** Parse ADDRESS:PORT; `what` names the flag or setting in the error ("--listen", "--agents-listen"). */
export function parseListen(text: string, what = '--listen'): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || !(port >= 0 && port <= 65535)) throw new UsageError(`${what} "${text}" must be ADDRESS:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  return { host: match[1] ?? match[2]!, port };
}

/** The form parseListen reads. */
export function formatListen({ host, port }: ListenAddress): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Parse "mqtt://HOST:PORT/TOPIC" (mqtts for TLS); `what` names the flag in errors. */
export function parseBrokerUrl(text: string, what = '--notify'): BrokerAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${what} "${text}" is not a URL; write mqtt://HOST:PORT/TOPIC`);
  }
  if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') throw new UsageError(`${what} must be an mqtt:// or mqtts:// URL, e.g. mqtt://broker.example:1883/bulwark/releases`);
  const topic = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!topic || /[#+]/.test(topic)) throw new UsageError(`${what} needs a topic without wildcards after the address, e.g. mqtt://broker.example:1883/bulwark/releases`);
  return { url: `${url.protocol}//${url.host}`, topic };
}

/** Why an address could not be listened on, in words (the system says "listen EADDRINUSE: address already in use …"). */
export function describeListenError(error: unknown): string {
  switch (errorCode(error)) {
    case 'EADDRINUSE':
      return 'another program is already listening there (EADDRINUSE)';
    case 'EACCES':
      return 'this user may not listen on that port (EACCES): ports below 1024 need root, or CAP_NET_BIND_SERVICE';
    case 'EADDRNOTAVAIL':
      return 'this machine has no such address (EADDRNOTAVAIL)';
    default:
      return describeError(error);
  }
}
