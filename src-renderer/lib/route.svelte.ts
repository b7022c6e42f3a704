// The console's three views, addressed by the URL hash: "" (the overview), "#agents", and
// "#settings" or "#settings/<tab>" (the desktop app opens index.html#settings in its own window).

export type Route = { view: 'main' } | { view: 'agents' } | { view: 'settings'; tab: string | undefined };

export function parseHash(hash: string): Route {
  if (/^#?agents\/?$/.test(hash)) return { view: 'agents' };
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

  /** The overview's address: this page without a hash (for links; openMain() is what they do). */
  get mainHref(): string {
    const { pathname, search } = this.#win.location;
    return `${pathname}${search}`;
  }

  openSettings(tab?: string): void {
    this.#win.location.hash = tab ? `settings/${tab}` : 'settings';
  }

  openAgents(): void {
    this.#win.location.hash = 'agents';
  }

  openMain(): void {
    // Drop the hash without leaving a bare "#" behind, then tell the view. Should the history API
    // refuse (some file: URLs), an empty hash does the same job.
    try {
      this.#win.history.pushState(null, '', this.mainHref);
      this.route = { view: 'main' };
    } catch {
      this.#win.location.hash = '';
    }
  }

  /** Remember the settings tab in the address without adding history entries. */
  rememberTab(tab: string): void {
    try {
      this.#win.history.replaceState(this.#win.history.state, '', `${this.mainHref}#settings/${tab}`);
    } catch {
      // Only a convenience (a reload reopens the same tab): nothing to do if refused.
    }
  }
}
