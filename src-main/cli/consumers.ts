// `bulwark consumers check`: validate a consumers file and try each check on the version this data
// directory holds active, without placing anything or touching the engines.
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../engine/errors.js';
import { consumersFlag } from './agents.js';
import { dataOption, out, required, type Command } from './command.js';

export const consumersCommand: Command = {
  summary: 'validate the consumers file and try each check on the active version',
  usage: `bulwark consumers check --data DIR [--consumers FILE] [--json]

Reads the consumers file (--consumers FILE, else DIR/consumers.json): for each component, the engine
that uses it on this machine, where its active version is placed and the commands that check, reload
and probe it (docs/consumers.md). Says what is wrong with the file, naming the entry; then runs each
check on a copy of the component's active version and says whether the engine loads it. Places
nothing, reloads nothing. Exits 0 when all pass, 1 when a check fails, 2 when the file is invalid.

Options:
  --data DIR         the data directory (an agent's or a server's)
  --consumers FILE   the consumers file to check instead of DIR/consumers.json
  --json             print the results as JSON`,
  options: { ...dataOption, consumers: { type: 'string' }, json: { type: 'boolean' } },
  positionals: true,
  async run(values, positionals) {
    const dataDir = path.resolve(required(values, 'data'));
    if (positionals.length !== 1 || positionals[0] !== 'check') throw new UsageError('use: bulwark consumers check --data DIR [--consumers FILE]');
    if (!fs.existsSync(dataDir)) throw new UsageError(`data directory ${dataDir} does not exist`);
    const file = await consumersFlag(dataDir, values.consumers);
    if (!file) throw new UsageError(`no consumers file: give --consumers FILE, or write ${path.join(dataDir, 'consumers.json')} (see docs/consumers.md)`);
    const [{ Consumers }, { loadConsumerConfig }, { ComponentStore }] = await Promise.all([
      import('../engine/consumers.js'),
      import('../engine/consumer-config.js'),
      import('../engine/store.js'),
    ]);
    const store = new ComponentStore(dataDir);
    const consumers = new Consumers(loadConsumerConfig(file), dataDir);
    const results = await consumers.checkActive((id) => {
      const active = store.active(id);
      return active && { version: active.version, file: active.path };
    });
    if (values.json) out(JSON.stringify({ file, consumers: results }));
    else {
      out(`${file}: valid, ${results.length} consumer${results.length === 1 ? '' : 's'}`);
      for (const r of results) out(`  ${r.ok ? 'ok    ' : 'FAILED'} ${r.id}${r.version !== null ? ` ${r.version}` : ''} (${r.engine}): ${r.message}`);
    }
    return results.every((r) => r.ok) ? 0 : 1;
  },
};
