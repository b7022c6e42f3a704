// The console contract over Electron IPC, main-process side: one `handle` per method that answers
// through ConsoleService, and the service's events sent to the app's own windows. Every call's sender
// is checked first; a stranger's call is refused (the renderer's promise rejects) and logged.
import { CONSOLE_METHODS, ipcChannel } from '../console/contract.js';
import type { ConsoleService } from '../console/service.js';
import type { DesktopAdapter, WindowHandle } from './adapter.js';
import { describeSender, isAppPageUrl, isTrustedSender } from './security.js';

export interface ConsoleIpcOptions {
  /** The app's windows (console, settings) that may talk to the console API. */
  windows: () => Iterable<WindowHandle>;
  /** file: URL of the renderer's index.html. */
  appPageUrl: string;
  log: (line: string) => void;
}

export class UntrustedSenderError extends Error {
  constructor(channel: string) {
    super(`refused ${channel}: the caller is not a Bulwark window`);
    this.name = 'UntrustedSenderError';
  }
}

function liveWindows(windows: Iterable<WindowHandle>): WindowHandle[] {
  return [...windows].filter((window) => !window.isDestroyed());
}

/** Register the handlers and start forwarding events; returns a function that stops forwarding. */
export function serveConsoleOverIpc(adapter: DesktopAdapter, service: ConsoleService, options: ConsoleIpcOptions): () => void {
  const { appPageUrl, log } = options;
  for (const method of CONSOLE_METHODS) {
    const channel = ipcChannel.method(method);
    adapter.handle(channel, async (sender, args) => {
      const trustedIds = liveWindows(options.windows()).map((window) => window.webContentsId);
      if (!isTrustedSender(sender, trustedIds, appPageUrl)) {
        log(`refused IPC ${channel} from an untrusted sender: ${describeSender(sender)}`);
        throw new UntrustedSenderError(channel);
      }
      // The contract has one parameter per call; anything else is not our renderer talking.
      if (args.length > 1) throw new Error(`${channel} takes one argument, got ${args.length}`);
      return service.call(method, args[0]);
    });
  }

  return service.on((event, payload) => {
    const channel = ipcChannel.event(event);
    // Only to our own windows, and only while they show our page.
    for (const window of liveWindows(options.windows())) {
      if (isAppPageUrl(window.url(), appPageUrl)) window.send(channel, payload);
    }
  });
}
