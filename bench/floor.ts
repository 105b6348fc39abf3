/**
 * The floor under the fan-out figure: the same per-update work done by a bare pipeline of the agent's own
 * packages, in a process of its own so its CPU can be read. It takes a PUT (fastify, body as a buffer),
 * inserts it into SQLite (WAL, synchronous = FULL, as the agent's store), answers, forwards it with undici
 * to a callback receiver and deletes the row without a disk sync. No job state, secrets, ordering or
 * metrics: whatever the agent spends above this is its own.
 *
 * Started by bench/steady.ts as `node --import tsx bench/floor.ts serve <callback url>`; prints its port.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import { Agent, request } from 'undici';

async function serve(callbackUrl: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-floor-'));
  const db = new Database(join(dir, 'floor.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE deliveries (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, body BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO deliveries (id, job_id, body) VALUES (?, ?, ?)');
  const remove = db.prepare('DELETE FROM deliveries WHERE id = ?');
  const [relaxed, full] = [db.prepare('PRAGMA synchronous = NORMAL'), db.prepare('PRAGMA synchronous = FULL')];
  const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 10_000 });
  const app = Fastify();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.put<{ Params: { id: string } }>('/job/:id', async (req, reply) => {
    const id = randomUUID();
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    insert.run(id, req.params.id, body);
    const forward = async (): Promise<void> => {
      const res = await request(callbackUrl, {
        method: 'PUT',
        body,
        dispatcher,
        headers: { 'content-type': 'application/json', 'x-foreman-job-id': req.params.id },
      });
      await res.body.dump();
      // Like the agent's delivered mark: not synced on its own (see docs/operations.md, "Group commit").
      relaxed.run();
      remove.run(id);
      full.run();
    };
    forward().catch((err: unknown) => console.error('floor: forward failed', err));
    return reply.code(200).send({ status: 'accepted' });
  });
  const close = (): void => {
    void app
      .close()
      .then(() => dispatcher.close())
      .finally(() => {
        db.close();
        rmSync(dir, { recursive: true, force: true });
        process.exit(0);
      });
  };
  process.once('SIGTERM', close);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  console.log(String(typeof address === 'object' && address ? address.port : 0));
}

if (process.argv[2] === 'serve') await serve(process.argv[3] ?? '');
