// A shared, coarse clock so that "3 minutes ago" and "in 12 minutes" stay true while the console
// stays open. One timer for the whole page, started by the first reader.

class Clock {
  #tick = $state(0);
  #timer: ReturnType<typeof setInterval> | undefined;

  get now(): number {
    this.#timer ??= setInterval(() => (this.#tick += 1), 15_000);
    // Re-render every 15 s, but always compare with the current time: a stale "now" made a time
    // that had just passed read "in less than a minute".
    void this.#tick;
    return Date.now();
  }
}

export const clock = new Clock();
