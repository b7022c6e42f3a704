// Reactive state for the component table, kept out of the markup so it can grow (refresh on engine
// events, errors) without touching the components that render it.
import type { ComponentRow, ConsoleApi } from './console-api.js';

export type LoadStatus = 'loading' | 'ready' | 'failed';

export class ComponentsState {
  rows = $state<ComponentRow[]>([]);
  status = $state<LoadStatus>('loading');
  error = $state<string | undefined>(undefined);
  readonly isEmpty = $derived(this.status === 'ready' && this.rows.length === 0);

  constructor(private readonly api: ConsoleApi) {}

  async refresh(): Promise<void> {
    this.status = 'loading';
    try {
      this.rows = await this.api.listComponents();
      this.error = undefined;
      this.status = 'ready';
    } catch (error) {
      this.error = error instanceof Error ? error.message : String(error);
      this.status = 'failed';
    }
  }
}
