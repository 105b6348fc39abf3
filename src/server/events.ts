// The dashboard's live stream (GET /events): a snapshot on connect, then every change of a job or agent, whichever
// instance made it. Changes arrive as database events (db.ts: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL);
// each is read again here and sent to this instance's browsers.
import type { ServerResponse } from 'node:http';
import type { ServerEvent } from './db.ts';
import type { AgentView, JobView, Store } from './store.ts';

/** Jobs a snapshot lists, newest first. */
export const SNAPSHOT_JOBS = 500;

export interface EventHub {
  /** Adds a browser's stream: it gets the snapshot, then every change. */
  add(stream: ServerResponse): Promise<void>;
  remove(stream: ServerResponse): void;
  /** A comment line on every stream, so proxies keep idle ones open. */
  ping(): void;
  /** Called with each database event; log events go to `onLog`. */
  handle(event: ServerEvent): void;
  closeAll(): void;
}

export function createEventHub(store: Store, onLog: (event: ServerEvent) => void, onError: (error: unknown) => void): EventHub {
  /** Each browser's stream, with the events held back while its snapshot is read (null once it was sent). */
  const streams = new Map<ServerResponse, string[] | null>();
  /** Per job or agent, the read in flight: reads of one id run in order, so the last view sent is the latest. */
  const reads = new Map<string, Promise<void>>();

  const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  const broadcast = (event: string, data: JobView | AgentView) => {
    const text = frame(event, data);
    streams.forEach((held, stream) => (held === null ? stream.write(text) : held.push(text)));
  };

  const refresh = (key: string, read: () => Promise<void>) => {
    const next = (reads.get(key) ?? Promise.resolve()).then(read).catch(onError);
    reads.set(key, next);
    void next.then(() => {
      if (reads.get(key) === next) reads.delete(key);
    });
  };

  return {
    async add(stream) {
      // Changes made while the snapshot is read follow it, so the browser ends with the latest of each.
      const held: string[] = [];
      streams.set(stream, held);
      const [page, agents] = await Promise.all([store.listJobs({ limit: SNAPSHOT_JOBS }), store.listAgents()]);
      if (!streams.has(stream)) return;
      stream.write(frame('snapshot', { jobs: page.jobs, agents }));
      for (const text of held) stream.write(text);
      streams.set(stream, null);
    },
    remove(stream) {
      streams.delete(stream);
    },
    ping() {
      streams.forEach((_held, stream) => stream.write(': ping\n\n'));
    },
    handle(event) {
      if (event.kind === 'log' || event.kind === 'log-reset') {
        onLog(event);
        return;
      }
      // Nobody watching: nothing to read.
      if (streams.size === 0) return;
      if (event.kind === 'job') {
        refresh(`job:${event.id}`, async () => {
          const job = await store.getJob(event.id);
          if (job !== undefined) broadcast('job', job);
        });
      } else {
        refresh(`agent:${event.id}`, async () => {
          const agent = await store.getAgent(event.id);
          if (agent !== undefined) broadcast('agent', agent);
        });
      }
    },
    closeAll() {
      streams.forEach((_held, stream) => stream.destroy());
      streams.clear();
    },
  };
}
