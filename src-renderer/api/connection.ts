// How the console is connected to its server. The desktop bridge is always connected; the browser
// console can lose the server (it restarted, the network dropped) or be refused (no or wrong token).

export type ConnectionStatus =
  | { kind: 'connecting' }
  | { kind: 'connected' }
  /** Lost after having been connected, or never reached: retrying by itself. */
  | { kind: 'reconnecting'; attempt: number }
  /** The server refused the access token: retrying cannot help until the user opens the right URL. */
  | { kind: 'unauthorized'; message: string };

export interface ConnectionMonitor {
  readonly status: ConnectionStatus;
  /** Called on every change; returns an unsubscribe function. */
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
}

/** For transports that cannot lose their server (the Electron preload). */
export const alwaysConnected: ConnectionMonitor = {
  status: { kind: 'connected' },
  onStatus: () => () => {},
};
