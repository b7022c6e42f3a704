// The demo's engine: where ClamAV is installed, the demo source also publishes a component of ClamAV
// custom signatures (clamav-demo-sigs), whose version N detects the demo's harmless sample files 1 to
// N (.hsb lines: SHA-256, size, name). The demo starts a clamd of its own under its folder (a local
// socket, its own database directory, in the foreground), wires its first agent to it with a consumers
// file (clamscan checks each version, clamdscan --reload makes clamd take it, a scan of the version's
// own sample says it did), and logs clamd's detections changing as versions arrive.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { findProgram } from '../engine/consumer-config.js';

export const DEMO_SIGNATURES = 'clamav-demo-sigs';
const CLAMD_CANDIDATES = ['/usr/sbin/clamd', '/usr/local/sbin/clamd'];
/** The first demo versions published at once; one more each time the demo source publishes. */
const FIRST_VERSIONS = 2;

/** clamd, or why the demo goes without it. */
export function findClamd(): { ok: true; clamd: string } | { ok: false; why: string } {
  const clamd = CLAMD_CANDIDATES.find((file) => fs.existsSync(file)) ?? (findProgram('clamd').ok ? 'clamd' : undefined);
  const missing = ['clamscan', 'clamdscan'].filter((program) => !findProgram(program).ok);
  if (!clamd || missing.length) return { ok: false, why: `ClamAV is not installed here (${[...(clamd ? [] : ['clamd']), ...missing].join(', ')} missing; apt-get install clamav clamav-daemon clamdscan)` };
  return { ok: true, clamd };
}

/** The demo's ClamAV folder: samples, clamd's configuration, socket and databases. */
function layout(demoDir: string) {
  const dir = path.join(demoDir, 'clamav');
  return {
    dir,
    samples: path.join(dir, 'samples'),
    db: path.join(dir, 'db'),
    conf: path.join(dir, 'clamd.conf'),
    socket: path.join(dir, 'clamd.sock'),
    log: path.join(dir, 'clamd.log'),
    empty: path.join(dir, 'empty'),
    consumers: path.join(dir, 'consumers.json'),
  };
}

/** Sample N: a harmless text file; its signature is its SHA-256 and size. */
function sample(demoDir: string, n: number): { file: string; signature: string } {
  const content = `Bulwark demo sample ${n}: a harmless file that the demo's ClamAV signatures ${n} and later detect.\n`;
  const file = path.join(layout(demoDir).samples, `demo-sample-${n}.txt`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
  return { file, signature: `${crypto.createHash('sha256').update(content).digest('hex')}:${Buffer.byteLength(content)}:Bulwark.Demo.Sample${n}` };
}

/** The demo signatures' versions in the source's input: version N detects samples 1 to N. */
export class DemoSignatures {
  private version = 0;

  constructor(
    private readonly demoDir: string,
    private readonly inputDir: string,
  ) {}

  /** The first versions, or those an earlier demo run wrote. */
  init(): void {
    const dir = path.join(this.inputDir, DEMO_SIGNATURES);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'component.json'), JSON.stringify({ name: 'ClamAV Demo Signatures', duplication: true }) + '\n');
    const existing = fs.readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number);
    const latest = existing.length ? Math.max(...existing) : FIRST_VERSIONS;
    while (this.version < latest) this.next();
  }

  /** The next version (one more sample detected); returns it. */
  next(): number {
    this.version++;
    const lines = Array.from({ length: this.version }, (_, i) => sample(this.demoDir, i + 1).signature);
    fs.writeFileSync(path.join(this.inputDir, DEMO_SIGNATURES, String(this.version)), lines.join('\n') + '\n');
    return this.version;
  }
}

/** The demo's clamd, and the consumers file that hands the demo signatures to it. */
export interface DemoClamd {
  consumersFile: string;
  /** After a run of the agent it serves: log what clamd detects now, if that changed. */
  detectionsChanged(): Promise<void>;
  stop(): Promise<void>;
}

