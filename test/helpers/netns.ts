// Network namespaces for the address-family tests: a small lab of namespaces joined by veth pairs,
// each with the addresses it is given (and nothing else but loopback), per-namespace /etc/hosts
// (which `ip netns exec` bind-mounts over /etc/hosts), and processes started inside them with
// `ip netns exec NS …` — which execs in place, so each child's PID is the program's own and it is
// ended by that PID. Everything the lab creates is recorded as it is created and undone by
// destroy(), also on process exit if the test runner never got to afterAll.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment for child processes: this one's, without any proxy variables (tests set their own). */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of Object.keys(env)) {
    if (/^(https?|no|all)_proxy$/i.test(name) || name === 'BULWARK_PROXY_PASSWORD' || name === 'NODE_EXTRA_CA_CERTS') delete env[name];
  }
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) env[name] = value;
  return env;
}

/** Run argv (optionally inside namespace `ns`) to completion without blocking the event loop. */
export function runCommand(ns: string | undefined, argv: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<CommandResult> {
  const [command, ...args] = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? cleanEnv(), ...(options.cwd ? { cwd: options.cwd } : {}) });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      reject(new Error(`${argv.join(' ')}${ns ? ` (in ${ns})` : ''} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Whether this process can build namespaces: root, iproute2, and a kernel that lets it create one.
 * Tries for real (adds and deletes a probe namespace); the reason says why not.
 */
export function namespaceSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root (run the tests as root)' };
  const probe = `bw-${process.pid}-probe`;
  try {
    ip(['netns', 'add', probe]);
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? (error as Error).message).trim();
    return { ok: false, reason: `\`ip netns add\` failed: ${stderr || (error as Error).message}` };
  }
  try {
    ip(['netns', 'del', probe]);
  } catch {
    // best effort
  }
  return { ok: true };
}

/** A long-running process inside a namespace, its output so far, and a way to wait for a line. */
export class NsProcess {
  stdout = '';
  stderr = '';
  constructor(readonly child: ChildProcess, readonly label: string) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match) return match;
      if (!this.running) throw new Error(`${this.label} exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${pattern}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`${this.label}: no ${pattern} within ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

export class NetnsLab {
  /** Namespace names are `bw-<pid>-<short>`, so parallel runs never collide. */
  readonly prefix = `bw-${process.pid}-`;
  private readonly namespaces: string[] = [];
  private readonly processes = new Set<NsProcess>();
  private readonly onExit = () => this.destroySync();
  /** Set when this lab made /etc/netns itself (removed again when empty). */
  private madeEtcNetns = false;

  constructor() {
    process.once('exit', this.onExit);
  }

  /** Create a namespace with loopback up; returns its full name. */
  addNamespace(short: string): string {
    const name = this.prefix + short;
    ip(['netns', 'add', name]);
    this.namespaces.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair created directly inside the two namespaces (so no name ever exists on the host), both ends up. */
  link(nsA: string, devA: string, nsB: string, devB: string): void {
    ip(['link', 'add', 'name', devA, 'netns', nsA, 'type', 'veth', 'peer', 'name', devB, 'netns', nsB]);
    ip(['-n', nsA, 'link', 'set', devA, 'up']);
    ip(['-n', nsB, 'link', 'set', devB, 'up']);
  }

  /** Add an address (CIDR); IPv6 ones without duplicate address detection, so they are usable at once. */
  address(ns: string, dev: string, cidr: string): void {
    ip(['-n', ns, ...(cidr.includes(':') ? ['-6', 'addr', 'add', cidr, 'dev', dev, 'nodad'] : ['addr', 'add', cidr, 'dev', dev])]);
  }

  /** Turn IPv6 off on one interface of a namespace (no link-local address either). */
  disableIpv6(ns: string, dev: string): void {
    execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', `echo 1 > /proc/sys/net/ipv6/conf/${dev}/disable_ipv6`], { stdio: 'pipe' });
  }

  /** /etc/netns/<ns>/hosts: what /etc/hosts says inside the namespace. */
  hosts(ns: string, entries: Record<string, string[]>): void {
    const dir = path.join('/etc/netns', ns);
    if (!fs.existsSync('/etc/netns')) this.madeEtcNetns = true;
    fs.mkdirSync(dir, { recursive: true });
    const lines = ['127.0.0.1 localhost', '::1 localhost', ...Object.entries(entries).flatMap(([name, addresses]) => addresses.map((a) => `${a} ${name}`))];
    fs.writeFileSync(path.join(dir, 'hosts'), lines.join('\n') + '\n');
  }

  /** Addresses of the interfaces in a namespace, as `ip -brief addr` shows them. */
  addresses(ns: string): string {
    return ip(['-n', ns, '-brief', 'addr']);
  }

  /** Start a long-running process inside `ns`. */
  spawn(ns: string, argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; label?: string } = {}): NsProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? cleanEnv(), ...(options.cwd ? { cwd: options.cwd } : {}) });
    child.on('error', () => undefined);
    const proc = new NsProcess(child, options.label ?? `${argv.join(' ')} in ${ns}`);
    this.processes.add(proc);
    return proc;
  }

  run(ns: string, argv: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<CommandResult> {
    return runCommand(ns, argv, options);
  }

  /** End the lab's processes (by PID), delete its namespaces (and with them the veths) and /etc/netns files. */
  async destroy(): Promise<void> {
    for (const proc of this.processes) {
      if (proc.running) proc.child.kill('SIGTERM');
    }
    const deadline = Date.now() + 3000;
    while ([...this.processes].some((p) => p.running) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    this.destroySync();
    process.removeListener('exit', this.onExit);
  }

  private destroySync(): void {
    for (const proc of this.processes) {
      if (proc.running && proc.pid !== undefined) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    this.processes.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        ip(['netns', 'del', ns]);
      } catch {
        // already gone
      }
      fs.rmSync(path.join('/etc/netns', ns), { recursive: true, force: true });
    }
    if (this.madeEtcNetns) {
      try {
        fs.rmdirSync('/etc/netns');
      } catch {
        // not empty (another run's namespaces) or already gone
      }
    }
  }

  /** Namespaces this lab still holds (for asserting the cleanup). */
  get live(): string[] {
    return [...this.namespaces];
  }
}

/** Namespaces on this machine whose names start with `prefix`. */
export function namespacesWithPrefix(prefix: string): string[] {
  try {
    return ip(['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

/** Requests a source server logged since `from` (a length of its stdout). */
export function requestsSince(server: NsProcess, from: number): { address: string; path: string }[] {
  return server.stdout
    .slice(from)
    .split('\n')
    .map((l) => /^request (\S+) GET (\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ address: m[1]!, path: m[2]! }));
}
