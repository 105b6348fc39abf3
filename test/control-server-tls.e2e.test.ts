/**
 * `foreman server --tls-cert --tls-key` serves HTTPS, and a real agent (a process, on the real engine) reaches it at
 * an https:// URL when given the CA in a file (NODE_EXTRA_CA_CERTS): its job's callback and logs go over HTTPS too.
 * An agent without the CA is refused at the handshake, says so in its log, and is never handed a job. The CA and the
 * server's certificate are made here with openssl; everything listens on 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { type SpawnedAgent, readLog, spawnAgent, stopAgent, storedAgentId, testEnv, type TestEnv } from './support/agents.ts';
import { cleanup } from './support/containers.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, spawnServer } from './support/control-server.ts';
import type { SpawnedServer } from './support/control-server.ts';
import { testJobImage } from './support/image.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

/** A CA and a server certificate it signed for 127.0.0.1 and localhost, in `dir`. */
async function makePki(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const openssl = (...args: string[]): void => void execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=foreman-test-ca');
  openssl('req', ...ec, '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost');
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca-key.pem',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '1',
    '-extfile',
    'server.ext',
  );
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') };
}

test(
  'foreman server over HTTPS: an agent with the CA file runs a job end to end; one without it is refused and gets nothing',
  { timeout: 240_000 },
  async (t) => {
    await testJobImage();
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-tls-'));
    let server: SpawnedServer | undefined;
    let dispatcher: Agent | undefined;
    const envs: TestEnv[] = [];
    const agents: SpawnedAgent[] = [];
    try {
      const pki = await makePki(dir);
      server = await spawnServer(['--port', '0', '--db', join(dir, 'cs.db'), '--tls-cert', pki.cert, '--tls-key', pki.key, '--log-level', 'warn'], {
        FOREMAN_SERVER_TOKENS: AGENT_TOKEN,
        FOREMAN_SERVER_ADMIN_TOKENS: ADMIN_TOKEN,
      });
      assert.match(server.base, /^https:\/\/127\.0\.0\.1:\d+$/, 'it says it serves HTTPS');
      const base = server.base;
      // The operator's client trusts the test CA too.
      dispatcher = new Agent({ connect: { ca: await readFile(pki.ca) } });
      const operator = async (path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; json: unknown }> => {
        const response = await undiciFetch(`${base}${path}`, {
          dispatcher,
          method: init.method ?? 'GET',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        });
        return { status: response.status, json: await response.json() };
      };
      const submit = async (queue: string, body: unknown): Promise<string> => {
        const created = await operator('/jobs', { method: 'POST', body: { image: 'foreman-test-job:latest', labels: { queue }, body } });
        assert.equal(created.status, 201, JSON.stringify(created.json));
        return (created.json as { id: string }).id;
      };

      // Without the CA: the handshake fails, the agent says why, and its job stays queued.
      const untrusting = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: AGENT_TOKEN, FOREMAN_CORE_LABELS_QUEUE: 'tls-no-ca', FOREMAN_LOG_LEVEL: 'info' });
      envs.push(untrusting);
      const refused = spawnAgent(untrusting);
      agents.push(refused);
      const unreached = await submit('tls-no-ca', { values: [1, 2] });
      const complaint = await waitFor(
        'the agent without the CA to log its failed poll',
        () =>
          readLog(refused.logFile)
            .split('\n')
            .find((line) => /certificate|UNABLE_TO_VERIFY|self.signed/i.test(line)),
        60_000,
      );
      t.diagnostic(`agent without the CA: ${complaint.slice(0, 300)}`);
      const stillQueued = (await operator(`/jobs/${unreached}`)).json as JobView;
      assert.equal(stillQueued.status, 'queued', 'an agent that cannot check the certificate is handed nothing');
      await stopAgent(refused);

      // With the CA in a file: the poll, the callback and the log batches all go over HTTPS.
      const trusting = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: AGENT_TOKEN, FOREMAN_CORE_LABELS_QUEUE: 'tls' });
      envs.push(trusting);
      agents.push(spawnAgent(trusting, { NODE_EXTRA_CA_CERTS: pki.ca }));
      const id = await submit('tls', { values: [20, 22] });
      const ended = await waitFor(
        'the job to end',
        async () => {
          const view = (await operator(`/jobs/${id}`)).json as JobView;
          return view.status === 'completed' ? view : undefined;
        },
        120_000,
      );
      assert.equal(ended.outcome, 'succeeded', JSON.stringify(ended));
      assert.deepEqual(ended.result, { result: 42 }, 'the final report arrived over HTTPS');
      const log = await waitFor(
        'the job log to be complete',
        async () => {
          const page = (await operator(`/jobs/${id}/logs`)).json as { lines: unknown[]; complete: boolean };
          return page.complete ? page : undefined;
        },
        30_000,
      );
      assert.ok(log.lines.length > 0, 'log batches arrived over HTTPS');
    } finally {
      for (const agent of agents) await stopAgent(agent).catch(() => undefined);
      await server?.stop();
      await dispatcher?.close();
      for (const env of envs) await cleanup(env, storedAgentId(env)).catch(() => undefined);
      for (const env of envs) await rm(env.dir, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    }
  },
);
