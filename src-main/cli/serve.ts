// `bulwark serve` (and the demo): the server (src-main/server) until SIGINT or SIGTERM.
import { fileURLToPath } from 'node:url';
import { describeSchedule } from '../engine/schedule.js';
import type { Settings } from '../engine/settings.js';
import type { ConsoleListen } from '../server/listen.js';
import { startServer, type BulwarkServer } from '../server/server.js';
import { out, untilSignal } from './command.js';

/** The renderer build, relative to this compiled file (out/main/cli → out/renderer). */
export const RENDERER_DIR = fileURLToPath(new URL('../../renderer', import.meta.url));

export interface ServeOptions {
  log?: (line: string) => void;
  /** Serve the browser console on this address. */
  console?: ConsoleListen;
  /** Called once the server runs (the demo starts its agents here). */
  started?: (server: BulwarkServer) => Promise<void> | void;
  /** Called before the server stops (the demo stops its agents first, so they do not see it go). */
  stopping?: () => Promise<void> | void;
  /** The caller holds the data directory's lock (taken before it saved its flags). */
  lockTaken?: boolean;
  /** The consumers file (engines on this machine that use the components). */
  consumers?: string;
}

/** Host the server until SIGINT/SIGTERM. */
export async function serve(dataDir: string, settings: Settings, options: ServeOptions = {}): Promise<number> {
  const log = options.log ?? out;
  const stamp = (line: string) => log(`${new Date().toISOString()} ${line}`);
  const stopped = untilSignal(stamp);
  stamp(`Bulwark serving ${dataDir}; schedule ${describeSchedule(settings.data.schedule)}`);
  const server = await startServer({
    dataDir,
    settings,
    log: stamp,
    host: 'browser',
    ...(options.lockTaken ? { lockTaken: true } : {}),
    ...(options.consumers ? { consumers: options.consumers } : {}),
    ...(options.console ? { console: { ...options.console, rendererDir: RENDERER_DIR } } : {}),
    // Before the start-up update begins, which runs while the agents' service starts.
    beforeStart: (engine) =>
      engine.on('state', (state) => {
        if (state.type === 'downloading') stamp(`downloading ${state.component} (${state.index + 1} of ${state.total}, ${state.method})`);
      }),
  });
  try {
    if (server.consoleServer) {
      // Under systemd the log is the journal, which others may read: the address without its secret.
      if (process.env.JOURNAL_STREAM) log(`Console: ${server.consoleServer.origin}/ (sign in with the address \`bulwark console-url --data ${dataDir}\` prints)`);
      else log(`Console: ${server.consoleServer.url}`);
    }
    void server.startup.then(() => stamp(`next update at ${server.engine.nextRun()?.toISOString() ?? 'never'}`));
    await options.started?.(server);
    await stopped;
  } finally {
    await options.stopping?.();
    await server.stop();
  }
  stamp('stopped');
  return 0;
}
