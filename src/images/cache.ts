import type { Logger } from 'pino';
import { describeHttpError } from '../shared/backoff.ts';
import type { Clock } from '../shared/clock.ts';
import type { ImageInfo, ImageRecord } from '../shared/engine-facts.ts';

/** What the cache needs of the engine (the executor gives it). */
export interface ImageEngine {
  /** Pulls the image when it is missing, or always when `alwaysPull`. */
  ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void>;
  imageInfo(image: string): Promise<ImageInfo | undefined>;
  /** Removes the image's reference (the image itself once no other reference or container holds it). */
  removeImage(image: string): Promise<void>;
  /** Free bytes where the engine keeps its images; undefined when the agent cannot see that file system. */
  freeBytes(): Promise<number | undefined>;
}

/** Where the records live (the job store). */
export interface ImageRecords {
  /** Records a use; `pulled` is kept once set. */
  useImage(ref: string, info: ImageInfo, pulled: boolean, at: number): void;
  /** Every record, most recently used first. */
  images(): ImageRecord[];
  forgetImage(ref: string): void;
}

export interface ImageCacheOptions {
  /** Most bytes the images this agent pulled may take; 0: no budget. */
  readonly budgetBytes: number;
  /** Free disk under which removal starts, and the free disk it goes on to; 0: not watched. */
  readonly lowFreeBytes: number;
  readonly highFreeBytes: number;
  /** `x-foreman-images`: at most this many entries, and this many bytes. */
  readonly headerEntries: number;
  readonly headerBytes: number;
}

export interface ImageCacheDeps {
  readonly engine: ImageEngine;
  readonly records: ImageRecords;
  readonly clock: Pick<Clock, 'now'>;
  readonly log: Logger;
  /** Images jobs this agent still tracks need (queued, launching or running): never removed. */
  readonly needed: () => ReadonlySet<string>;
  /** Told of every removal, with why (`budget`, `disk`). */
  readonly onRemoved?: (ref: string, reason: 'budget' | 'disk') => void;
}

interface Flight {
  readonly done: Promise<void>;
  readonly controller: AbortController;
  waiting: number;
}

/**
 * The images jobs use: one pull for any number of jobs that need an image at the same time (single-flight,
 * whatever `alwaysPull` each says), a record of each image's last use (for `x-foreman-images`, most recently
 * used first), and removal of the least recently used images this agent pulled itself once they exceed the
 * budget or free disk runs low, never one a tracked job needs or the engine is pulling.
 */
export class ImageCache {
  private readonly deps: ImageCacheDeps;
  private readonly options: ImageCacheOptions;
  private readonly flights = new Map<string, Flight>();
  private collecting: Promise<void> | undefined;
  private headerValue: string | undefined;

  constructor(deps: ImageCacheDeps, options: ImageCacheOptions) {
    this.deps = deps;
    this.options = options;
  }

  /** Makes `image` present for a job; concurrent calls for one image share one pull. Rejects when `signal` aborts. */
  async ensure(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    let flight = this.flights.get(image);
    if (!flight) {
      const controller = new AbortController();
      const done = this.fetch(image, alwaysPull, controller.signal);
      const created: Flight = { done, controller, waiting: 0 };
      this.flights.set(image, created);
      done.then(
        () => this.flights.delete(image),
        () => this.flights.delete(image),
      );
      flight = created;
    }
    flight.waiting++;
    const joined = flight;
    try {
      await abortable(joined.done, signal);
    } finally {
      joined.waiting--;
      // The last job that wanted it gave up: the pull stops too.
      if (joined.waiting === 0 && this.flights.get(image) === joined) joined.controller.abort(signal?.reason);
    }
  }

  /** `x-foreman-images`: the images jobs used that are here, most recently used first, bounded; cached until they change. */
  header(): string {
    this.headerValue ??= this.encodeHeader();
    return this.headerValue;
  }

  /** Removes what the budget and the free-disk marks say to, one run at a time. Never throws. */
  collect(): Promise<void> {
    this.collecting ??= this.runCollect().finally(() => {
      this.collecting = undefined;
    });
    return this.collecting;
  }

  private async fetch(image: string, alwaysPull: boolean, signal: AbortSignal): Promise<void> {
    const { engine, records, clock, log } = this.deps;
    const before = await engine.imageInfo(image).catch(() => undefined);
    await engine.ensureImage(image, alwaysPull, signal);
    try {
      const info = before && !alwaysPull ? before : await engine.imageInfo(image);
      if (info) records.useImage(image, info, before === undefined, clock.now());
      this.headerValue = undefined;
    } catch (err) {
      log.warn({ image, reason: describeHttpError(err) }, 'could not record an image use');
    }
    if (before === undefined) void this.collect();
  }

  private async runCollect(): Promise<void> {
    const { engine, records, log } = this.deps;
    try {
      const removable = (): ImageRecord[] => {
        const needed = this.deps.needed();
        return records
          .images()
          .filter((r) => r.pulled && !needed.has(r.ref) && !this.flights.has(r.ref))
          .reverse();
      };
      const { budgetBytes, lowFreeBytes, highFreeBytes } = this.options;
      if (budgetBytes > 0) {
        let total = records.images().reduce((sum, r) => sum + (r.pulled ? r.sizeBytes : 0), 0);
        for (const record of removable()) {
          if (total <= budgetBytes) break;
          if (await this.remove(record, 'budget')) total -= record.sizeBytes;
        }
      }
      if (lowFreeBytes > 0) {
        let free = await engine.freeBytes();
        if (free !== undefined && free < lowFreeBytes) {
          for (const record of removable()) {
            if (free === undefined || free >= Math.max(highFreeBytes, lowFreeBytes)) break;
            if (await this.remove(record, 'disk')) free = await engine.freeBytes();
          }
        }
      }
    } catch (err) {
      log.warn({ reason: describeHttpError(err) }, 'could not clean up images');
    }
  }

  private async remove(record: ImageRecord, reason: 'budget' | 'disk'): Promise<boolean> {
    const { engine, records, log } = this.deps;
    // Needed by a job admitted meanwhile, or pulled again: kept.
    if (this.deps.needed().has(record.ref) || this.flights.has(record.ref)) return false;
    try {
      await engine.removeImage(record.ref);
    } catch (err) {
      log.warn({ image: record.ref, reason: describeHttpError(err) }, 'could not remove an image');
      return false;
    }
    records.forgetImage(record.ref);
    this.headerValue = undefined;
    log.info({ image: record.ref, sizeBytes: record.sizeBytes, lastUsedAt: new Date(record.lastUsedAt).toISOString(), why: reason }, 'removed an image');
    this.deps.onRemoved?.(record.ref, reason);
    return true;
  }

  private encodeHeader(): string {
    const parts: string[] = [];
    let bytes = 0;
    for (const record of this.deps.records.images()) {
      if (parts.length >= this.options.headerEntries) break;
      const entry = `${encodeURIComponent(record.ref)}@${record.digest?.split('@')[1] ?? record.id}`;
      if (bytes + entry.length + 1 > this.options.headerBytes) break;
      parts.push(entry);
      bytes += entry.length + 1;
    }
    return parts.join(',');
  }
}

/** `promise`, or the signal's reason once it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
