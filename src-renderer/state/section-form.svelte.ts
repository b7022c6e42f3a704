// One settings section's form: a draft the user edits, checked in the browser before anything is
// sent, saved on its own, and kept in step with the server's value while the user has not touched it.
//
// - Client-side errors appear after the first Save and update as the user types.
// - A server refusal ({ok:false, field, message}) is shown at that field when the form has one by
//   that name ("port" or "proxy.port"), otherwise for the whole section; the draft stays as typed.
// - After a successful save the draft takes the server's answer (which is what is now stored).
import { tick, untrack } from 'svelte';
import type { SaveResult, SettingsChange } from '../../src-main/console/contract.js';
import { errorMessage, sentence } from '../api/errors.js';

export type SaveState =
  | { kind: 'idle' }
  | { kind: 'saving' }
  | { kind: 'saved' }
  /** Refused by the server, or the call failed: a message for the whole section. */
  | { kind: 'failed'; message: string };

export type FieldErrors<F extends string> = Partial<Record<F, string>>;

export interface SectionFormOptions<D, F extends string> {
  /** The draft for the server's current value (re-read whenever that value changes). */
  read: () => D;
  /** Problems with the draft, by field; empty when it can be sent. */
  validate: (draft: D) => FieldErrors<F>;
  /** The change to send for a valid draft. */
  toChange: (draft: D) => SettingsChange;
  /** The form's field names, to place server refusals. */
  fields: readonly F[];
  save: (change: SettingsChange) => Promise<SaveResult>;
}

const SAVED_FEEDBACK_MS = 4_000;
/** Controls that show an error (a button that opens a file picker cannot take aria-invalid). */
const INVALID = '[aria-invalid="true"], [data-invalid="true"]';

function keyOf(value: unknown): string {
  return JSON.stringify(value);
}

export class SectionForm<D extends object, F extends string> {
  draft: D = $state() as D;
  saveState = $state.raw<SaveState>({ kind: 'idle' });
  /** Set by the first Save: from then on client errors show (and clear) as the user types. */
  #submitted = $state(false);
  #baseline = $state('');
  #refusal = $state.raw<{ field: F; message: string; draftKey: string } | null>(null);
  #savedTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #options: SectionFormOptions<D, F>;

  readonly dirty = $derived(keyOf(this.draft) !== this.#baseline);
  readonly clientErrors = $derived.by((): FieldErrors<F> => (this.#submitted ? this.#options.validate(this.draft) : {}));

  /** Must be constructed while a component initialises (it follows the server's value with an effect). */
  constructor(options: SectionFormOptions<D, F>) {
    this.#options = options;
    const initial = options.read();
    this.draft = initial;
    this.#baseline = keyOf(initial);
    $effect.pre(() => {
      const server = options.read();
      untrack(() => this.#follow(server));
    });
  }

  /** The message to show at a field, if any. */
  errorFor(field: F): string | undefined {
    const client = this.clientErrors[field];
    if (client) return client;
    const refusal = this.#refusal;
    // A refusal is about what was sent: once the user edits the form it no longer applies.
    if (refusal && refusal.field === field && refusal.draftKey === keyOf(this.draft)) return refusal.message;
    return undefined;
  }

  /**
   * The submit handler: validate, send, report. `ready` is work the draft still waits for (a file
   * being imported into it): Save shows "Saving…" until it is done, then validates what it brought.
   */
  async submit(event: SubmitEvent, ready?: Promise<unknown>): Promise<void> {
    event.preventDefault();
    const formElement = event.currentTarget instanceof HTMLFormElement ? event.currentTarget : null;
    if (ready) {
      this.saveState = { kind: 'saving' };
      await ready;
    }
    this.#submitted = true;
    this.#refusal = null;
    clearTimeout(this.#savedTimer);
    const errors = this.#options.validate(this.draft);
    if (Object.values(errors).some(Boolean)) {
      this.saveState = { kind: 'idle' };
      await tick();
      formElement?.querySelector<HTMLElement>(INVALID)?.focus();
      return;
    }
    const sentKey = keyOf(this.draft);
    this.saveState = { kind: 'saving' };
    let result: SaveResult;
    try {
      result = await this.#options.save(this.#options.toChange($state.snapshot(this.draft) as D));
    } catch (error) {
      this.saveState = { kind: 'failed', message: `Not saved: ${errorMessage(error)}` };
      return;
    }
    if (!result.ok) {
      const field = this.#fieldNamed(result.field);
      const message = sentence(result.message);
      if (field) {
        this.#refusal = { field, message, draftKey: sentKey };
        this.saveState = { kind: 'idle' };
        await tick();
        formElement?.querySelector<HTMLElement>(INVALID)?.focus();
      } else {
        this.saveState = { kind: 'failed', message };
      }
      return;
    }
    // The store now holds what the server says; show exactly that.
    this.#submitted = false;
    this.reset();
    this.saveState = { kind: 'saved' };
    this.#savedTimer = setTimeout(() => {
      if (this.saveState.kind === 'saved') this.saveState = { kind: 'idle' };
    }, SAVED_FEEDBACK_MS);
  }

  /** Show the client-side errors now (before a connection test, say); true when the draft is valid. */
  validateNow(): boolean {
    this.#submitted = true;
    return !Object.values(this.#options.validate(this.draft)).some(Boolean);
  }

  /** Throw away the edits: the draft becomes the server's value again. */
  reset(): void {
    const server = this.#options.read();
    this.draft = server;
    this.#baseline = keyOf(server);
    this.#refusal = null;
  }

  #follow(server: D): void {
    const key = keyOf(server);
    if (key === this.#baseline) return;
    if (!this.dirty) this.draft = server;
    this.#baseline = key;
  }

  #fieldNamed(name: string): F | undefined {
    const last = name.split('.').pop() ?? name;
    return this.#options.fields.find((field) => field === name || field === last);
  }
}
