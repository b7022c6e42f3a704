// Start at login on Linux: the XDG autostart entry, for real on disk in a temporary XDG_CONFIG_HOME,
// and the app keeping the setting and the system in agreement.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ipcChannel } from '../src-main/console/contract.js';
import { autostartFile, desktopEntry, isAutostartEnabled, quoteExecArgument, setAutostart, xdgConfigHome } from '../src-main/electron/autostart.js';
import { Settings } from '../src-main/engine/settings.js';
import { cleanUp, FakeDesktop, startOnFake, tempDir } from './helpers/fake-electron.js';

afterEach(cleanUp);

const COMMAND = ['/opt/Bulwark/bulwark', '--hidden'];

describe('XDG autostart entry (plain Node, real files)', () => {
  it('lives in $XDG_CONFIG_HOME/autostart, or ~/.config/autostart; a relative XDG_CONFIG_HOME is ignored', () => {
    expect(autostartFile({ XDG_CONFIG_HOME: '/x/config' }, '/home/u')).toBe(path.join('/x/config', 'autostart', 'bulwark.desktop'));
    expect(autostartFile({}, '/home/u')).toBe(path.join('/home/u', '.config', 'autostart', 'bulwark.desktop'));
    expect(xdgConfigHome({ XDG_CONFIG_HOME: 'relative/config' }, '/home/u')).toBe(path.join('/home/u', '.config'));
    expect(xdgConfigHome({ XDG_CONFIG_HOME: '' }, '/home/u')).toBe(path.join('/home/u', '.config'));
  });

  it('turning it on writes a valid entry (creating the directory); off removes it', () => {
    const file = autostartFile({ XDG_CONFIG_HOME: tempDir('bulwark-xdg-') });
    expect(isAutostartEnabled(file)).toBe(false);

    setAutostart(file, true, { command: COMMAND, icon: '/opt/Bulwark/resources/icon.png' });

    expect(isAutostartEnabled(file)).toBe(true);
    const text = fs.readFileSync(file, 'utf8');
    expect(text.split('\n')).toEqual([
      '[Desktop Entry]',
      'Type=Application',
      'Version=1.0',
      'Name=Bulwark',
      'Comment=Security update server in the system tray',
      'Exec=/opt/Bulwark/bulwark --hidden',
      'Icon=/opt/Bulwark/resources/icon.png',
      'Terminal=false',
      'Categories=Utility;Security;',
      'X-GNOME-Autostart-enabled=true',
      '',
    ]);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('644');
    // Atomic: written beside and renamed, no temporary file left behind.
    expect(fs.readdirSync(path.dirname(file))).toEqual(['bulwark.desktop']);

    setAutostart(file, false, { command: COMMAND });
    expect(fs.existsSync(file)).toBe(false);
    expect(isAutostartEnabled(file)).toBe(false);
    // Turning off what is already off is fine.
    setAutostart(file, false, { command: COMMAND });
  });

  it('replaces an existing entry as a whole', () => {
    const file = autostartFile({ XDG_CONFIG_HOME: tempDir('bulwark-xdg-') });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '[Desktop Entry]\nType=Application\nExec=/old/bulwark\nHidden=true\n');
    expect(isAutostartEnabled(file)).toBe(false);

    setAutostart(file, true, { command: COMMAND });

    expect(isAutostartEnabled(file)).toBe(true);
    expect(fs.readFileSync(file, 'utf8')).not.toContain('/old/bulwark');
  });

  it('counts an entry switched off by the desktop (Hidden, X-GNOME-Autostart-enabled) as off', () => {
    const file = path.join(tempDir('bulwark-xdg-'), 'bulwark.desktop');
    const write = (extra: string) => fs.writeFileSync(file, `${desktopEntry({ command: COMMAND }).replace('X-GNOME-Autostart-enabled=true\n', '')}${extra}`);
    write('');
    expect(isAutostartEnabled(file)).toBe(true);
    write('Hidden=true\n');
    expect(isAutostartEnabled(file)).toBe(false);
    write('X-GNOME-Autostart-enabled=false\n');
    expect(isAutostartEnabled(file)).toBe(false);
    // Keys of other groups do not count.
    write('[Desktop Action Other]\nHidden=true\n');
    expect(isAutostartEnabled(file)).toBe(true);
  });

  it('quotes Exec arguments as the Desktop Entry spec says', () => {
    expect(quoteExecArgument('/opt/Bulwark/bulwark')).toBe('/opt/Bulwark/bulwark');
    expect(quoteExecArgument('/home/a user/Bulwark.AppImage')).toBe('"/home/a user/Bulwark.AppImage"');
    expect(quoteExecArgument('/odd/"$name"')).toBe('"/odd/\\\\"\\\\$name\\\\""');
    expect(quoteExecArgument('100%')).toBe('100%%');
    expect(quoteExecArgument('')).toBe('""');
    expect(() => quoteExecArgument('a\nb')).toThrow(/line breaks/);
    expect(desktopEntry({ command: ['/home/a user/Bulwark.AppImage', '--hidden'] })).toContain('\nExec="/home/a user/Bulwark.AppImage" --hidden\n');
  });
});

