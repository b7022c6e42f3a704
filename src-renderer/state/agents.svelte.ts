// The Agents view's state: the query (filter text, state, sort), the page of agents the server
// answered, the "Update agents now" request, the enrollment token, the rollout's buttons (promote,
// halt, resume) and moving agents between rings. It is the only thing that calls the agents
// methods; the components read it and call its methods.
//
// - The page is loaded while the view watches it (watch(), from the view's $effect). Whatever
//   happens meanwhile ('agents' and 'run' events, a reconnect) only marks it stale, so the overview
//   costs the server nothing; the next watch() loads it again.
// - While watched, it is loaded again on every 'agents' event (an agent enrolled, reported,
//   connected or went away), on 'run' events (a new release changes who is current) and after the
//   browser console reconnects (events sent while it was down are lost). Loads are coalesced like
//   ConsoleState's: a burst of events costs one or two loads, never one per event.
// - A change of the query loads at once; the filter text waits until typing pauses (~200 ms).
// - The page's summary carries the rollout: it is loaded again on 'changed' events about the rollout
//   (the server's own promotions and halts too), the pins and the agent settings. A rollout button
//   shows the server's answer at once.
// - A ring move shows at once once the server has taken it: the server reads its agents again a
//   moment after a move, and a page answered before that would still show the old ring. The move
//   is kept over such pages (for a few seconds, until a page agrees) and the page is loaded again.
import type { AgentDetailsView, AgentSort, AgentsPage, AgentsQuery, AgentStateView, ConsoleApi, EnrollmentView, RingView, RolloutView } from '../../src-main/console/contract.js';
import type { ConnectionMonitor } from '../api/connection.js';
import { errorMessage } from '../api/errors.js';
import type { LoadStatus } from './console.svelte.js';

/** The state filter as the console offers it: '' is every state ('outdated' includes the notified agents, as the counts do). */
export type AgentStateFilter = AgentStateView | '';

export type AgentsUpdateRequest = { kind: 'idle' } | { kind: 'sending' } | { kind: 'asked'; asked: number } | { kind: 'failed'; message: string };

/** How new agents of the chosen ring enroll, as last fetched (the view decides whether to show it). */
export type TokenStatus = { kind: 'unknown' } | { kind: 'loading' } | { kind: 'loaded'; enrollment: EnrollmentView } | { kind: 'failed'; message: string };

export type RotateStatus = { kind: 'idle' } | { kind: 'sending' } | { kind: 'rotated' } | { kind: 'failed'; message: string };

export type RolloutAction = 'promote' | 'halt' | 'resume';

/** The last rollout button pressed: being sent, done (with the rollout as the server answered), or refused. */
export type RolloutRequest =
  | { kind: 'idle' }
  | { kind: 'sending'; action: RolloutAction }
  | { kind: 'done'; action: RolloutAction; rollout: RolloutView }
  | { kind: 'failed'; action: RolloutAction; message: string };

/** The last ring move: which agent (by name, as the table shows it), to which ring, from which (for an undo), and how it went. */
export type RingMove =
  | { kind: 'idle' }
  | { kind: 'sending'; id: string; name: string; ring: RingView; undo?: boolean }
  | { kind: 'moved'; id: string; name: string; ring: RingView; from: RingView; undo?: boolean }
  | { kind: 'failed'; id: string; name: string; ring: RingView; message: string };

/** One agent's details, as the panel shows them. */
export type AgentDetailsStatus =
  | { kind: 'closed' }
  | { kind: 'loading'; id: string; name: string }
  | { kind: 'loaded'; agent: AgentDetailsView }
  | { kind: 'gone'; id: string; name: string }
  | { kind: 'failed'; id: string; name: string; message: string };

/** The last action on one agent from its panel: update it now, or forget it. */
export type AgentAction =
  | { kind: 'idle' }
  | { kind: 'sending'; action: 'update' | 'forget'; id: string; name: string }
  | { kind: 'done'; action: 'update' | 'forget'; id: string; name: string; asked?: boolean }
  | { kind: 'failed'; action: 'update' | 'forget'; id: string; name: string; message: string };

/** 'changed' reasons that change the rollout card (the rollout itself, pins, the agent settings). */
const ROLLOUT_REASONS = /^(?:rollout|pins|settings\.distribution)/;

