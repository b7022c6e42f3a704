// Shared set-up for the browser console's end-to-end tests: a real signed update source on
// 127.0.0.1 (TestSource), a temporary data directory, and a real `bulwark serve --console` child
// process pointed at both. Each test gets its own of each, so no test sees another's state.
// Every server serves its agents on loopback at a free port (--agents-listen 127.0.0.1:0): tests run
// side by side and none may take the default agent port on every address. The `agentsListen` option
// changes that address ("off" serves no agents).
//
//   test('…', async ({ page, bulwark, source }) => { await openConsole(page, bulwark); … });
//   test('…', async ({ bulwark, agents }) => { const a = await agents.start('alpha'); … });
//
// Options (test.use): `withSource: false` starts the server without --source/--trusted-root;
// `schedule` replaces the default (a daily time 11-12 hours away, so no scheduled update starts
// during a test); `serveArgs` adds flags.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test as base, type Locator, type Page } from '@playwright/test';
import { staticHandler } from '../../src-main/demo/static-server.js';
import { CliProcess, runCli, type CliResult } from '../helpers/cli.js';
import { tempDir, TestSource } from '../helpers/fixtures.js';

export { expect };

/** What every test's source publishes before the server starts: id → first version (and how many). */
export const PUBLISHED = {
  'virus-pattern': { first: 1871, versions: 2 },
  'spyware-pattern': { first: 2741, versions: 1 },
  'scan-engine': { first: 2150, versions: 1 },
  'outbreak-defense-policy': { first: 305, versions: 1 },
} as const;

export type ComponentId = keyof typeof PUBLISHED;

/** Display names, as the engine's component list gives them. */
export const NAMES: Record<ComponentId, string> = {
  'virus-pattern': 'Virus Pattern',
  'spyware-pattern': 'Spyware Pattern',
  'scan-engine': 'Scan Engine',
  'outbreak-defense-policy': 'Outbreak Defense Policy',
};

/** Small files keep publishing and updating fast; the codec and the protocol are the same at any size. */
const PATTERN_BYTES = 150_000;

/** Holds (see holdRequests) not yet released: released before the server is stopped. */
const holds = new Set<() => void>();

export const SCREENSHOTS = fileURLToPath(new URL('../../docs/screenshots', import.meta.url));

export interface Bulwark {
  dataDir: string;
  /** The URL the server printed, token included. */
  url: string;
  /** Where agents connect, as the server logged it (http://127.0.0.1:PORT/); "" when it serves none. */
  agentsUrl: string;
  origin: string;
  token: string;
  process: CliProcess;
  /**
   * Stop the server (if running) and start it again on the same address and data directory; it
   * prints a new token. Updates url, token, agentsUrl (a new free port) and process; the old token
   * no longer works.
   */
  restart(): Promise<void>;
  /** `bulwark <args…>` as a separate process (the data directory is not added). */
  cli(args: string[]): Promise<CliResult>;
  /** The settings file's bytes (to show that a refused change wrote nothing). */
  settingsFile(): string;
  /** `bulwark settings --data D get [key]`, parsed. */
  settings(key?: string): Promise<unknown>;
  /** `bulwark status --data D --json`, parsed. */
  status(): Promise<StatusJson>;
}

export interface StatusJson {
  components: { id: string; name: string; version: number; method: string }[];
  nextUpdate: string | null;
  schedule: string;
  reminders: { id: string; title: string }[];
}

/**
 * A daily schedule whose next run is 11 to 12 hours away, at `minute` past the hour: no scheduled
 * update can start in the middle of a test and change what it looks at.
 */
export function farDailySchedule(minute = 0): string {
  const hour = (new Date().getHours() + 12) % 24;
  return `daily ${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`;
}

interface Options {
  withSource: boolean;
  /** --schedule for the server (a daily time far from now unless a test says otherwise). */
  schedule: string;
  serveArgs: string[];
  /** --agents-listen for the server: 127.0.0.1:0 unless a test says otherwise ("off": no agents). */
  agentsListen: string;
}