/** Start the demo's clamd under `demoDir` (undefined, with the reason logged, where ClamAV is missing or clamd does not start). */
export async function startDemoClamd(demoDir: string, log: (line: string) => void): Promise<DemoClamd | undefined> {
  const found = findClamd();
  if (!found.ok) {
    log(`demo: ${found.why}: no engine to hand the ${DEMO_SIGNATURES} component to`);
    return undefined;
  }
  const where = layout(demoDir);
  fs.mkdirSync(where.db, { recursive: true });
  fs.mkdirSync(where.samples, { recursive: true });
  fs.writeFileSync(where.empty, '');
  // clamd needs one database to start: a placeholder of our own, beside the one the agent places.
  fs.writeFileSync(path.join(where.db, 'placeholder.hsb'), `${'0'.repeat(64)}:1:Bulwark.Demo.Placeholder\n`);
  fs.rmSync(where.socket, { force: true });
  // As root, clamd would switch to the clamav user, which cannot read the demo's folder: stay root.
  const user = process.getuid?.() === 0 ? ['User root'] : [];
  fs.writeFileSync(where.conf, [`LocalSocket ${where.socket}`, `DatabaseDirectory ${where.db}`, 'Foreground yes', `LogFile ${where.log}`, 'LogTime yes', ...user, ''].join('\n'));
  const child: ChildProcess = spawn(found.clamd, ['-c', where.conf], { stdio: 'ignore' });
  const started = await new Promise<boolean>((resolve) => {
    const deadline = Date.now() + 60_000;
    const poll = setInterval(() => {
      if (fs.existsSync(where.socket) || child.exitCode !== null || Date.now() > deadline) {
        clearInterval(poll);
        resolve(fs.existsSync(where.socket));
      }
    }, 100);
    child.once('error', () => undefined);
  });
  if (!started) {
    child.kill('SIGKILL');
    log(`demo: clamd did not start (see ${where.log}); the ${DEMO_SIGNATURES} component goes without an engine`);
    return undefined;
  }
  const clamdscan = (...args: string[]) => ['clamdscan', `--config-file=${where.conf}`, ...args];
  fs.writeFileSync(
    where.consumers,
    JSON.stringify(
      {
        [DEMO_SIGNATURES]: {
          engine: 'clamd',
          path: path.join(where.db, 'bulwark-demo.hsb'),
          check: ['clamscan', '--no-summary', '-d', '{file}', where.empty],
          reload: clamdscan('--reload'),
          // clamd takes the new database a moment after the reload: version N detects sample N, and no earlier version does.
          health: { command: clamdscan('--no-summary', path.join(where.samples, 'demo-sample-{version}.txt')), exitCodes: [1], timeoutSeconds: 30 },
        },
      },
      null,
      2,
    ) + '\n',
  );
  log(`demo: clamd runs on ${where.socket}; demo-agent-1 hands it the ${DEMO_SIGNATURES} component (${where.consumers})`);
  let detected: string | undefined;
  return {
    consumersFile: where.consumers,
    async detectionsChanged() {
      const files = fs.readdirSync(where.samples).filter((n) => n.endsWith('.txt'));
      const [program, ...args] = clamdscan('--no-summary', where.samples);
      // clamdscan exits 1 when it finds something: its output says what.
      const found = await new Promise<number[]>((resolve) =>
        execFile(program!, args, { timeout: 30_000 }, (_, stdout) => resolve([...String(stdout).matchAll(/: Bulwark\.Demo\.Sample(\d+)(?:\.UNOFFICIAL)? FOUND$/gm)].map((m) => Number(m[1])))),
      );
      const now = `${found.length} of ${files.length}`;
      if (now === detected) return;
      detected = now;
      log(`demo: clamd now detects ${now} demo samples${found.length ? ` (up to Bulwark.Demo.Sample${Math.max(...found)})` : ''}`);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    },
  };
}
