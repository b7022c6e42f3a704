// The server's side of broker notifications (protocol/broker.ts): publish each release, retained.
import type { MqttClient } from 'mqtt';
import { describeError } from '../engine/errors.js';
import type { ReleaseMessage } from '../protocol/agent-protocol.js';
import { connectBroker, type BrokerAddress } from '../protocol/broker.js';

/** Publishes each release, retained, so agents that connect later read it at once. */
export class ReleasePublisher {
  private constructor(
    private readonly client: MqttClient,
    private readonly address: BrokerAddress,
    private readonly log: (line: string) => void,
  ) {
    client.on('error', (error) => log(`broker ${address.url}: ${describeError(error)}`));
  }

  static async connect(address: BrokerAddress, log: (line: string) => void): Promise<ReleasePublisher> {
    return new ReleasePublisher(await connectBroker(address, { clientId: `bulwark-server-${process.pid}`, reconnectPeriod: 2000 }), address, log);
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
