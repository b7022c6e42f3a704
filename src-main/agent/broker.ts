// The agent's side of broker notifications (protocol/broker.ts): follow the topic.
import { describeError } from '../engine/errors.js';
import { AGENT_LIMITS, type ReleaseMessage } from '../protocol/agent-protocol.js';
import { connectBroker, type BrokerAddress } from '../protocol/broker.js';

/**
 * Follow the topic until `signal`, handing each valid message to `onMessage`. MQTT.js reconnects by
 * itself; the period is spread per agent so a broker restart is not met by all at once.
 */
export async function followBroker(
  address: BrokerAddress,
  options: { clientId: string; signal: AbortSignal; random: () => number; log: (line: string) => void },
  onMessage: (message: ReleaseMessage) => void,
): Promise<void> {
  const client = await connectBroker(address, { clientId: options.clientId, reconnectPeriod: Math.round(1000 + options.random() * 9000) });
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
    if (payload.length > AGENT_LIMITS.brokerMessageBytes) return;
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