describe('start at login in the app (Linux, real autostart entry)', () => {
  it('if the user removed the entry by hand, the setting follows the system at the next start', async () => {
    const userData = tempDir();
    const configHome = tempDir('bulwark-xdg-');
    const first = await startOnFake({ userData, configHome });
    first.desktop.tray.click('Start at Login');
    const entry = path.join(configHome, 'autostart', 'bulwark.desktop');
    expect(fs.existsSync(entry)).toBe(true);
    await first.app.startupRun;
    await first.desktop.quitAndWait();

    fs.rmSync(entry);
    const { app, desktop, logs } = await startOnFake({ desktop: new FakeDesktop(userData), userData, configHome });

    expect(app.settings.data.startAtLogin).toBe(false);
    expect(Settings.open(userData).data.startAtLogin).toBe(false);
    expect(desktop.tray.item('Start at Login')).toMatchObject({ checked: false });
    expect(logs).toContainEqual(expect.stringMatching(/start at login is off in .*bulwark\.desktop; the setting follows/));
  });

  it('an entry that exists turns the setting on at start', async () => {
    const configHome = tempDir('bulwark-xdg-');
    setAutostart(path.join(configHome, 'autostart', 'bulwark.desktop'), true, { command: COMMAND });
    const { app } = await startOnFake({ configHome });
    expect(app.settings.data.startAtLogin).toBe(true);
  });

  it('saving it from the console (IPC saveSettings) writes and removes the entry', async () => {
    const { desktop, configHome } = await startOnFake();
    const entry = path.join(configHome, 'autostart', 'bulwark.desktop');
    const save = (value: boolean) => desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('saveSettings'), { section: 'startAtLogin', value });

    expect(await save(true)).toMatchObject({ ok: true, settings: { startAtLogin: true } });
    expect(isAutostartEnabled(entry)).toBe(true);
    expect(desktop.tray.item('Start at Login')).toMatchObject({ checked: true });

    expect(await save(false)).toMatchObject({ ok: true, settings: { startAtLogin: false } });
    expect(fs.existsSync(entry)).toBe(false);
  });

  it('when the entry cannot be written, the setting stays off and the console is told why', async () => {
    const configHome = tempDir('bulwark-xdg-');
    // A file where the autostart directory should be: no entry can be written (even by root).
    fs.writeFileSync(path.join(configHome, 'autostart'), 'not a directory');
    const { desktop, app } = await startOnFake({ configHome });

    const result = await desktop.invokeFrom(desktop.windows[0]!, ipcChannel.method('saveSettings'), { section: 'startAtLogin', value: true });

    expect(result).toMatchObject({ ok: false, field: 'startAtLogin', message: expect.stringMatching(/cannot turn start at login on/) });
    expect(app.settings.data.startAtLogin).toBe(false);

    desktop.tray.click('Start at Login');
    expect(app.settings.data.startAtLogin).toBe(false);
    expect(desktop.errors).toEqual([{ title: 'Start at Login', message: expect.stringMatching(/cannot turn start at login on/) }]);
  });
});
