// Builds one server-made file in a worker thread: an incremental (patch-from) between two verified
// versions, or a compressed full file. In a worker so the agents' HTTP service never waits behind a
// compression, and so zstd's native memory goes back to the system when the worker ends.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { compressFull, createPatch } from '../engine/codec.js';
import { writeFileAtomic } from '../engine/files.js';

export type BuildJob =
  | { kind: 'patch'; base: string; target: string; out: string; level: number }
  | { kind: 'full'; target: string; out: string; level: number };

export interface BuildResult {
  sha256: string;
  length: number;
}

const job = workerData as BuildJob;
const target = fs.readFileSync(job.target);
const data = job.kind === 'patch' ? createPatch(fs.readFileSync(job.base), target, job.level) : compressFull(target, job.level);
writeFileAtomic(job.out, data);
parentPort!.postMessage({ sha256: crypto.createHash('sha256').update(data).digest('hex'), length: data.length } satisfies BuildResult);
