// Pinned components (DATA/pins.json): a pinned component stays at its version through every update —
// scheduled, start-up or on demand — until it is unpinned. A rollback pins the version it returns to.
import fs from 'node:fs';
import path from 'node:path';
import { COMPONENT_ID_PATTERN, isValidVersion } from './components.js';
import { writeFileAtomic } from './files.js';

export interface Pin {
  version: number;
  /** When, and why (for the history and the console): "rolled back from 177", "pinned by the operator". */
  at: string;
  reason: string;
}

export type Pins = Record<string, Pin>;

export function pinsFile(dataDir: string): string {
  return path.join(dataDir, 'pins.json');
}

/** The pins in a data directory; entries that do not make sense are ignored (and so unpinned). */
export function readPins(dataDir: string): Pins {
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(pinsFile(dataDir), 'utf8'));
  } catch {
    return {};
  }
  const pins: Pins = {};
  if (!data || typeof data !== 'object' || Array.isArray(data)) return pins;
  for (const [id, pin] of Object.entries(data as Record<string, Partial<Pin>>)) {
    if (COMPONENT_ID_PATTERN.test(id) && isValidVersion(pin?.version) && typeof pin.at === 'string' && typeof pin.reason === 'string') {
      pins[id] = { version: pin.version, at: pin.at, reason: pin.reason };
    }
  }
  return pins;
}

export function writePins(dataDir: string, pins: Pins): void {
  writeFileAtomic(pinsFile(dataDir), JSON.stringify(pins, null, 1) + '\n');
}
