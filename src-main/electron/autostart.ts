// Start at login on Linux (and the other XDG desktops): an autostart entry
// $XDG_CONFIG_HOME/autostart/bulwark.desktop (XDG Autostart Specification), written atomically and
// removed when the user turns the option off. Plain Node, no Electron: tested for real on disk.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../engine/files.js';

export const AUTOSTART_FILE_NAME = 'bulwark.desktop';

/**
 * The user's XDG config directory: $XDG_CONFIG_HOME when it is set to an absolute path (the Base
 * Directory spec says to ignore a relative one), else ~/.config.
 */
export function xdgConfigHome(env: NodeJS.ProcessEnv = process.env, homeDir: string = os.homedir()): string {
  const configured = env.XDG_CONFIG_HOME;
  return configured && path.isAbsolute(configured) ? configured : path.join(homeDir, '.config');
}

export function autostartFile(env: NodeJS.ProcessEnv = process.env, homeDir: string = os.homedir()): string {
  return path.join(xdgConfigHome(env, homeDir), 'autostart', AUTOSTART_FILE_NAME);
}

/**
 * One argument of an Exec key (Desktop Entry Specification, "The Exec key"): quoted when it holds a
 * reserved character, with `"`, `` ` ``, `$` and `\` escaped inside the quotes, `%` doubled (field
 * codes), and then every backslash doubled again because the whole value is a string-type value.
 */
export function quoteExecArgument(argument: string): string {
  if (/[\r\n\0]/.test(argument)) throw new Error('an autostart command argument cannot contain line breaks or NUL');
  let quoted = argument;
  if (argument === '' || /[\s"'\\><~|&;$*?#()`]/.test(argument)) quoted = `"${argument.replace(/["`$\\]/g, '\\$&')}"`;
  return quoted.replace(/%/g, '%%').replace(/\\/g, '\\\\');
}

export interface DesktopEntryOptions {
  /** The command line: the executable and its arguments. */
  command: readonly string[];
  /** Absolute path of an icon file, if any. */
  icon?: string;
}

export function desktopEntry({ command, icon }: DesktopEntryOptions): string {
  if (command.length === 0) throw new Error('an autostart entry needs a command');
  const lines = [
    '[Desktop Entry]',
    'Type=Application',
    'Version=1.0',
    'Name=Bulwark',
    'Comment=Security update server in the system tray',
    `Exec=${command.map(quoteExecArgument).join(' ')}`,
    ...(icon && !/[\r\n]/.test(icon) ? [`Icon=${icon}`] : []),
    'Terminal=false',
    'Categories=Utility;Security;',
    'X-GNOME-Autostart-enabled=true',
  ];
  return lines.join('\n') + '\n';
}

/** The value of `key` in the [Desktop Entry] group, if present. */
function entryValue(text: string, key: string): string | undefined {
  let inMainGroup = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('[')) inMainGroup = line === '[Desktop Entry]';
    else if (inMainGroup) {
      const match = /^([A-Za-z0-9-]+)\s*=\s*(.*)$/.exec(line);
      if (match && match[1] === key) return match[2];
    }
  }
  return undefined;
}

/**
 * Whether the session will start Bulwark at login: the entry exists and is not switched off the
 * ways desktops switch entries off (Hidden=true; GNOME's X-GNOME-Autostart-enabled=false).
 */
export function isAutostartEnabled(file: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    // No entry, or no autostart directory (ENOTDIR: a file stands where it should be).
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw error;
  }
  if (entryValue(text, 'Hidden') === 'true') return false;
  if (entryValue(text, 'X-GNOME-Autostart-enabled') === 'false') return false;
  return entryValue(text, 'Exec') !== undefined;
}

/** Turn start at login on (write the entry atomically) or off (remove it). */
export function setAutostart(file: string, enabled: boolean, entry: DesktopEntryOptions): void {
  if (!enabled) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, desktopEntry(entry));
}
