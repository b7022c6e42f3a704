// The MQTT transport of the protocol (MQTT.js), for installations past one process: the server
// publishes one retained ReleaseMessage per release on a topic (distribution/broker.ts), agents
// subscribe (agent/broker.ts), and the broker (or a cluster of them) holds the connections. The
// message carries no content, only what an agent needs to decide to look. Server-sent events from
// the server stay the default. MQTT.js is loaded only when a broker is configured; addresses are
// parsed where people write them (server/listen.ts).
import type { MqttClient } from 'mqtt';

export interface BrokerAddress {
  /** mqtt://host:port or mqtts://host:port */
  url: string;
  topic: string;
}

export async function connectBroker(address: BrokerAddress, options: { clientId: string; reconnectPeriod: number }): Promise<MqttClient> {
  const mqtt = await import('mqtt');
  return mqtt.connect(address.url, { clientId: options.clientId, reconnectPeriod: options.reconnectPeriod, connectTimeout: 10_000, clean: true });
}
