// `bulwark component`: the operator's hand on one component — pin it, unpin it, roll it back to a
// version the store keeps, or list what is kept. On a data directory a server (or agent) holds, the
// running process makes the change (so it never races an update) and hands it to its agents.
// The engine and the rest load when the command runs (see main.ts).
import { componentInfo, isValidVersion } from '../engine/components.js';
import type { ComponentChange, Engine } from '../engine/engine.js';
import { BulwarkError, BusyError, UsageError } from '../engine/errors.js';
import type { RunRecord } from '../engine/history.js';
import { readPins } from '../engine/pins.js';
import { cliActor } from './agents.js';
import { dataOption, existingDataDir, out, type Command } from './command.js';

/** The engine over a data directory, without changing its settings. */
async function engineOn(dataDir: string): Promise<Engine> {
  const [{ Engine }, { Settings }] = await Promise.all([import('../engine/engine.js'), import('../engine/settings.js')]);
  return new Engine({ dataDir, settings: Settings.openReadOnly(dataDir) });
}

async function change(dataDir: string, request: ComponentChange): Promise<RunRecord> {
  const engine = await engineOn(dataDir);
  const who = await cliActor();
  try {
    const before = engine.store.active(request.id)?.version;
    const record = await engine.withLock(() => engine.change(request));
    if (record.result === 'ok') {
      const after = record.components[0]?.version;
      const detail = request.action === 'rollback' ? `${before ?? 'none'} → ${after}` : request.action === 'pin' ? `at ${after}` : undefined;
      new (await import('../engine/audit.js')).AuditLog(dataDir).record(who, { action: request.action, target: request.id, ...(detail ? { detail } : {}), ...(request.reason ? { reason: request.reason } : {}) });
    }
    return record;
  } catch (error) {
    if (!(error instanceof BusyError)) throw error;
    // A server (or agent) holds the directory: it makes the change, between its updates (and audits it).
    const record = await (await import('../engine/control.js')).callControl<RunRecord>(dataDir, 'change', { ...request, who }).catch((refusal: unknown) => {
      throw refusal instanceof BulwarkError && refusal.code === 'ERR_USAGE' ? new UsageError(refusal.message) : refusal;
    });
    if (!record) throw error;
    return record;
  }
}

export const componentCommand: Command = {
  summary: 'pin, unpin or roll back a component, or list the versions kept',
  usage: `bulwark component pin ID --data DIR [--reason TEXT]
bulwark component unpin ID --data DIR
bulwark component rollback ID VERSION --data DIR [--reason TEXT]
bulwark component versions ID --data DIR

pin keeps a component at its active version through every update (scheduled, start-up, Update
Now) until unpin. rollback re-activates a version the store keeps (the last 15) — after checking it
against the vendor's signed metadata kept with it — and pins it there; on a server, its agents
follow. Each change is recorded in the history with its reason. Works while a server runs on DIR.

Options:
  --data DIR      data directory
  --reason TEXT   why (kept in the history)`,
  options: { ...dataOption, reason: { type: 'string' } },
  positionals: true,
  async run(values, positionals) {
    const [action, id, versionText, ...extra] = positionals;
    if (!id || extra.length || !['pin', 'unpin', 'rollback', 'versions'].includes(action ?? '')) throw new UsageError('use: bulwark component pin|unpin|rollback|versions ID [VERSION] --data DIR');
    const dataDir = existingDataDir(values);
    const reason = typeof values.reason === 'string' ? values.reason.slice(0, 200) : undefined;
    if (action === 'versions') {
      const engine = await engineOn(dataDir);
      const active = engine.store.active(id);
      const pin = readPins(dataDir)[id];
      out(`${componentInfo(id).name} (${id})${pin ? `, pinned at ${pin.version}: ${pin.reason}` : ''}`);
      for (const version of engine.store.versions(id).reverse()) {
        out(`  ${String(version).padStart(10)}  ${version === active?.version ? 'active' : '      '}  ${engine.evidence.has(id, version) ? 'signed metadata kept' : 'no signed metadata kept (cannot be rolled back to)'}`);
      }
      return 0;
    }
    let request: ComponentChange;
    if (action === 'rollback') {
      const version = Number(versionText);
      if (!isValidVersion(version)) throw new UsageError('rollback needs the version to return to, e.g. bulwark component rollback virus-pattern 175 --data DIR');
      request = { action, id, version, ...(reason ? { reason } : {}) };
    } else {
      if (versionText !== undefined) throw new UsageError(`${action} takes no version (it ${action === 'pin' ? 'pins the active one' : 'releases the pin'})`);
      request = { action: action as 'pin' | 'unpin', id, ...(reason ? { reason } : {}) };
    }
    const record = await change(dataDir, request);
    const done = record.components[0];
    out(`${id}: ${done?.reason ?? 'done'}${record.error ? ` — but ${record.error}` : ''}`);
    return record.result === 'ok' ? 0 : 1;
  },
};
