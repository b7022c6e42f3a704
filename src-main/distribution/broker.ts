// Release notifications through an MQTT broker (MQTT.js), for installations past one process: the
// server publishes one retained message per release on a topic, agents subscribe, and the broker (or
// a cluster of them) holds the connections. The message carries no content, only what an agent needs
// to decide to update: {"release": 12, "spreadSeconds": 30, "updateAsked": "…"}. Server-sent events
// from the server stay the default. MQTT.js is loaded only when a broker is configured.
import type { MqttClient } from 'mqtt';
import { describeError, UsageError } from '../engine/errors.js';

export interface BrokerAddress {
  /** mqtt://host:port or mqtts://host:port */
  url: string;
  topic: string;
}

/** What the server publishes (retained), and agents read. */
export interface ReleaseMessage {
  release: number;
  spreadSeconds: number;
  /** Set when the operator asked every agent to update now ("Update agents now"): its time. */
  updateAsked?: string;
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

async function connect(address: BrokerAddress, options: { clientId: string; reconnectPeriod: number }): Promise<MqttClient> {
  const mqtt = await import('mqtt');
  return mqtt.connect(address.url, { clientId: options.clientId, reconnectPeriod: options.reconnectPeriod, connectTimeout: 10_000, clean: true });
}

/** The server's side: publish each release, retained, so agents that connect later read it at once. */
export class ReleasePublisher {
  private constructor(
    private readonly client: MqttClient,
    private readonly address: BrokerAddress,
    private readonly log: (line: string) => void,
  ) {
    client.on('error', (error) => log(`broker ${address.url}: ${describeError(error)}`));
  }

  static async connect(address: BrokerAddress, log: (line: string) => void): Promise<ReleasePublisher> {
    return new ReleasePublisher(await connect(address, { clientId: `bulwark-server-${process.pid}`, reconnectPeriod: 2000 }), address, log);
  }

  publish(message: ReleaseMessage): void {
    // QoS 1: the broker confirms; MQTT.js queues it while the broker is away and sends it on reconnect.
    this.client.publish(this.address.topic, JSON.stringify(message), { qos: 1, retain: true }, (error) => {
      if (error) this.log(`broker ${this.address.url}: cannot publish release ${message.release}: ${describeError(error)}`);
    });
  }

  close(): Promise<void> {
    return this.client.endAsync();
  }
}

/**
 * The agent's side: follow the topic until `signal`, handing each valid message to `onMessage`. MQTT.js
 * reconnects by itself; the period is spread per agent so a broker restart is not met by all at once.
 */
export async function followBroker(
  address: BrokerAddress,
  options: { clientId: string; signal: AbortSignal; random: () => number; log: (line: string) => void },
  onMessage: (message: ReleaseMessage) => void,
): Promise<void> {
  const client = await connect(address, { clientId: options.clientId, reconnectPeriod: Math.round(1000 + options.random() * 9000) });
  let connectedOnce = false;
  client.on('connect', () => {
    if (connectedOnce) options.log(`reconnected to the broker ${address.url}`);
    connectedOnce = true;
    client.subscribe(address.topic, { qos: 1 }, (error) => {
      if (error) options.log(`broker ${address.url}: cannot subscribe to ${address.topic}: ${describeError(error)}`);
    });
  });
  client.on('error', (error) => options.log(`broker ${address.url}: ${describeError(error)}`));
  client.on('message', (_topic, payload) => {
    if (payload.length > 4096) return;
    try {
      const message = JSON.parse(payload.toString('utf8')) as Partial<ReleaseMessage>;
      if (Number.isSafeInteger(message.release)) onMessage(message as ReleaseMessage);
    } catch {
      // not ours: ignored
    }
  });
  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    else options.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await client.endAsync(true);
}
