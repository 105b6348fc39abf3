import type { Clock, Timer } from './clock.ts';

/** Named one-shot timers of one owner: setting a name replaces its timer; a fired timer forgets itself. */
export class TimerSet<Name extends string> {
  private readonly clock: Clock;
  private readonly timers = new Map<Name, Timer>();

  constructor(clock: Clock) {
    this.clock = clock;
  }

  set(name: Name, ms: number, fn: () => void): void {
    this.timers.get(name)?.cancel();
    const timer = this.clock.after(ms, () => {
      if (this.timers.get(name) === timer) this.timers.delete(name);
      fn();
    });
    this.timers.set(name, timer);
  }

  has(name: Name): boolean {
    return this.timers.has(name);
  }

  cancel(...names: Name[]): void {
    for (const name of names) {
      this.timers.get(name)?.cancel();
      this.timers.delete(name);
    }
  }

  cancelAll(): void {
    this.cancel(...this.timers.keys());
  }
}