/** A real `bulwark agent` child process with its own temporary data directory. */
export interface AgentProcess {
  name: string;
  dataDir: string;
  process: CliProcess;
  /** Resolves when the process has exited and its output is read. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** `bulwark status --data <its data> --json`, parsed: what it holds. */
  status(): Promise<StatusJson>;
}

/** How to start an agent besides its name: its token, its rollout ring, a data directory to use, more flags. */
export interface AgentOptions {
  /** The join string (the server's current one of `ring` unless given). */
  token?: string;
  /** The rollout ring whose join string it enrolls with (broad unless given): the token decides the ring. */
  ring?: 'canary' | 'early' | 'broad';
  /** The agent's data directory, made beforehand (to put something in it first); a new temporary one unless given. */
  dataDir?: string;
  /** More flags for `bulwark agent`. */
  args?: string[];
}

export interface Agents {
  /** `bulwark agents token --data <server's data>` (with --ring and --rotate if asked): the join string, its last line. */
  token(options?: { rotate?: boolean; ring?: 'canary' | 'early' | 'broad' }): Promise<string>;
  /**
   * `bulwark agent --server <bulwark.agentsUrl> --token T --data <temp> --name NAME`, resolved once it
   * runs (enrolled, start-up update done). The token is the server's current one unless given (as
   * the second argument, or in the options with the ring and more flags).
   */
  start(name: string, options?: string | AgentOptions): Promise<AgentProcess>;
  /** The same, without waiting for anything: for an agent expected to be refused. */
  spawn(name: string, token: string, options?: Omit<AgentOptions, 'token'>): AgentProcess;
}

interface Fixtures {
  source: TestSource;
  bulwark: Bulwark;
  /** Agents of the test's server, stopped (by PID) and their data removed after the test. */
  agents: Agents;
  /** Uncaught exceptions, console errors and warnings of the page: a test fails on any it did not allow. */
  browserErrors: { allow(pattern: RegExp): void };
}

