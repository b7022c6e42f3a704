// The shell's security rules, as pure functions and constants, so they are tested without Electron:
// who may use the console API over IPC, and the Content-Security-Policy every response carries.
/**
 * The policy set as a response header on every request of the default session (the page's own
 * <meta> policy applies as well; a browser enforces both). Only files shipped with the app load: no
 * inline script or style, no eval, no plugins, no <base>, and no one may frame the console.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Who sent an IPC message, as Electron tells it (IpcMainInvokeEvent.sender and .senderFrame). */
export interface IpcSenderInfo {
  /** The sending WebContents' id. */
  readonly senderId: number;
  /** URL of the sending frame; null when the frame is gone (navigated away, destroyed). */
  readonly frameUrl: string | null;
  /** The frame is its page's top frame (not an iframe). */
  readonly isMainFrame: boolean;
}

/** A file: URL reduced to host and decoded path, so two spellings of one file compare equal; undefined if not file:. */
function fileKey(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'file:' || parsed.search !== '') return undefined;
  // An encoded separator would make the decoded path name a different file.
  if (/%2f|%5c|%00/i.test(parsed.pathname)) return undefined;
  let file: string;
  try {
    file = decodeURIComponent(parsed.pathname);
  } catch {
    return undefined;
  }
  const host = parsed.hostname === 'localhost' ? '' : parsed.hostname.toLowerCase();
  // Windows paths (file:///C:/…, file://server/share/…) name files case-insensitively.
  const windows = /^\/[A-Za-z]:\//.test(file) || host !== '';
  return `${host}|${windows ? file.toLowerCase() : file}`;
}

/**
 * The URL is the app's own page: file: scheme, the same file, any fragment (index.html#settings is
 * the settings window), no query. Fails closed on anything unparseable.
 */
export function isAppPageUrl(url: string | null | undefined, appPageUrl: string): boolean {
  if (!url) return false;
  const page = fileKey(appPageUrl);
  return page !== undefined && fileKey(url) === page;
}

/**
 * Whether an IPC message may reach the console API: it comes from one of the app's own windows
 * (its WebContents id is one of ours), from that window's top frame, showing the app's own page.
 */
export function isTrustedSender(sender: IpcSenderInfo, trustedWebContentsIds: Iterable<number>, appPageUrl: string): boolean {
  const trusted = new Set(trustedWebContentsIds);
  return trusted.has(sender.senderId) && sender.isMainFrame && isAppPageUrl(sender.frameUrl, appPageUrl);
}

/** A sender for the log. */
export function describeSender(sender: IpcSenderInfo): string {
  const frame = sender.frameUrl === null ? 'no frame' : `${sender.isMainFrame ? 'main frame' : 'subframe'} ${sender.frameUrl}`;
  return `webContents ${sender.senderId} (${frame})`;
}
