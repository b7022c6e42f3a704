// The engine's state machine. The console and the tray only mirror it.
//
//            update (install, startup, schedule, manual, notification)
//   idle ─────────────────────────────► checking ──(nothing new)──────────┐
//    ▲                                     │                              │
//    │                                     ▼                              │
//    │                        ┌──► downloading ──► applying ──┐           │
//    │                        └───────────(next component)────┘           │
//    │                                     │                              │
//    │                                     ├──(a server with agents)──────┤
//    │                                     ▼                              ▼
//    └───────────────────────────────── idle ◄──────────────────── distributing
//
//   Any stage that fails ──► failed ──(next update)──► checking
//
// A server distributes after every run that refreshed the signed metadata; a one-off update and an
// agent have no one to distribute to. Every stage carries the trigger of the run in progress;
// downloading and applying carry which component (index of total) and the bytes received so far.
import { EventEmitter } from 'node:events';
import type { Trigger } from './history.js';
import type { InstallMethod } from './store.js';

export type EngineState =
  | { type: 'idle' }
  | { type: 'checking'; trigger: Trigger }
  | { type: 'downloading'; trigger: Trigger; component: string; index: number; total: number; method: InstallMethod; bytes: number }
  | { type: 'applying'; trigger: Trigger; component: string; index: number; total: number; bytes: number }
  | { type: 'distributing'; trigger: Trigger }
  | { type: 'failed'; error: string; code?: string; at: string };

export type EngineStateType = EngineState['type'];

const ALLOWED: Record<EngineStateType, readonly EngineStateType[]> = {
  idle: ['checking'],
  checking: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  downloading: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  applying: ['downloading', 'applying', 'distributing', 'idle', 'failed'],
  distributing: ['idle', 'failed'],
  failed: ['checking'],
};

export function isBusy(state: EngineState): boolean {
  return state.type !== 'idle' && state.type !== 'failed';
}

export class StateMachine extends EventEmitter<{ change: [EngineState, EngineState] }> {
  private current: EngineState = { type: 'idle' };

  get state(): EngineState {
    return this.current;
  }

  /** Move to `next`; an illegal transition is a bug in the engine, so it throws. */
  transition(next: EngineState): void {
    if (!ALLOWED[this.current.type].includes(next.type)) {
      throw new Error(`illegal engine transition ${this.current.type} -> ${next.type}`);
    }
    const previous = this.current;
    this.current = next;
    this.emit('change', next, previous);
  }
}
