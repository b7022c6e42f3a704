// The console's two views, addressed by the URL hash: "" (main) and "#settings" or
// "#settings/<tab>" (the desktop app opens index.html#settings in its own window).

export type Route = { view: 'main' } | { view: 'settings'; tab: string | undefined };

export function parseHash(hash: string): Route {
  const match = /^#?settings(?:\/([a-z-]+))?$/.exec(hash);
  return match ? { view: 'settings', tab: match[1] } : { view: 'main' };
}

export class Router {
  route = $state<Route>({ view: 'main' });
  readonly #win: Window;

  constructor(win: Window = window) {
    this.#win = win;
    this.route = parseHash(win.location.hash);
    const sync = () => (this.route = parseHash(win.location.hash));
    win.addEventListener('hashchange', sync);
    win.addEventListener('popstate', sync);
  }

  openSettings(tab?: string): void {
    this.#win.location.hash = tab ? `settings/${tab}` : 'settings';
  }

  openMain(): void {
    // Drop the hash without leaving a bare "#" behind, then tell the view. Should the history API
    // refuse (some file: URLs), an empty hash does the same job.
    const { pathname, search } = this.#win.location;
    try {
      this.#win.history.pushState(null, '', `${pathname}${search}`);
      this.route = { view: 'main' };
    } catch {
      this.#win.location.hash = '';
    }
  }

  /** Remember the settings tab in the address without adding history entries. */
  rememberTab(tab: string): void {
    const { pathname, search } = this.#win.location;
    try {
      this.#win.history.replaceState(this.#win.history.state, '', `${pathname}${search}#settings/${tab}`);
    } catch {
      // Only a convenience (a reload reopens the same tab): nothing to do if refused.
    }
  }
}
