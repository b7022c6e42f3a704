// The tray tooltip carries the most pressing reminder (IPv4/IPv6, proxy) next to the engine state.
import { describe, expect, it } from 'vitest';
import { trayModel } from '../src-main/electron/tray-menu.js';

describe('reminders in the tooltip', () => {
  it('adds the most pressing reminder to the tooltip, within the Windows limit', () => {
    const model = trayModel({ type: 'idle' }, { startAtLogin: false, reminders: [{ title: 'This server has only IPv6; the update source only IPv4' }] });
    expect(model.tooltip).toContain('Up to date');
    expect(model.tooltip).toContain('This server has only IPv6; the update source only IPv4');
    expect(model.tooltip.length).toBeLessThanOrEqual(127);
  });

  it('shows no reminder line when there is none', () => {
    expect(trayModel({ type: 'idle' }, { startAtLogin: false, reminders: [] }).tooltip).toBe('Bulwark: Up to date');
  });
});
