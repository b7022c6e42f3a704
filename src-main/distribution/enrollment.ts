// The join string new agents enroll with (protocol: formatJoinString): a ring's enrollment token and
// the SHA-256 of the vendor's root.json the server trusts — the file its update source was set up
// with, which the server also hands out at GET /agents/v1/root.json.
import fs from 'node:fs';
import { sha256 } from '../engine/files.js';
import { formatJoinString, type Ring } from '../protocol/agent-protocol.js';
import type { AgentRegistry } from './registry.js';

export interface JoinInfo {
  ring: Ring;
  token: string;
  /** Absent while the server has no trusted root (no update source set): then agents need --trusted-root. */
  join?: string;
  rootSha256?: string;
}

/** The server's trusted root.json (the settings' source.trustedRoot), if there is one and it can be read. */
export function readTrustedRoot(file: string): Buffer | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** The join string of `ring` (its token made on first use, or replaced first with `rotate`). */
export async function joinInfo(registry: AgentRegistry, root: Buffer | undefined, ring: Ring, rotate = false): Promise<JoinInfo> {
  const token = rotate ? await registry.rotateToken(ring) : await registry.enrollmentToken(ring);
  if (!root) return { ring, token };
  const rootSha256 = sha256(root);
  return { ring, token, join: formatJoinString(token, rootSha256), rootSha256 };
}
