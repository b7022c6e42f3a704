// Giving memory back after a burst of work. V8 keeps a grown heap (its young generation reaches
// 16 MB and more during an update) until its memory reducer notices the process is idle, which on a
// server that updates hourly may take a while; a full collection right after a run returns it at once.
// `gc` is exposed for this one purpose: the flag is set at run time and the function taken from a
// fresh context, where V8 installs it.
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | undefined;

/** Collect garbage now (at most once per call; cheap on a heap of a few tens of MB). */
export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}
