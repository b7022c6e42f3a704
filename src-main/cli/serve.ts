// Hosting the engine from the command line: `bulwark serve`, with the browser console when asked,
// and the demo.
import { fileURLToPath } from 'node:url';
import { startConsoleServer } from '../console/http-server.js';
import { ConsoleService } from '../console/service.js';
import { Engine } from '../engine/engine.js';
import { UsageError } from '../engine/errors.js';
import { describeSchedule } from '../engine/schedule.js';
import type { Settings } from '../engine/settings.js';

const out = (line: string) => process.stdout.write(line + '\n');

/** The renderer build, relative to this compiled file (out/main/cli → out/renderer). */
export const RENDERER_DIR = fileURLToPath(new URL('../../renderer', import.meta.url));

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parse "127.0.0.1:8080", "[::1]:8080" or "0.0.0.0:0". */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || !(port >= 0 && port <= 65535)) throw new UsageError(`--listen "${text}" must be ADDRESS:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  return { host: match[1] ?? match[2]!, port };
}

export interface ServeOptions {
  log?: (line: string) => void;
  /** Serve the browser console on this address. */
  console?: ListenAddress;
}

/** Host the engine until SIGINT/SIGTERM. */
export async function serve(dataDir: string, settings: Settings, options: ServeOptions = {}): Promise<number> {
  const log = options.log ?? out;
  const stamp = (line: string) => log(`${new Date().toISOString()} ${line}`);
  const engine = new Engine({ dataDir, settings, log: stamp });
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      stamp(`${signal} received; stopping after the update in progress, if any`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  engine.on('state', (state) => {
    if (state.type === 'downloading') stamp(`downloading ${state.component} (${state.index + 1} of ${state.total}, ${state.method})`);
  });
  stamp(`Bulwark serving ${dataDir}; schedule ${describeSchedule(settings.data.schedule)}`);
  const startup = engine.start();
  let consoleServer: Awaited<ReturnType<typeof startConsoleServer>> | undefined;
  try {
    if (options.console) {
      const service = new ConsoleService({ engine, settings, dataDir, host: 'browser' });
      consoleServer = await startConsoleServer({ service, rendererDir: RENDERER_DIR, ...options.console, log: stamp });
      log(`Console: ${consoleServer.url}`);
    }
    void startup.then(() => stamp(`next update at ${engine.nextRun()?.toISOString() ?? 'never'}`));
    await stopped;
  } finally {
    await consoleServer?.close();
    await engine.stop();
  }
  stamp('stopped');
  return 0;
}
