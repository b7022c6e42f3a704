// `bulwark serve` with a short network poll, for the network-change tests (the CLI has no flag for
// the engine's networkPollMs):
//   node serve-engine.mjs DATA_DIR POLL_MS
// Hosts the compiled Engine on DATA_DIR with the source from that directory's settings, and prints
// one JSON line per thing that happens: {"event":"started"}, {"event":"network","kind",…} for each
// 'network' event, {"event":"run","result",…} for each update, {"event":"log","line"} for the
// engine's log, {"event":"stopped"} after SIGTERM/SIGINT (then exits 0).
import { Engine } from '../../out/main/engine/engine.js';
import { Settings } from '../../out/main/engine/settings.js';

const [dataDir, pollText] = process.argv.slice(2);
const networkPollMs = Number(pollText);
if (!dataDir || !(networkPollMs > 0)) {
  process.stderr.write('usage: serve-engine.mjs DATA_DIR POLL_MS\n');
  process.exit(2);
}
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, at: new Date().toISOString(), ...fields }) + '\n');

const settings = Settings.open(dataDir);
const engine = new Engine({ dataDir, settings, networkPollMs, log: (line) => emit('log', { line }) });
engine.on('network', (report) => emit('network', { kind: report.stack.kind, families: report.stack.families, checkedAt: report.checkedAt, source: report.source ?? null }));
engine.on('run', (record) => emit('run', { result: record.result, trigger: record.trigger, ...(record.error ? { error: record.error } : {}) }));

// The engine's own timers are unref'd (its host keeps the process alive): this one is the host's.
const keepAlive = setInterval(() => undefined, 60_000);
let stopping = false;
const stop = async (signal) => {
  if (stopping) return;
  stopping = true;
  emit('log', { line: `${signal} received` });
  try {
    await engine.stop();
  } finally {
    clearInterval(keepAlive);
    emit('stopped');
    process.exit(0);
  }
};
process.once('SIGTERM', () => void stop('SIGTERM'));
process.once('SIGINT', () => void stop('SIGINT'));

emit('started', { pid: process.pid, networkPollMs, source: settings.data.source.url });
void engine.start().catch((error) => emit('log', { line: `start-up update threw: ${error?.message ?? error}` }));
