// The agent's reading of its server's advisory index (GET /agents/v1/index.json): which signed files
// the server holds and which versions it can make incrementals from. Unsigned, so it only chooses
// among ways to the signed latest version; it never decides what is installed (update-run.ts checks
// every result against the signed catalogue). A server that holds an older version than the
// catalogue's latest has not finished its own update yet: the agent waits for it.
import type { CatalogueComponent } from '../engine/catalogue.js';
import { HttpStatusError, SourceError } from '../engine/errors.js';
import type { HttpFetcher } from '../engine/fetcher.js';
import type { ServerOffers } from '../engine/update-run.js';
import { AGENT_LIMITS, AGENT_PATHS, evidencePath, isReleaseIndex, madePath, type IndexComponent, type KeptEvidence } from '../protocol/agent-protocol.js';

export async function loadOffers(server: string, fetcher: HttpFetcher): Promise<ServerOffers> {
  const bytes = await fetcher.downloadBytes(new URL(AGENT_PATHS.index, server).href, AGENT_LIMITS.indexBytes);
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new SourceError("the server's index is not JSON", { cause });
  }
  if (!isReleaseIndex(data)) throw new SourceError("the server's index is malformed");
  const byId = new Map<string, IndexComponent>(data.components.map((c) => [c.id, c]));
  /** The server's entry for a component, if it holds the catalogue's latest version of it. */
  const latest = (entry: CatalogueComponent) => {
    const held = byId.get(entry.id);
    return held && held.version === entry.latest && held.sha256 === entry.full.sha256 ? held : undefined;
  };
  const made = (id: string, name: string) => new URL(madePath(id, name), server).href;
  return {
    holdsLatest: (entry) => latest(entry) !== undefined,
    hasSigned: (target) => {
      const id = target.split('/')[0]!;
      return byId.get(id)?.signed.includes(target) ?? false;
    },
    incremental: (entry, installed) => {
      const held = latest(entry);
      const base = held?.bases.find((b) => b.version === installed.version && b.sha256 === installed.sha256);
      return held && base ? made(entry.id, `${installed.sha256}-${entry.full.sha256}.patch`) : undefined;
    },
    full: (entry) => (latest(entry) ? made(entry.id, `${entry.full.sha256}.zst`) : undefined),
    // Full files the server makes: of its current version (a rollback there makes it current), and of
    // the last release that passed its rollout (for held agents); others are not made (404).
    fullOf: (id, sha256) => {
      const held = byId.get(id);
      return held && (held.sha256 === sha256 || held.bases.some((b) => b.sha256 === sha256)) ? made(id, `${sha256}.zst`) : undefined;
    },
    // Only bytes to check: update-run.ts verifies them against this agent's own trusted root.
    evidence: async (id, version) => {
      let bytes: Buffer;
      try {
        bytes = await fetcher.downloadBytes(new URL(evidencePath(id, version), server).href, AGENT_LIMITS.evidenceBytes);
      } catch (error) {
        // The fetcher's HTTP errors are tuf-js's DownloadHTTPError, with an HttpStatusError as the cause.
        if ((error as { cause?: unknown }).cause instanceof HttpStatusError && ((error as { cause: HttpStatusError }).cause.status === 404)) return undefined;
        throw error;
      }
      const kept = safeJson(bytes) as Partial<Record<keyof KeptEvidence, unknown>> | undefined;
      if (typeof kept?.targets !== 'string' || typeof kept.catalogue !== 'string') throw new SourceError(`the server's signed metadata for ${id} ${version} is malformed`);
      return { targets: Buffer.from(kept.targets, 'utf8'), catalogue: Buffer.from(kept.catalogue, 'utf8') };
    },
  };
}

function safeJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}
