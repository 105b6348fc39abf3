/**
 * A store under load in a process of its own, for test/store-durability.test.ts. Opens the store in
 * the data dir given, prints `ready`, then stores container updates through `batch` (as the job API
 * does) and prints `acked <n>` once update n is reported durable, until killed or `count` is reached.
 * Mode `slow` delays every sync by 40 ms, so that a kill lands while a batch waits for its sync.
 *
 *   node --import tsx test/support/store-child.ts DATA_DIR [slow|fast] [count]
 */
import { fsync } from 'node:fs';
import pino from 'pino';
import { SqliteStore } from '../../src/jobs/sqlite-store.ts';
import { LogStore } from '../../src/logs/log-store.ts';

const [dataDir = '', mode = 'fast', countArg = '0'] = process.argv.slice(2);
const count = Number(countArg) || Infinity;
const slowSync = (fd: number): Promise<void> => new Promise((resolve, reject) => setTimeout(() => fsync(fd, (err) => (err ? reject(err) : resolve())), 40));
const store = SqliteStore.open({ dataDir, log: pino({ level: 'silent' }), ...(mode === 'slow' ? { fsync: slowSync } : {}) });
const logs = new LogStore(`${dataDir}/logs.db`);
const id = 'durable-1';
if (store.admit({ id, image: 'img', body: null, callbackUrl: 'http://127.0.0.1:1/cb' }, 'secret', 'name')) {
  store.transition(id, 'creating');
  store.transition(id, 'started', { containerId: 'c', startedAt: Date.now() });
  logs.open(id, 'http://127.0.0.1:1/logs');
}
// A marker the strace test finds (kill with signal 0 checks nothing): after it, the store at work, not its opening.
process.kill(process.pid, 0);
process.stdout.write('ready\n');

let n = store.pendingDeliveries().length;
let line = logs.get(id)?.nextLine ?? 0;
const body = Buffer.alloc(600, 'u');
async function loop(): Promise<void> {
  while (n < count) {
    const batch: Array<Promise<number>> = [];
    // A few updates per event-loop turn, as concurrent PUTs arrive: they share one transaction and one sync.
    for (let i = 0; i < 3 && n < count; i++) {
      const seq = ++n;
      batch.push(store.batch(() => store.recordUpdate(id, { url: 'http://127.0.0.1:1/cb', headers: { 'x-n': String(seq) }, body }).delivery.seq));
    }
    const text = `line ${line++} `.padEnd(200, 'l');
    logs.append(id, [{ stream: 'stdout', ts: new Date().toISOString(), text }], { since: null, count: line }, { bytes: text.length, truncated: false });
    for (const seq of await Promise.all(batch)) process.stdout.write(`acked ${seq}\n`);
  }
  process.kill(process.pid, 0);
  store.close();
  logs.close();
  process.stdout.write('done\n');
}
void loop();
