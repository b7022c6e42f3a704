// Child process for the crash tests: runs one update from the compiled engine and kills itself
// with SIGKILL at the Nth file-system commit point (rename or whole-file write), before or after
// performing it. Usage: node crash-update.mjs DATA URL ROOT N before|after
import fs from 'node:fs';
import { Engine } from '../../out/main/engine/engine.js';
import { Settings } from '../../out/main/engine/settings.js';

const [dataDir, url, trustedRoot, nth, when] = process.argv.slice(2);
let calls = 0;
for (const name of ['renameSync', 'writeFileSync']) {
  const original = fs[name];
  fs[name] = function (...args) {
    calls++;
    if (calls === Number(nth) && when === 'before') process.kill(process.pid, 'SIGKILL');
    const result = original.apply(this, args);
    if (calls === Number(nth) && when === 'after') process.kill(process.pid, 'SIGKILL');
    return result;
  };
}
const engine = new Engine({ dataDir, settings: Settings.open(dataDir), source: { url, trustedRoot } });
const run = await engine.runOnce();
process.stdout.write(JSON.stringify({ result: run.result, calls }) + '\n');
