// A real clamd for the consumer tests, started by the test with its own configuration: a local socket
// and a database directory in a temporary folder, in the foreground, as this user. It needs one database
// to start: a placeholder hash signature of our own (no download). One per test file, shared by its
// scenarios (each places its own database file beside the placeholder and scans its own samples).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { until } from './cli.js';
import { tempDir } from './fixtures.js';

export const CLAMD = '/usr/sbin/clamd';

export function haveClamav(): boolean {
  return fs.existsSync(CLAMD) && ['clamscan', 'clamdscan'].every((p) => (process.env.PATH ?? '').split(':').some((d) => fs.existsSync(path.join(d, p))));
}

export class Clamd {
  readonly dir = tempDir('bulwark-clamd-');
  readonly dbDir = path.join(this.dir, 'db');
  readonly conf = path.join(this.dir, 'clamd.conf');
  readonly socket = path.join(this.dir, 'clamd.sock');
  readonly log = path.join(this.dir, 'clamd.log');
  /** An empty regular file, for `clamscan -d DB EMPTY` checks. */
  readonly empty = path.join(this.dir, 'empty');
  private child: ChildProcess | undefined;

  async start(): Promise<this> {
    fs.mkdirSync(this.dbDir);
    fs.chmodSync(this.dir, 0o755);
    fs.writeFileSync(this.empty, '');
    fs.writeFileSync(path.join(this.dbDir, 'placeholder.hsb'), `${'0'.repeat(64)}:1:Bulwark.Placeholder\n`);
    fs.writeFileSync(
      this.conf,
      // As root, clamd would switch to the clamav user, who cannot read the test's folders: stay root.
      [`LocalSocket ${this.socket}`, `DatabaseDirectory ${this.dbDir}`, 'Foreground yes', `LogFile ${this.log}`, 'LogTime yes', ...(process.getuid?.() === 0 ? ['User root'] : []), ''].join('\n'),
    );
    this.child = spawn(CLAMD, ['-c', this.conf], { stdio: 'ignore' });
    await until(() => fs.existsSync(this.socket), 60_000, 'clamd to listen on its socket');
    return this;
  }

  /** `clamdscan` against this clamd: the signature names it finds in `file` (empty: clean). */
  async scan(file: string): Promise<string[]> {
    const { stdout } = await run('clamdscan', [`--config-file=${this.conf}`, '--no-summary', file]);
    return [...stdout.matchAll(/: (\S+) FOUND$/gm)].map((m) => m[1]!.replace(/\.UNOFFICIAL$/, ''));
  }

  /** Wait until clamd detects exactly `names` in `file` (a reload takes a moment). */
  async waitForDetection(file: string, names: string[], timeoutMs = 20_000): Promise<void> {
    let last: string[] = [];
    await until(async () => {
      last = await this.scan(file);
      return JSON.stringify(last) === JSON.stringify(names);
    }, timeoutMs, `clamd to find ${JSON.stringify(names)} in ${path.basename(file)} (it finds ${JSON.stringify(last)})`);
  }

  /** Lines clamd logged since `from` (a length of the log read before). */
  logSince(from: number): string {
    return fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8').slice(from) : '';
  }

  logLength(): number {
    return fs.existsSync(this.log) ? fs.statSync(this.log).size : 0;
  }

  /** The consumer entry the tests and docs/consumers.md use for a ClamAV signature database placed at `dbFile`. */
  consumer(dbFile: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      engine: 'clamd',
      path: dbFile,
      check: ['clamscan', '--no-summary', '-d', '{file}', this.empty],
      reload: ['clamdscan', `--config-file=${this.conf}`, '--reload'],
      ...extra,
    };
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A sample file and the .hsb line that detects it as `name`. */
export function sample(dir: string, name: string): { file: string; signature: string } {
  const file = path.join(dir, `${name}.sample`);
  const content = `bulwark consumer sample ${name} ${crypto.randomBytes(8).toString('hex')}\n`;
  fs.writeFileSync(file, content);
  return { file, signature: `${crypto.createHash('sha256').update(content).digest('hex')}:${Buffer.byteLength(content)}:${name}` };
}

function run(command: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 30_000 }, (error, stdout) => resolve({ code: error ? Number((error as NodeJS.ErrnoException).code ?? 1) : 0, stdout }));
  });
}
