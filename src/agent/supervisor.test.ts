/**
 * The supervisor, built by the composition root over the fake engine and the in-memory store:
 * start-up recovery, the job API, engine outages and the two-stage shutdown, in milliseconds.
 * A small HTTP server on 127.0.0.1 plays the control server and the callback receiver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import { LABEL_JOB } from '../executor/executor.ts';
import { FakeExecutor } from '../executor/fake/fake-executor.ts';
import { MemoryStore } from '../jobs/memory-store.ts';
import { ManualClock, settle } from '../testing/clock-kit.ts';
import type { Supervisor } from './supervisor.ts';
import { composeAgent } from './compose.ts';
import { IMAGE } from '../testing/agent-kit.ts';

interface Control {
  readonly url: string;
  readonly callbacks: Array<{ headers: IncomingMessage['headers']; body: string }>;
  /** Replies for the next polls; `[]` once they run out. */
  readonly replies: unknown[][];
  polls: number;
  close(): Promise<void>;
}

async function control(): Promise<Control> {
  const state = { callbacks: [] as Control['callbacks'], replies: [] as unknown[][], polls: 0 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'PUT') state.callbacks.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      else state.polls++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(req.method === 'GET' ? JSON.stringify(state.replies.shift() ?? []) : '');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    url,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  });
}

function setUp(cs: Control, env: Record<string, string> = {}) {
  const { config } = loadConfig({
    env: {
      FOREMAN_CORE_URL: `${cs.url}/job`,
      FOREMAN_CORE_TOKEN: 't',
      FOREMAN_CORE_PORT: '0',
      FOREMAN_CORE_MAX_CONCURRENT_JOBS: '2',
      // Longer than any clock advance below, so no job times out while a test moves time.
      FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '600000',
      ...env,
    },
    cwd: '/nonexistent',
    home: '/nonexistent',
  });
  const clock = new ManualClock();
  const store = new MemoryStore({ now: () => clock.now() });
  const executor = new FakeExecutor({ agentId: store.agentId, images: [IMAGE], now: () => clock.now() });
  const agent = composeAgent(config, { store, executor, clock, log: pino({ level: 'silent' }), version: 'test' });
  const job = (id: string, body: unknown = {}) => ({ id, image: IMAGE, body, callbackUrl: `${cs.url}/cb` });
  const outcomes = (id: string) => cs.callbacks.filter((c) => c.headers['x-foreman-job-id'] === id).map((c) => c.headers['x-foreman-job-outcome']);
  return { clock, store, executor, agent, job, outcomes };
}

/** Real-time wait for something the agent does on its own (HTTP, promise chains). */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle();
  }
}

function endpointOf(agent: Supervisor, store: MemoryStore, id: string): string {
  return `${agent.jobApiUrl}/job/${id}?token=${store.get(id)?.secret ?? ''}`;
}

test('start recovers what was left, runs polled jobs through the job API; close ends the rest and is safe twice', async () => {
  const cs = await control();
  const { clock, store, executor, agent, job, outcomes } = setUp(cs);
  try {
    // Left by a previous run: a job whose container still runs.
    store.admit(job('alive'), 'secret', 'c-alive');
    const alive = await executor.create({ name: 'c-alive', image: IMAGE, command: undefined, env: {}, labels: { [LABEL_JOB]: 'alive' } });
    await executor.start(alive);
    for (const to of ['creating', 'started', 'running'] as const)
      store.transition('alive', to, to === 'started' ? { containerId: alive, startedAt: clock.now() } : {});

    cs.replies.push([job('new', { values: [1] })]);
    await agent.start();
    await until('the polled job to start', () => store.get('new')?.state === 'started');
    assert.equal(store.get('alive')?.state, 'running', 're-adopted, not restarted');

    // The container of "new" talks to the real job API.
    const fetched = await fetch(endpointOf(agent, store, 'new'));
    assert.deepEqual(await fetched.json(), { id: 'new', body: { values: [1] } });
    const put = await fetch(endpointOf(agent, store, 'new'), { method: 'PUT', headers: { 'x-foreman-job-status': 'completed' }, body: '{"result":1}' });
    assert.equal(put.status, 200);
    await until('the completion to be forwarded', () => outcomes('new').includes('succeeded'));
    await until('the container to be stopped', () => store.get('new')?.state === 'stopped');

    const closing = agent.close();
    assert.equal(agent.close(), closing, 'close twice gives the same shutdown');
    await closing;
    assert.deepEqual(outcomes('alive'), ['agent-shutdown']);
    assert.equal(executor.containers.size, 0, 'remove_stopped_containers_on_terminate removed both containers');
    assert.throws(() => store.transition('new', 'removed'), /closed/);
  } finally {
    await agent.close();
    await cs.close();
  }
});

test('an engine outage: no launches while it is away; after reconnecting, what exited meanwhile is reported and queued jobs start', async () => {
  const cs = await control();
  const { clock, store, executor, agent, job, outcomes } = setUp(cs);
  try {
    cs.replies.push([job('first')]);
    await agent.start();
    await until('the first job to start', () => store.get('first')?.state === 'started');
    const container = executor.containerOf('first');
    assert.ok(container, "the job's container exists in the engine");

    executor.loseEngine();
    await settle();
    // While the engine is away the container dies, and the control server sends another job.
    container.running = false;
    container.exitCode = 9;
    cs.replies.push([job('second')]);
    await clock.advance(5000);
    await until('the second job to arrive', () => store.get('second') !== undefined);
    assert.equal(store.get('second')?.state, 'pending', 'not launched while the engine is away');

    executor.up = true;
    await clock.advance(10_000);
    await until('the exit to be reported', () => outcomes('first').includes('failed'));
    await until('the queued job to start', () => store.get('second')?.state === 'started');
    const report = cs.callbacks.find((c) => c.headers['x-foreman-job-id'] === 'first');
    assert.equal((JSON.parse(report?.body ?? '{}') as { exitCode?: number }).exitCode, 9);
  } finally {
    await agent.close();
    await cs.close();
  }
});

