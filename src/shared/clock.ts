/** A pending callback of `Clock.after`; `cancel` is safe to call twice or after it fired. */
export interface Timer {
  cancel(): void;
}

/**
 * Time source, abortable sleep and timers, injectable so that retries, timeouts and removal
 * delays can be tested without waiting (see `ManualClock`).
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `fn` once after `ms`. An unref'd timer does not keep the process alive. */
  after(ms: number, fn: () => void, options?: { unref?: boolean }): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
  after: (ms, fn, options) => {
    const timer = setTimeout(fn, ms);
    if (options?.unref) timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};
