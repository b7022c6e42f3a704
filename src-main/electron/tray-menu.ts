// The tray, as data: engine state + settings -> icon, tooltip and menu. Pure, so it is tested without
// Electron; the adapter turns the model into a Tray and a Menu, and menu clicks come back as actions.
import { componentInfo } from '../engine/components.js';
import type { EngineState } from '../engine/state.js';
import type { Headline } from '../engine/words.js';

/** Which icon the tray shows (assets/tray-<state>…, see tray-icons.ts). */
export type TrayIconState = 'idle' | 'updating' | 'failed';

/** What a menu item does when clicked. */
export type TrayAction = 'update-now' | 'open-console' | 'open-settings' | 'toggle-start-at-login' | 'quit';

export type TrayMenuItem =
  | { readonly type: 'normal'; readonly label: string; readonly enabled: boolean; readonly action?: TrayAction }
  | { readonly type: 'checkbox'; readonly label: string; readonly enabled: boolean; readonly checked: boolean; readonly action: TrayAction }
  | { readonly type: 'separator' };

export interface TrayModel {
  readonly icon: TrayIconState;
  readonly tooltip: string;
  readonly menu: readonly TrayMenuItem[];
}

/** Longest status line in the menu; a failure's reason can be a paragraph. */
const MAX_STATUS_CHARS = 80;
/** Windows cuts tray tooltips at 127 characters (NOTIFYICONDATA.szTip). */
const MAX_TOOLTIP_CHARS = 127;

export function truncate(text: string, max: number): string {
  const line = text.split('\n')[0]!.trim();
  return line.length <= max ? line : `${line.slice(0, max - 1).trimEnd()}…`;
}

export function trayIconState(state: EngineState): TrayIconState {
  if (state.type === 'idle') return 'idle';
  if (state.type === 'failed') return 'failed';
  return 'updating';
}

/** The menu's first line: what the engine is doing, in words. */
export function statusLine(state: EngineState): string {
  switch (state.type) {
    case 'idle':
      return 'Up to date';
    case 'checking':
      return 'Checking for updates…';
    case 'downloading':
    case 'applying':
      // The engine counts components from 0.
      return `Updating ${state.index + 1} of ${state.total}: ${componentInfo(state.component).name}`;
    case 'distributing':
      return 'Handing the components to the agents…';
    case 'failed':
      return truncate(`Failed: ${state.error}`, MAX_STATUS_CHARS);
  }
}

/** The agents line of the menu: how many are not current yet. */
export function agentsLine(agents: { total: number; current: number }): string {
  if (agents.total === 0) return 'No agents yet';
  const behind = agents.total - agents.current;
  if (behind === 0) return agents.total === 1 ? 'The agent is current' : `All ${agents.total} agents current`;
  return `${behind} of ${agents.total} agent${agents.total === 1 ? '' : 's'} outdated`;
}

export function trayModel(
  state: EngineState,
  options: {
    startAtLogin: boolean;
    reminders?: readonly { title: string }[];
    agents?: { total: number; current: number };
    /** The installation in one line (console/words.ts): server and fleet, worst first. */
    headline?: Headline;
  },
): TrayModel {
  const { headline } = options;
  // The icon follows the whole installation: a halted rollout or failing agents show as failed too.
  const icon = headline && trayIconState(state) === 'idle' && headline.tone === 'error' ? 'failed' : trayIconState(state);
  const status = headline ? truncate(headline.text, MAX_STATUS_CHARS) : statusLine(state);
  // The most pressing reminder (IPv4/IPv6, proxy...) rides along in the tooltip, where it is seen,
  // unless the headline already says what is wrong.
  const reminder = headline && headline.tone !== 'ok' && headline.tone !== 'busy' ? undefined : options.reminders?.[0];
  const head = `Bulwark: ${headline ? headline.text : state.type === 'failed' ? `Failed: ${state.error}` : status}`;
  return {
    icon,
    tooltip: reminder ? `${truncate(head, 60)}\n⚠ ${truncate(reminder.title, MAX_TOOLTIP_CHARS - 64)}` : truncate(head, MAX_TOOLTIP_CHARS),
    menu: [
      { type: 'normal', label: status, enabled: false },
      ...(options.agents ? [{ type: 'normal', label: agentsLine(options.agents), enabled: true, action: 'open-console' } as const] : []),
      // While an update runs, another request would only join it.
      { type: 'normal', label: 'Update Now', enabled: icon !== 'updating', action: 'update-now' },
      { type: 'normal', label: 'Open Console', enabled: true, action: 'open-console' },
      { type: 'normal', label: 'Settings…', enabled: true, action: 'open-settings' },
      { type: 'checkbox', label: 'Start at Login', enabled: true, checked: options.startAtLogin, action: 'toggle-start-at-login' },
      { type: 'separator' },
      { type: 'normal', label: 'Quit', enabled: true, action: 'quit' },
    ],
  };
}
