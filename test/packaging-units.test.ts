// The systemd units in assets/: what they must say (user, state directory, sandbox, restart, stop
// signal, where the agent's secrets come from), and `systemd-analyze verify` on copies whose
// ExecStart points at a file that exists here. systemd-analyze exits 0 on unknown or unparsable
// settings and only prints them, so its output is read.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/fixtures.js';

const UNITS = { serve: 'bulwark-server.service', agent: 'bulwark-agent.service' } as const;
/** Where the units start bulwark: the deb installs its command line there (see packaging-app.test.ts). */
const INSTALLED_BULWARK = '/usr/bin/bulwark';

const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
/** Said in the names of the tests that need systemd-analyze, so a skip gives its reason. */
const needsAnalyze = haveAnalyze ? '' : ' [skipped: systemd-analyze is not installed; on Debian it comes with the systemd package]';

/** A unit file's settings: section -> key -> values (a key may repeat), comments and blank lines dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    expect(eq, `not a setting: ${line}`).toBeGreaterThan(0);
    expect(current, `setting outside a section: ${line}`).toBeDefined();
    const key = line.slice(0, eq).trim();
    current!.set(key, [...(current!.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** `systemd-analyze verify` on a copy of `text`, named `name`; returns its exit code and output. */
function verify(name: string, text: string): { status: number | null; output: string } {
  const dir = tempDir('bulwark-units-');
  dirs.push(dir);
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The unit with ExecStart's program replaced by a file that exists here (verify checks that it does). */
function withRealBinary(text: string): string {
  const binary = path.join(ROOT, 'bin', 'bulwark.js');
  return text.replace(/^(ExecStart=[-@+!:]*)(\S+)/m, (_, prefix: string) => prefix + binary);
}

const complaint = /unknown|failed to parse|ignoring/i;

describe.each(Object.entries(UNITS))('the unit for bulwark %s (assets/%s)', (command, name) => {
  const text = fs.readFileSync(path.join(ROOT, 'assets', name), 'utf8');
  const unit = parseUnit(text);
  const service = unit.get('Service') ?? new Map<string, string[]>();
  const one = (key: string) => {
    const values = service.get(key);
    expect(values, `${key}= in [Service]`).toHaveLength(1);
    return values![0]!;
  };

  it(`starts the installed bulwark ${command}, stops it with SIGTERM and restarts it on failure`, () => {
    const exec = one('ExecStart').split(/\s+/);
    expect(exec[0]).toBe(INSTALLED_BULWARK);
    expect(exec[1]).toBe(command);
    expect(one('Type')).toBe('simple');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('Restart')).toBe('on-failure');
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
    expect(unit.get('Unit')?.get('After')).toEqual(['network-online.target']);
  });

  it('runs as an unprivileged user that writes only its state directory, which it passes as --data', () => {
    const user = service.get('User')?.[0];
    const dynamic = service.get('DynamicUser')?.[0] === 'yes';
    expect(dynamic || (user !== undefined && user !== 'root' && user !== '0'), `User=${user}`).toBe(true);
    const state = one('StateDirectory');
    expect(state).toMatch(/^bulwark(-agent)?$/);
    const exec = one('ExecStart').split(/\s+/);
    expect(exec[exec.indexOf('--data') + 1]).toBe(`/var/lib/${state}`);
    expect(one('ProtectSystem')).toBe('strict');
    expect(service.get('ReadWritePaths')).toBeUndefined();
    for (const key of ['NoNewPrivileges', 'PrivateTmp', 'ProtectHome', 'PrivateDevices', 'RestrictSUIDSGID', 'ProtectKernelTunables', 'ProtectControlGroups']) {
      expect(one(key), key).toBe('yes');
    }
    expect(one('CapabilityBoundingSet')).toBe('');
    // It must still listen and connect over IP.
    expect(one('RestrictAddressFamilies').split(/\s+/)).toEqual(expect.arrayContaining(['AF_INET', 'AF_INET6']));
    // V8's JIT needs memory that is writable and executable.
    expect(service.get('MemoryDenyWriteExecute')).toBeUndefined();
  });

  if (command === 'agent') {
    it('takes the server URL and the token from /etc/bulwark/agent.env, not from the unit, and keeps the token off the command line', () => {
      expect(one('EnvironmentFile')).toBe('/etc/bulwark/agent.env');
      const exec = one('ExecStart').split(/\s+/);
      expect(exec[exec.indexOf('--server') + 1]).toBe('${BULWARK_SERVER}');
      // `bulwark agent` reads BULWARK_TOKEN from its environment: no --token for `ps` to show.
      expect(exec).not.toContain('--token');
      expect(service.has('Environment')).toBe(false);
    });
  }

  it.skipIf(!haveAnalyze)(`passes systemd-analyze verify with no unknown, unparsable or ignored settings${needsAnalyze}`, () => {
    const result = verify(name, withRealBinary(text));
    expect(result.output.split('\n').filter((line) => complaint.test(line))).toEqual([]);
    expect(result.status, result.output).toBe(0);
  });
});

describe.skipIf(!haveAnalyze)(`systemd-analyze verify, as this test reads it${needsAnalyze}`, () => {
  it('reports a misspelt setting and a missing binary (so a clean run means something)', () => {
    const text = withRealBinary(fs.readFileSync(path.join(ROOT, 'assets', UNITS.serve), 'utf8'));
    const misspelt = verify(UNITS.serve, text.replace('NoNewPrivileges=', 'NoNewPrivilege='));
    expect(misspelt.output).toMatch(complaint);
    const missing = verify(UNITS.serve, text.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/bulwark'));
    expect(missing.status).not.toBe(0);
  });
});
