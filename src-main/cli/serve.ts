// Hosting the engine from the command line: `bulwark serve` and the demo.
import { Engine } from '../engine/engine.js';
import { describeSchedule } from '../engine/schedule.js';
import type { Settings } from '../engine/settings.js';

const out = (line: string) => process.stdout.write(line + '\n');

/** Host the engine until SIGINT/SIGTERM; used by `serve` and the demo. */
export async function serve(dataDir: string, settings: Settings, log: (line: string) => void = out): Promise<number> {
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
  void engine.start().then(() => stamp(`next update at ${engine.nextRun()?.toISOString() ?? 'never'}`));
  await stopped;
  await engine.stop();
  stamp('stopped');
  return 0;
}