export const test = base.extend<Fixtures & Options>({
  withSource: [true, { option: true }],
  schedule: [farDailySchedule(), { option: true }],
  serveArgs: [[], { option: true }],
  agentsListen: ['127.0.0.1:0', { option: true }],

  // Every screenshot and assertion at the size and theme the README shows.
  viewport: async ({}, use) => use({ width: 1280, height: 800 }),
  colorScheme: async ({}, use) => use('light'),
  locale: async ({}, use) => use('en-US'),

  browserErrors: [
    // Set up after the server and so checked before it stops: a page still open then, polling a
    // server that is gone, logs ERR_CONNECTION_REFUSED, which is the teardown's and not the test's.
    async ({ page, bulwark }, use) => {
      void bulwark;
      const errors: string[] = [];
      const allowed: RegExp[] = [];
      page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') errors.push(`console.${message.type()}: ${message.text()}`);
      });
      await use({ allow: (pattern) => allowed.push(pattern) });
      expect(errors.filter((error) => !allowed.some((pattern) => pattern.test(error)))).toEqual([]);
    },
    { auto: true },
  ],

  source: async ({}, use) => {
    const source = await new TestSource().start();
    let seed = 11;
    for (const [id, { first, versions }] of Object.entries(PUBLISHED)) {
      source.addPattern(id, { firstVersion: first, bytes: PATTERN_BYTES, seed: seed++ });
      for (let i = 1; i < versions; i++) source.addPattern(id);
    }
    source.publish();
    await use(source);
    source.intercept = undefined;
    await source.stop();
    fs.rmSync(source.dir, { recursive: true, force: true });
  },

  bulwark: async ({ source, withSource, schedule, serveArgs, agentsListen }, use, testInfo) => {
    const dataDir = tempDir('bulwark-e2e-data-');
    const args = (listen: string) => [
      'serve', '--console', '--listen', listen, '--data', dataDir, '--schedule', schedule, '--agents-listen', agentsListen,
      ...(withSource ? ['--source', source.url, '--trusted-root', source.rootFile] : []),
      ...serveArgs,
    ];
    const children: CliProcess[] = [];
    const start = async (listen: string) => {
      const child = new CliProcess(args(listen));
      children.push(child);
      // Serving agents, or saying why it cannot (the console shows that too); nothing when turned off.
      const [, agentsUrl = ''] = agentsListen === 'off' ? [] : await child.waitFor(/ (?:serving agents at (http:\/\/[^\s,]+)|cannot serve agents on )/, 20_000);
      const [, url] = await child.waitFor(/^Console: (http:\/\/\S+)$/m, 20_000);
      // The start-up update has finished (successfully or not) once the next run is announced.
      await child.waitFor(/next update at /, 30_000);
      return { child, url: new URL(url!), agentsUrl };
    };
    const json = async (more: string[]) => {
      const result = await runCli(more);
      if (result.code !== 0) throw new Error(`bulwark ${more.join(' ')} exited ${result.code}: ${result.stderr}`);
      return JSON.parse(result.stdout) as unknown;
    };
    try {
      const first = await start('127.0.0.1:0');
      const bulwark: Bulwark = {
        dataDir,
        url: first.url.href,
        agentsUrl: first.agentsUrl,
        origin: first.url.origin,
        token: first.url.searchParams.get('token')!,
        process: first.child,
        async restart() {
          if (bulwark.process.running) await bulwark.process.stop('SIGTERM');
          const next = await start(new URL(bulwark.origin).host);
          Object.assign(bulwark, { url: next.url.href, agentsUrl: next.agentsUrl, token: next.url.searchParams.get('token')!, process: next.child });
        },
        cli: (more) => runCli(more),
        settingsFile: () => fs.readFileSync(path.join(dataDir, 'settings.json'), 'utf8'),
        settings: (key) => json(['settings', '--data', dataDir, 'get', ...(key ? [key] : [])]),
        status: async () => (await json(['status', '--data', dataDir, '--json'])) as StatusJson,
      };
      await use(bulwark);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        for (const [i, child] of children.entries()) {
          printOutput(`server${children.length > 1 ? ` (start ${i + 1})` : ''}`, child);
        }
      }
      // A download a failed test left on hold would keep the server from stopping.
      for (const release of holds) release();
      // By PID: SIGTERM first (the server stops after the update in progress), SIGKILL if it hangs.
      for (const child of children) {
        if (!child.running) continue;
        await child.stop('SIGTERM', 10_000).catch(() => {
          if (child.running) process.kill(child.pid, 'SIGKILL');
        });
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  },

  agents: async ({ bulwark }, use, testInfo) => {
    const started: AgentProcess[] = [];
    const token = async ({ rotate = false, ring }: { rotate?: boolean; ring?: string } = {}) => {
      const result = await runCli(['agents', 'token', '--data', bulwark.dataDir, ...(ring ? ['--ring', ring] : []), ...(rotate ? ['--rotate'] : [])]);
      const join = result.stdout.split('\n').filter((line) => line.trim()).at(-1)?.trim();
      if (result.code !== 0 || !join) throw new Error(`bulwark agents token exited ${result.code}: ${result.stdout}${result.stderr}`);
      return join;
    };
    const spawn = (name: string, enrollment: string, options: Omit<AgentOptions, 'token'> = {}): AgentProcess => {
      const dataDir = options.dataDir ?? tempDir(`bulwark-e2e-agent-${name}-`);
      const child = new CliProcess([
        'agent', '--server', bulwark.agentsUrl, '--token', enrollment, '--data', dataDir, '--name', name,
        ...(options.args ?? []),
      ]);
      // Listened for at once: the process cannot have closed before this turn of the event loop ends.
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.child.once('close', (code, signal) => resolve({ code, signal })),
      );
      const status = async () => {
        const result = await runCli(['status', '--data', dataDir, '--json']);
        if (result.code !== 0) throw new Error(`bulwark status --data ${dataDir} exited ${result.code}: ${result.stderr}`);
        return JSON.parse(result.stdout) as StatusJson;
      };
      const agent = { name, dataDir, process: child, exited, status };
      started.push(agent);
      return agent;
    };
    try {
      await use({
        token,
        spawn,
        async start(name, options = {}) {
          const { token: enrollment, ...rest } = typeof options === 'string' ? { token: options } : options;
          const agent = spawn(name, enrollment ?? (await token(rest.ring ? { ring: rest.ring } : {})), rest);
          await agent.process.waitFor(/ agent running in /, 30_000);
          return agent;
        },
      });
    } finally {
      // A failed test keeps what each agent said: the console shows only the server's side of it.
      if (testInfo.status !== testInfo.expectedStatus) {
        for (const { name, process: child } of started) {
          printOutput(`agent ${name}`, child);
        }
      }
      for (const { process: child, dataDir } of started) {
        if (child.running) {
          await child.stop('SIGTERM', 10_000).catch(() => {
            if (child.running) process.kill(child.pid, 'SIGKILL');
          });
        }
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    }
  },
});

