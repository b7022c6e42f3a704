// The agent's side of broker notifications (protocol/broker.ts): follow the topic.
import { describeError } from '../engine/errors.js';
import { AGENT_LIMITS, type ReleaseMessage } from '../protocol/agent-protocol.js';
import { connectBroker, type BrokerAddress } from '../protocol/broker.js';
import { Backoff, LONG_LIVED_MS } from './events.js';

/**
 * Follow the topic until `signal`, handing each valid message to `onMessage`. Every reconnection waits
 * out the same capped, jittered back-off as the notification stream (MQTT.js's own fixed period is
 * turned off), so a broker that restarts or drops connections is not met by every agent at once and
 * again each second; only a connection that lived long starts the back-off over.
 */
export async function followBroker(
  address: BrokerAddress,
  options: { clientId: string; signal: AbortSignal; random: () => number; log: (line: string) => void },
  onMessage: (message: ReleaseMessage) => void,
): Promise<void> {
  const client = await connectBroker(address, { clientId: options.clientId, reconnectPeriod: 0 });
  const backoff = new Backoff(1000, 60_000, options.random);
  let connectedOnce = false;
  let connectedAt: number | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  client.on('connect', () => {
    if (connectedOnce) options.log(`reconnected to the broker ${address.url}`);
    connectedOnce = true;
    connectedAt = Date.now();
    client.subscribe(address.topic, { qos: 1 }, (error) => {
      if (error) options.log(`broker ${address.url}: cannot subscribe to ${address.topic}: ${describeError(error)}`);
    });
  });
  client.on('error', (error) => options.log(`broker ${address.url}: ${describeError(error)}`));
  client.on('close', () => {
    if (options.signal.aborted || reconnectTimer) return;
    if (connectedAt !== undefined && Date.now() - connectedAt > LONG_LIVED_MS) backoff.reset();
    connectedAt = undefined;
    const wait = backoff.next();
    options.log(`broker ${address.url}: connection closed; reconnecting in ${(wait / 1000).toFixed(1)} s`);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      if (!options.signal.aborted) client.reconnect();
    }, wait);
  });
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
  clearTimeout(reconnectTimer);
  await client.endAsync(true);
}
