// Real HTTP proxies for the network tests: squid (optionally with Basic auth through basic_ncsa_auth
// and an htpasswd file) and tinyproxy (optionally with BasicAuth). Each runs in the foreground from
// its own config file in its own directory (pid file, logs, no cache on disk), on the addresses it
// is given — loopback, or inside a network namespace via `ip netns exec`. Every process started
// here is remembered by PID, with the children it spawned (squid's helpers, its pinger if any), so
// stop() and stopAllProxies() end exactly those and nothing else.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface ProxyAuth {
  username: string;
  password: string;
}

export interface ProxyOptions {
  /** Working directory for the config, pid file and logs (created; emptied of nothing). */
  dir: string;
  /** Addresses to listen on (IPv6 without brackets). All share `port`. */
  hosts: string[];
  port: number;
  auth?: ProxyAuth;
  /** Run inside this network namespace (`ip netns exec NAME …`). */
  netns?: string;
  /**
   * squid only: allow CONNECT to these ports alone, as Debian's stock squid.conf does
   * (`http_access deny CONNECT !SSL_ports`). By default any port may be tunnelled.
   */
  connectPorts?: number[];
}

export interface RunningProxy {
  kind: 'squid' | 'tinyproxy';
  pid: number;
  port: number;
  hosts: string[];
  dir: string;
  /** `http://HOST:PORT` for the first listening address. */
  url: string;
  /** Requests as the proxy logged them (squid's access.log; tinyproxy's "Request" lines). */
  accessLog(): string;
  /** Everything the proxy wrote about itself (cache.log / tinyproxy's log). */
  log(): string;
  stop(): Promise<void>;
}

const running = new Set<RunningProxy>();

export function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export const SQUID_AUTH_HELPER = ['/usr/lib/squid/basic_ncsa_auth', '/usr/lib64/squid/basic_ncsa_auth'].find((p) => fs.existsSync(p));