/** A failed test's process output, whole, in the run's log (CI keeps only that; an attachment shows a few lines). */
function printOutput(what: string, child: CliProcess): void {
  console.log(`--- ${what}: stdout ---\n${child.stdout}${child.stderr ? `--- ${what}: stderr ---\n${child.stderr}` : ''}--- ${what}: end ---`);
}

/** Open the console the way a user does (the printed URL) and wait until it shows the snapshot. */
export async function openConsole(page: Page, bulwark: Bulwark, hash = ''): Promise<void> {
  await page.goto(bulwark.url + hash);
  // The server swapped the token for a cookie and redirected: the address no longer carries it.
  await expect(page).toHaveURL(`${bulwark.origin}/${hash}`);
  if (hash.startsWith('#settings')) await expect(page.getByRole('heading', { name: 'Settings', level: 1 })).toBeVisible();
  else if (hash === '#agents') await expect(page.getByRole('heading', { name: 'Agents', level: 1 })).toBeVisible();
  else await expect(page.getByTestId('engine-state')).toBeVisible();
}

/**
 * Hold the source's requests whose path matches `pattern` until release(): makes a download take
 * as long as the test needs to look at its progress, without guessing at timings.
 */
export function holdRequests(source: TestSource, pattern: RegExp) {
  const serve = staticHandler(source.out);
  const held: (() => void)[] = [];
  let released = false;
  source.intercept = (req, res) => {
    if (released || !pattern.test(req.url ?? '')) return false;
    held.push(() => serve(req, res));
    return true;
  };
  const release = () => {
    released = true;
    holds.delete(release);
    if (source.intercept) source.intercept = undefined;
    for (const resume of held.splice(0)) resume();
  };
  holds.add(release);
  return {
    /** Requests waiting now. */
    get count() {
      return held.length;
    },
    release,
  };
}

/**
 * A screenshot for the README: the viewport (1280×800), into docs/screenshots/, once `ready` (if
 * given) is visible. The page is reloaded first, so the "just now"s are computed afresh (see the
 * clock bug in the e2e report) and the picture shows exactly what a newly opened console shows;
 * `prepare` then does what the picture is to show beyond that (open a dialog, say).
 */
export async function screenshot(page: Page, name: string, ready?: Locator, prepare?: () => Promise<void>): Promise<void> {
  await page.reload();
  await expect(page.locator('#view-heading')).toBeAttached();
  // Views that load more after the snapshot (the agents) say what shows they are done.
  if (ready) await expect(ready).toBeVisible();
  await page.mouse.move(0, 0);
  // What the picture shows beyond the newly opened page (a dialog opened, say).
  await prepare?.();
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  // Nothing blinking or half-drawn: no caret, animations finished.
  await page.screenshot({ path: path.join(SCREENSHOTS, name), animations: 'disabled', caret: 'hide' });
}
