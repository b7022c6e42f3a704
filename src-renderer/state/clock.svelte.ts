// A shared, coarse clock so that "3 minutes ago" and "in 12 minutes" stay true while the console
// stays open. One timer for the whole page, started by the first reader.

class Clock {
  #now = $state(Date.now());
  #timer: ReturnType<typeof setInterval> | undefined;

  get now(): number {
    this.#timer ??= setInterval(() => (this.#now = Date.now()), 15_000);
    return this.#now;
  }
}

export const clock = new Clock();