/** A loopback TCP port that was free a moment ago. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Direct children of `pid` (from /proc), e.g. squid's auth helpers and pinger. */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may contain spaces and parentheses, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function descendantsOf(pid: number): number[] {
  const all: number[] = [];
  for (const child of childrenOf(pid)) all.push(child, ...descendantsOf(child));
  return all;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still "exists"; count it as gone.
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function waitFor(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function launch(command: string, args: string[], options: ProxyOptions, outputFile: string): ChildProcess {
  const fd = fs.openSync(outputFile, 'a');
  const argv = options.netns ? ['netns', 'exec', options.netns, command, ...args] : args;
  // `ip netns exec` execs the command in place, so the child's PID is the proxy's own.
  const child = spawn(options.netns ? 'ip' : command, argv, { stdio: ['ignore', fd, fd], cwd: options.dir, env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  fs.closeSync(fd);
  child.on('error', () => undefined);
  return child;
}

function track(kind: RunningProxy['kind'], child: ChildProcess, options: ProxyOptions, files: { access: () => string; log: () => string }, cleanup: () => void): RunningProxy {
  const pid = child.pid!;
  let helpers: number[] = [];
  const proxy: RunningProxy = {
    kind,
    pid,
    port: options.port,
    hosts: options.hosts,
    dir: options.dir,
    url: `http://${bracket(options.hosts[0]!)}:${options.port}`,
    accessLog: files.access,
    log: files.log,
    async stop() {
      running.delete(proxy);
      // Note the helpers first: once squid is gone they are re-parented and can no longer be found.
      helpers = [...new Set([...helpers, ...descendantsOf(pid)])];
      kill(pid, 'SIGTERM');
      await waitFor(() => !alive(pid), 5000, () => `${kind} ${pid} still running`).catch(() => kill(pid, 'SIGKILL'));
      for (const helper of [...helpers, ...helpers.flatMap(descendantsOf)]) kill(helper, 'SIGKILL');
      cleanup();
    },
  };
  // Remember squid's helpers (auth, pinger) as they appear, for stop() to end them by PID.
  const watch = setInterval(() => {
    if (!alive(pid)) return clearInterval(watch);
    helpers = [...new Set([...helpers, ...descendantsOf(pid)])];
  }, 200);
  watch.unref();
  running.add(proxy);
  return proxy;
}

/** Write an htpasswd line with an APR1 (MD5) hash made by `openssl passwd -apr1`. */
export function htpasswdLine(auth: ProxyAuth): string {
  const hash = execFileSync('openssl', ['passwd', '-apr1', '-stdin'], { input: auth.password + '\n', encoding: 'utf8' }).trim();
  return `${auth.username}:${hash}\n`;
}

function proxyUid(): { uid: number; gid: number } | undefined {
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('proxy:'));
    if (!line) return undefined;
    const [, , uid, gid] = line.split(':');
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/**
 * squid in the foreground (-N) with its own config and service name (-n, which also names its
 * shared-memory segments), no disk cache, no pinger, logs in `dir`.
 */
export async function startSquid(options: ProxyOptions): Promise<RunningProxy> {
  fs.mkdirSync(options.dir, { recursive: true });
  const service = `bw${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
  const file = (name: string) => path.join(options.dir, name);
  const lines = [
    ...options.hosts.map((h) => `http_port ${bracket(h)}:${options.port}`),
    `pid_filename ${file('squid.pid')}`,
    `cache_log ${file('cache.log')}`,
    `access_log stdio:${file('access.log')}`,
    'buffered_logs off',
    'cache_store_log none',
    'logfile_rotate 0',
    `coredump_dir ${options.dir}`,
    'cache deny all',
    'cache_mem 8 MB',
    'pinger_enable off',
    'netdb_filename none',
    'visible_hostname bulwark-test-proxy',
    // Names come from /etc/hosts (a namespace's own, under ip netns exec); DNS, if ever asked,
    // goes to loopback only.
    'hosts_file /etc/hosts',
    'dns_nameservers 127.0.0.1',
    'dns_timeout 2 seconds',
    'connect_timeout 5 seconds',
    'shutdown_lifetime 0 seconds',
    'forwarded_for delete',
    'via off',
  ];
  if (options.connectPorts) {
    lines.push(`acl SSL_ports port ${options.connectPorts.join(' ')}`, 'acl CONNECT method CONNECT', 'http_access deny CONNECT !SSL_ports');
  }
  if (options.auth) {
    if (!SQUID_AUTH_HELPER) throw new Error('squid basic_ncsa_auth helper not found');
    fs.writeFileSync(file('htpasswd'), htpasswdLine(options.auth));
    lines.push(
      `auth_param basic program ${SQUID_AUTH_HELPER} ${file('htpasswd')}`,
      'auth_param basic children 2 startup=1 idle=1',
      'auth_param basic realm bulwark-test',
      'auth_param basic credentialsttl 1 second',
      'acl authenticated proxy_auth REQUIRED',
      'http_access allow authenticated',
      'http_access deny all',
    );
  } else {
    lines.push('http_access allow all');
  }
  fs.writeFileSync(file('squid.conf'), lines.join('\n') + '\n');
  // squid drops to the "proxy" user: let it write its logs and read its config and password file.
  const owner = process.getuid?.() === 0 ? proxyUid() : undefined;
  fs.chmodSync(options.dir, 0o755);
  // …which needs to get there: let others traverse (not list) the temporary directories above it.
  for (let p = path.dirname(path.resolve(options.dir)); p.startsWith(os.tmpdir() + path.sep); p = path.dirname(p)) {
    const mode = fs.statSync(p).mode & 0o777;
    if (!(mode & 0o001)) fs.chmodSync(p, mode | 0o001);
  }
  if (owner) for (const name of fs.readdirSync(options.dir)) fs.chownSync(file(name), owner.uid, owner.gid);
  if (owner) fs.chownSync(options.dir, owner.uid, owner.gid);
  const child = launch('squid', ['-N', '-d1', '-f', file('squid.conf'), '-n', service], options, file('squid.out'));
  const proxy = track(
    'squid',
    child,
    options,
    { access: () => read(file('access.log')), log: () => read(file('cache.log')) + read(file('squid.out')) },
    () => {
      for (const name of fs.existsSync('/dev/shm') ? fs.readdirSync('/dev/shm') : []) {
        if (name.startsWith(`${service}-`)) fs.rmSync(path.join('/dev/shm', name), { force: true });
      }
    },
  );
  try {
    const listening = () => (read(file('cache.log')).match(/Accepting HTTP Socket connections/g) ?? []).length >= options.hosts.length;
    await waitFor(() => listening() || child.exitCode !== null, 15_000, () => `squid did not start:\n${proxy.log()}`);
    if (!listening()) throw new Error(`squid exited (${child.exitCode}):\n${proxy.log()}`);
  } catch (error) {
    await proxy.stop();
    throw error;
  }
  return proxy;
}

/** tinyproxy in the foreground (-d) with its own config; its log is its output. */
export async function startTinyproxy(options: ProxyOptions): Promise<RunningProxy> {
  fs.mkdirSync(options.dir, { recursive: true });
  const file = (name: string) => path.join(options.dir, name);
  if (options.hosts.length !== 1) throw new Error('tinyproxy: one listen address');
  const lines = [
    `Port ${options.port}`,
    `Listen ${options.hosts[0]}`,
    'Timeout 30',
    `PidFile "${file('tinyproxy.pid')}"`,
    'LogLevel Info',
    'MaxClients 20',
    'DisableViaHeader Yes',
    ...(options.auth ? [`BasicAuth ${options.auth.username} ${options.auth.password}`] : []),
  ];
  fs.writeFileSync(file('tinyproxy.conf'), lines.join('\n') + '\n');
  const child = launch('tinyproxy', ['-d', '-c', file('tinyproxy.conf')], options, file('tinyproxy.log'));
  const log = () => read(file('tinyproxy.log'));
  const proxy = track(
    'tinyproxy',
    child,
    options,
    {
      access: () =>
        log()
          .split('\n')
          .filter((l) => /Request \(file descriptor \d+\):/.test(l))
          .join('\n'),
      log,
    },
    () => undefined,
  );
  try {
    await waitFor(() => /Accepting connections/.test(log()) || child.exitCode !== null, 10_000, () => `tinyproxy did not start:\n${log()}`);
    if (!/Accepting connections/.test(log())) throw new Error(`tinyproxy exited (${child.exitCode}):\n${log()}`);
  } catch (error) {
    await proxy.stop();
    throw error;
  }
  return proxy;
}

/** Stop every proxy started by this process that is still running (for afterAll). */
export async function stopAllProxies(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

export interface LaggingRelay {
  port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay on 127.0.0.1 in front of `target` that passes every byte at once but each close by
 * the target `delayMs` late — what a loaded machine or a slow network does to a proxy that closes
 * its connections after each response. Used to make the race on such connections certain.
 */
export async function startLaggingRelay(target: { host: string; port: number }, delayMs: number): Promise<LaggingRelay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => client.write(d));
    client.on('end', () => upstream.end());
    upstream.on('close', () => setTimeout(() => client.destroy(), delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