test('close during a pull that never ends returns at once and reports agent-shutdown', async () => {
  const cs = await control();
  const { store, executor, agent, job, outcomes } = setUp(cs);
  try {
    executor.hangingPulls.add('slow/img:1');
    cs.replies.push([{ ...job('hang'), image: 'slow/img:1' }]);
    await agent.start();
    await until('the pull to begin', () => store.get('hang')?.state === 'creating');
    await agent.close();
    assert.deepEqual(outcomes('hang'), ['agent-shutdown']);
    assert.equal(executor.calls.filter((c) => c.startsWith('create')).length, 0);
  } finally {
    await agent.close();
    await cs.close();
  }
});

test('drain: close() takes no new jobs but lets the running one finish; readiness says draining; a second signal cuts it short', async () => {
  const cs = await control();
  const { store, executor, agent, job, outcomes } = setUp(cs, { FOREMAN_CORE_DRAIN_TIMEOUT: '60000' });
  try {
    cs.replies.push([job('long'), job('other')]);
    await agent.start();
    await until('both jobs to start', () => store.get('long')?.state === 'started' && store.get('other')?.state === 'started');
    await until('a successful poll', async () => (await agent.ready()) === undefined);
    const closing = agent.close();
    await settle();
    assert.equal(agent.draining, true);
    assert.match((await agent.ready()) ?? '', /draining/, 'readiness says draining');
    assert.equal(agent.health(), undefined, 'a draining agent is alive');
    executor.exit(executor.containerOf('long')?.id ?? '', 0);
    await until('long to stop', () => store.get('long')?.state === 'stopped');
    assert.equal(agent.draining, true, 'still draining: another job runs');
    agent.endDrain();
    await closing;
    assert.deepEqual(outcomes('long'), ['failed'], 'it ended by itself during the drain');
    assert.deepEqual(outcomes('other'), ['agent-shutdown'], 'the drain was cut short, so the last job was stopped');
  } finally {
    await agent.close();
    await cs.close();
  }
});

test('liveness asks the store alone; an engine that does not answer makes the agent not ready, never dead', async () => {
  const cs = await control();
  const { executor, agent, store } = setUp(cs);
  try {
    assert.equal(agent.health(), undefined, 'alive before it starts');
    assert.match((await agent.ready()) ?? '', /^the Docker engine at unix:\/\/\/var\/run\/docker\.sock does not answer: not connected yet/);
    await agent.start();
    await until('a successful poll', async () => (await agent.ready()) === undefined);
    assert.equal(agent.snapshot().engineUp, true, 'the snapshot says the engine is up');
    executor.up = false;
    assert.equal(agent.health(), undefined, 'an engine that does not answer is no reason to restart the agent');
    assert.match((await agent.ready()) ?? '', /^the Docker engine at unix:\/\/\/var\/run\/docker\.sock does not answer: connect ECONNREFUSED/);
    executor.up = true;
    assert.equal(await agent.ready(), undefined, 'ready again once it answers');
    const get = store.get.bind(store);
    store.get = () => {
      throw new Error('SQLITE_IOERR: disk I/O error');
    };
    assert.equal(agent.health(), 'the store does not answer: SQLITE_IOERR: disk I/O error', 'a store that does not answer is');
    store.get = get;
    assert.deepEqual(
      { ...agent.snapshot(), now: 0 },
      { slots: 2, running: 0, pending: 0, callbackBacklog: 0, callbackOldestAt: undefined, logBacklogLines: 0, engineUp: true, now: 0 },
      'what the metrics read',
    );
  } finally {
    await agent.close();
    await cs.close();
  }
});

test('a restart sends stored updates before its job API takes a new one (each job keeps its order), even while the engine is away', async () => {
  const cs = await control();
  const { clock, store, executor, agent, job } = setUp(cs);
  try {
    // Left by a previous run: a running job with one update not yet delivered.
    store.admit(job('ordered'), 'secret', 'c-ordered');
    for (const to of ['creating', 'started', 'running'] as const)
      store.transition('ordered', to, to === 'started' ? { containerId: 'gone', startedAt: clock.now() } : {});
    store.recordUpdate('ordered', {
      url: `${cs.url}/cb`,
      headers: { 'x-foreman-job-status': 'running', 'x-foreman-job-id': 'ordered' },
      body: Buffer.from('{"step":1}'),
    });
    executor.up = false;
    const starting = agent.start();
    await until('the stored update to be delivered', () => cs.callbacks.length === 1);
    assert.equal(cs.callbacks[0]?.headers['x-foreman-delivery-seq'], '1');
    assert.equal(agent.jobApiUrl, '', 'the job API is not serving yet: the engine has not answered');
    executor.up = true;
    await clock.advance(10_000);
    await starting;
  } finally {
    await agent.close();
    await cs.close();
  }
});