/** How long a ring move the server took is shown over pages that do not show it yet. */
const MOVE_GRACE_MS = 5_000;
/** The server reads its agents again this soon after a move (its settle time, and a margin). */
const MOVE_RELOAD_MS = 700;

/** How long typing must pause before the filter text is sent. */
export const FILTER_DEBOUNCE_MS = 200;
/** Rows asked for: the view says "showing N of M" when more agents match. */
export const PAGE_LIMIT = 500;

export class AgentsState {
  /** The filter text as typed (bound to the input); the query takes it once typing pauses. */
  filterText = $state('');
  stateFilter = $state<AgentStateFilter>('');
  sort = $state<AgentSort>('state');
  descending = $state(false);

  /** The last page the server sent (null until the first one arrives). */
  page = $state.raw<AgentsPage | null>(null);
  status = $state<LoadStatus>('loading');
  loadError = $state<string | null>(null);
  updateRequest = $state.raw<AgentsUpdateRequest>({ kind: 'idle' });
  token = $state.raw<TokenStatus>({ kind: 'unknown' });
  /** The ring new agents are to enroll into (each ring has its own token). */
  tokenRing = $state<RingView>('broad');
  rotation = $state.raw<RotateStatus>({ kind: 'idle' });
  rolloutRequest = $state.raw<RolloutRequest>({ kind: 'idle' });
  ringMove = $state.raw<RingMove>({ kind: 'idle' });
  details = $state.raw<AgentDetailsStatus>({ kind: 'closed' });
  agentAction = $state.raw<AgentAction>({ kind: 'idle' });

  /** The filter text the query uses now (filterText, once typing has paused). */
  #filter = $state('');
  readonly filtered = $derived(this.#filter.trim() !== '' || this.stateFilter !== '');

  readonly #api: ConsoleApi;
  readonly #connection: ConnectionMonitor;
  readonly #limit: number;
  #watchers = 0;
  #stale = true;
  #loading: Promise<void> | undefined;
  #loadAgain = false;
  #filterTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ring moves the server took, by agent id, until a page shows them (or the grace runs out). */
  readonly #moves = new Map<string, { ring: RingView; until: number }>();
  #moveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(api: ConsoleApi, connection: ConnectionMonitor, options: { limit?: number } = {}) {
    this.#api = api;
    this.#connection = connection;
    this.#limit = options.limit ?? PAGE_LIMIT;
  }

