// Giving memory back after a burst of work. V8 keeps a grown heap (its young generation reaches
// 16 MB and more during an update, 32 MB under thousands of agents' requests) until its memory
// reducer notices the process is idle, which on a server that updates hourly may take a while; a
// collection right after a run returns it at once. Only a "last resort" collection (V8's
// CollectAllAvailableGarbage) also shrinks the young generation back to its first page: a regular
// full one frees the objects and keeps the pages. V8 takes that option from 12 on (Node 22, the
// desktop app's Electron); under Node 20 the regular collection is what there is.
// `gc` is exposed for this one purpose: the flag is set at run time and the function taken from a
// fresh context, where V8 installs it.
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
let gc: Gc | undefined;
const LAST_RESORT = Number(process.versions.v8.split('.')[0]) >= 12;

/** Collect garbage now and give the heap's free pages back (tens of milliseconds on a heap of a few tens of MB). */
export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as Gc;
  }
  if (LAST_RESORT) gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  else gc();
}
