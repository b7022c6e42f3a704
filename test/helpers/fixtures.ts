// Shared test fixtures: temporary directories, a published update source served over real HTTP on
// loopback, and pattern series to feed it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PatternSeries } from '../../src-main/demo/patterns.js';
import { listen, staticHandler, type RequestHandler, type RunningServer } from '../../src-main/demo/static-server.js';
import type { FullCodec } from '../../src-main/engine/codec.js';
import { publish, type PublishResult } from '../../src-main/publisher/publisher.js';

export function tempDir(prefix = 'bulwark-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Test-speed zstd level; the codec is the same at every level. */
export const TEST_LEVEL = 3;

/**
 * A publisher's workspace plus an HTTP server on 127.0.0.1 serving its output. `intercept` lets a
 * test answer some requests itself (a 404, a truncated file, a stall) before the static handler.
 */
export class TestSource {
  readonly input: string;
  readonly out: string;
  readonly keys: string;
  readonly series = new Map<string, PatternSeries>();
  server!: RunningServer;
  intercept: ((req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => boolean) | undefined;
  /** Paths requested, in order (for asserting what was or was not downloaded). */
  readonly requests: string[] = [];
  /**
   * Full files as zstd frames, the suite's tests name them <version>.zst; codec.test.ts and
   * publisher.test.ts publish with every codec.
   */
  fullCodecs: readonly FullCodec[] = ['zstd'];

  constructor(readonly dir: string = tempDir('bulwark-source-')) {
    this.input = path.join(dir, 'input');
    this.out = path.join(dir, 'out');
    this.keys = path.join(dir, 'keys');
  }

  get url(): string {
    return this.server.url;
  }

  get rootFile(): string {
    return path.join(this.out, 'root.json');
  }

  async start(): Promise<this> {
    const serveFile = staticHandler(this.out);
    this.server = await listen((req, res) => {
      this.requests.push(req.url ?? '');
      if (this.intercept?.(req, res)) return;
      serveFile(req, res);
    });
    return this;
  }

  /** Add a version of a pattern component (a fresh series starts at `firstVersion`). */
  addPattern(id: string, opts: { firstVersion?: number; bytes?: number; seed?: number } = {}): number {
    let series = this.series.get(id);
    let content: Buffer;
    if (!series) {
      series = new PatternSeries(id, opts.firstVersion ?? 171, opts.bytes ?? 200_000, opts.seed ?? 7);
      this.series.set(id, series);
      content = series.content();
    } else {
      content = series.next();
    }
    this.writeVersion(id, series.version, content);
    return series.version;
  }

  writeVersion(id: string, version: number, content: Buffer | string): void {
    fs.mkdirSync(path.join(this.input, id), { recursive: true });
    fs.writeFileSync(path.join(this.input, id, String(version)), content);
  }

  removeVersion(id: string, version: number): void {
    fs.rmSync(path.join(this.input, id, String(version)));
  }

  publish(): PublishResult {
    return publish({ input: this.input, out: this.out, keys: this.keys, level: TEST_LEVEL, fullCodecs: this.fullCodecs });
  }

  /** The on-disk file (hashed name) of a published target, e.g. "virus-pattern/v_173.175". */
  targetFile(target: string): string {
    const dir = path.join(this.out, 'targets', path.posix.dirname(target));
    const name = fs.readdirSync(dir).find((n) => n.endsWith(`.${path.posix.basename(target)}`) && /^[0-9a-f]{64}\./.test(n));
    if (!name) throw new Error(`no published file for ${target}`);
    return path.join(dir, name);
  }

  async stop(): Promise<void> {
    await this.server?.close();
  }
}