  /** Subscribe to the events that make the page stale. Returns stop(). */
  start(): () => void {
    const stops = [
      this.#api.on('agents', () => this.#changed()),
      this.#api.on('run', () => this.#changed()),
      this.#api.on('changed', ({ reason }) => {
        if (ROLLOUT_REASONS.test(reason)) this.#changed();
      }),
      // (Re)connected: what happened while the event stream was down is only in a new page.
      this.#connection.onStatus((status) => {
        if (status.kind === 'connected') this.#changed();
      }),
    ];
    return () => {
      clearTimeout(this.#filterTimer);
      clearTimeout(this.#moveTimer);
      stops.forEach((stop) => stop());
    };
  }

  /** The view shows the page: keep it current until the returned function is called. */
  watch(): () => void {
    this.#watchers += 1;
    if (this.#stale) void this.reload();
    let watching = true;
    return () => {
      if (watching) this.#watchers -= 1;
      watching = false;
    };
  }

  #changed(): void {
    this.#stale = true;
    if (this.#watchers > 0) void this.reload();
  }

  /** The query as it is now. */
  get query(): AgentsQuery {
    const filter = this.#filter.trim();
    return {
      ...(filter ? { filter } : {}),
      ...(this.stateFilter ? { state: this.stateFilter } : {}),
      sort: this.sort,
      descending: this.descending,
      limit: this.#limit,
    };
  }

  /** Type into the filter: the query follows once typing pauses (or at once with `now`). */
  setFilter(text: string, now = false): void {
    this.filterText = text;
    clearTimeout(this.#filterTimer);
    const apply = () => {
      this.#filterTimer = undefined;
      if (this.#filter === text) return;
      this.#filter = text;
      void this.reload();
    };
    if (now) apply();
    else this.#filterTimer = setTimeout(apply, FILTER_DEBOUNCE_MS);
  }

  setStateFilter(state: AgentStateFilter): void {
    if (this.stateFilter === state) return;
    this.stateFilter = state;
    void this.reload();
  }

  /** Sort by a column; the sorted column again reverses the order. Last seen starts with the newest. */
  sortBy(column: AgentSort): void {
    if (this.sort === column) this.descending = !this.descending;
    else {
      this.sort = column;
      this.descending = column === 'lastSeen';
    }
    void this.reload();
  }

  clearFilters(): void {
    clearTimeout(this.#filterTimer);
    this.filterText = '';
    this.#filter = '';
    this.stateFilter = '';
    void this.reload();
  }

  /** Load the page; concurrent requests share the load in flight and one more after it. */
  reload(): Promise<void> {
    this.#stale = false;
    if (this.#loading) {
      this.#loadAgain = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#loadAgain = false;
        await this.#loadOnce();
      } while (this.#loadAgain);
      this.#loading = undefined;
    })();
    return this.#loading;
  }

  async #loadOnce(): Promise<void> {
    const query = this.query;
    const key = JSON.stringify(query);
    try {
      const page = await this.#api.call('agents', query);
      // The query changed while this one was answered: a load with the new one follows, and showing
      // this answer until then would flash rows the user has just filtered away.
      if (key !== JSON.stringify(this.query)) return;
      this.page = this.#withMoves(page);
      this.loadError = null;
      this.status = 'ready';
    } catch (error) {
      this.#stale = true;
      this.loadError = errorMessage(error);
      // A view that has shown agents keeps showing them, with the error above.
      if (!this.page) this.status = 'failed';
    }
  }

  /** The page with the ring moves the server took but did not show yet; loads again soon while there are any. */
  #withMoves(page: AgentsPage): AgentsPage {
    if (this.#moves.size === 0) return page;
    const now = Date.now();
    let pending = false;
    const agents = page.agents.map((agent) => {
      const move = this.#moves.get(agent.id);
      if (!move) return agent;
      if (agent.ring === move.ring || now > move.until) {
        this.#moves.delete(agent.id);
        return agent;
      }
      pending = true;
      return { ...agent, ring: move.ring };
    });
    for (const [id, move] of this.#moves) if (now > move.until) this.#moves.delete(id);
    if (pending) this.#reloadSoon();
    return { ...page, agents };
  }

  #reloadSoon(): void {
    clearTimeout(this.#moveTimer);
    this.#moveTimer = setTimeout(() => {
      this.#moveTimer = undefined;
      void this.reload();
    }, MOVE_RELOAD_MS);
  }

  /** Promote the rollout to the next ring now, halt it, or resume it after a halt. */
  async changeRollout(action: RolloutAction): Promise<void> {
    if (this.rolloutRequest.kind === 'sending') return;
    this.rolloutRequest = { kind: 'sending', action };
    try {
      const rollout = await this.#api.call('rollout', { action });
      this.rolloutRequest = { kind: 'done', action, rollout };
      // The answer is the rollout as it is now: show it at once (the ring counts come with the page).
      if (this.page) this.page = { ...this.page, summary: { ...this.page.summary, rollout } };
      void this.reload();
    } catch (error) {
      this.rolloutRequest = { kind: 'failed', action, message: errorMessage(error) };
    }
  }

  /** Move an agent to another ring (confirmed by the view first). Resolves true when the server took it. */
  async setAgentRing(agent: { id: string; name: string }, ring: RingView, options: { undo?: boolean } = {}): Promise<boolean> {
    if (this.ringMove.kind === 'sending') return false;
    const { id, name } = agent;
    this.ringMove = { kind: 'sending', id, name, ring, ...(options.undo ? { undo: true } : {}) };
    try {
      const { from } = await this.#api.call('setAgentRing', { id, ring });
      this.#moves.set(id, { ring, until: Date.now() + MOVE_GRACE_MS });
      this.ringMove = { kind: 'moved', id, name, ring, from, ...(options.undo ? { undo: true } : {}) };
      if (this.details.kind === 'loaded' && this.details.agent.id === id) this.details = { kind: 'loaded', agent: { ...this.details.agent, ring } };
      if (this.page) this.page = this.#withMoves(this.page);
      void this.reload();
      return true;
    } catch (error) {
      this.ringMove = { kind: 'failed', id, name, ring, message: errorMessage(error) };
      return false;
    }
  }

  /** Put the last moved agent back in the ring it came from. */
  async undoRingMove(): Promise<boolean> {
    const move = this.ringMove;
    if (move.kind !== 'moved' || move.undo) return false;
    return this.setAgentRing({ id: move.id, name: move.name }, move.from, { undo: true });
  }

  /** Open one agent's details (loaded afresh each time). */
  async openDetails(agent: { id: string; name: string }): Promise<void> {
    const { id, name } = agent;
    this.agentAction = { kind: 'idle' };
    this.details = { kind: 'loading', id, name };
    try {
      const found = await this.#api.call('agentDetails', { id });
      // Closed or another agent opened meanwhile: this answer is not wanted any more.
      if (this.details.kind !== 'loading' || this.details.id !== id) return;
      this.details = found ? { kind: 'loaded', agent: found } : { kind: 'gone', id, name };
    } catch (error) {
      if (this.details.kind === 'loading' && this.details.id === id) this.details = { kind: 'failed', id, name, message: errorMessage(error) };
    }
  }

  closeDetails(): void {
    this.details = { kind: 'closed' };
  }

  /** Ask one agent to update now. */
  async updateAgent(agent: { id: string; name: string }): Promise<void> {
    if (this.agentAction.kind === 'sending') return;
    const { id, name } = agent;
    this.agentAction = { kind: 'sending', action: 'update', id, name };
    try {
      const { asked } = await this.#api.call('updateAgentNow', { id });
      this.agentAction = { kind: 'done', action: 'update', id, name, asked };
    } catch (error) {
      this.agentAction = { kind: 'failed', action: 'update', id, name, message: errorMessage(error) };
    }
  }

  /** Forget an agent (confirmed by the view first). Resolves true when it is forgotten. */
  async forgetAgent(agent: { id: string; name: string }): Promise<boolean> {
    if (this.agentAction.kind === 'sending') return false;
    const { id, name } = agent;
    this.agentAction = { kind: 'sending', action: 'forget', id, name };
    try {
      await this.#api.call('forgetAgent', { id });
      this.agentAction = { kind: 'done', action: 'forget', id, name };
      this.details = { kind: 'closed' };
      if (this.page) this.page = { ...this.page, agents: this.page.agents.filter((a) => a.id !== id), matching: Math.max(0, this.page.matching - 1) };
      void this.reload();
      return true;
    } catch (error) {
      this.agentAction = { kind: 'failed', action: 'forget', id, name, message: errorMessage(error) };
      return false;
    }
  }

  /** Ask every connected agent to update now. */
  async updateAgentsNow(): Promise<void> {
    if (this.updateRequest.kind === 'sending') return;
    this.updateRequest = { kind: 'sending' };
    try {
      const { asked } = await this.#api.call('updateAgentsNow', undefined);
      this.updateRequest = { kind: 'asked', asked };
    } catch (error) {
      this.updateRequest = { kind: 'failed', message: errorMessage(error) };
    }
  }

  /**
   * Fetch how new agents of the chosen ring enroll (anew each time: the token may have been rotated
   * elsewhere). Resolves with what they are given — the join string, or the bare token while the
   * server has no trusted root — or undefined.
   */
  async loadToken(): Promise<string | undefined> {
    this.token = { kind: 'loading' };
    try {
      const enrollment = await this.#api.call('enrollmentToken', { rotate: false, ring: this.tokenRing });
      this.token = { kind: 'loaded', enrollment };
      return enrollment.join ?? enrollment.token;
    } catch (error) {
      this.token = { kind: 'failed', message: errorMessage(error) };
      return undefined;
    }
  }

  /** Choose the ring new agents enroll into; its join string is fetched when shown. */
  async chooseTokenRing(ring: RingView, show: boolean): Promise<void> {
    this.tokenRing = ring;
    this.rotation = { kind: 'idle' };
    this.token = { kind: 'unknown' };
    if (show) await this.loadToken();
  }

  /** Replace the chosen ring's token with a new one (which is then the loaded one). Resolves true when it was rotated. */
  async rotateToken(): Promise<boolean> {
    if (this.rotation.kind === 'sending') return false;
    this.rotation = { kind: 'sending' };
    try {
      const enrollment = await this.#api.call('enrollmentToken', { rotate: true, ring: this.tokenRing });
      this.token = { kind: 'loaded', enrollment };
      this.rotation = { kind: 'rotated' };
      return true;
    } catch (error) {
      this.rotation = { kind: 'failed', message: errorMessage(error) };
      return false;
    }
  }
}
