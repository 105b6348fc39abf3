import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { testJobImage } from './support/image.ts';

const execFileAsync = promisify(execFile);
const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const DEADLINE_MS = 30_000;

interface RecordedPut {
  jobId: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** docker0's IPv4 address: containers on the default bridge reach the host there. */
async function dockerBridgeGateway(): Promise<string> {
  const fromInterfaces = networkInterfaces().docker0?.find((addr) => addr.family === 'IPv4')?.address;
  if (fromInterfaces) return fromInterfaces;
  const { stdout } = await execFileAsync('ip', ['-4', 'addr', 'show', 'docker0']);
  const match = /inet (\d+\.\d+\.\d+\.\d+)/.exec(stdout);
  if (!match?.[1]) throw new Error('docker0 has no IPv4 address');
  return match[1];
}

/** A stand-in for the agent's job API: serves GET /job/<id> from `jobs`, records PUT /job/<id>. */
function startJobApi(
  host: string,
  jobs: Map<string, unknown>,
): Promise<{ server: Server; puts: EventEmitter; received: Map<string, RecordedPut[]>; baseUrl: string }> {
  const puts = new EventEmitter();
  const received = new Map<string, RecordedPut[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const jobId = decodeURIComponent((req.url ?? '').replace(/^\/job\//, '').split('?')[0] ?? '');
      if (req.method === 'GET' && jobs.has(jobId)) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id: jobId, body: jobs.get(jobId) }));
      } else if (req.method === 'PUT' && jobs.has(jobId)) {
        const put: RecordedPut = { jobId, headers: req.headers, body: Buffer.concat(chunks).toString() };
        received.set(jobId, [...(received.get(jobId) ?? []), put]);
        res.statusCode = 204;
        res.end();
        puts.emit(`put:${jobId}`, put);
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, puts, received, baseUrl: `http://${host}:${port}` });
    });
  });
}

async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${DEADLINE_MS} ms waiting for ${what}`)), DEADLINE_MS);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('test job image', () => {
  const jobs = new Map<string, unknown>();
  const containers: Docker.Container[] = [];
  let api: Awaited<ReturnType<typeof startJobApi>>;
  let image: string;

  before(async () => {
    image = await testJobImage();
    api = await startJobApi(await dockerBridgeGateway(), jobs);
  });

  // Each test removes its container; this catches the ones a failed test left behind.
  after(async () => {
    await Promise.all(containers.map((container) => container.remove({ force: true }).catch(() => undefined)));
    if (api) await new Promise<void>((resolve) => api.server.close(() => resolve()));
  });

  async function runJob(body: unknown): Promise<{ jobId: string; container: Docker.Container; exit: Promise<{ StatusCode: number }> }> {
    const jobId = randomUUID();
    jobs.set(jobId, body);
    const container = await docker.createContainer({
      Image: image,
      name: `foreman-test-job-image-${jobId}`,
      Env: [`FOREMAN_GET_JOB_ENDPOINT=${api.baseUrl}/job/${jobId}`, `FOREMAN_PUT_JOB_ENDPOINT=${api.baseUrl}/job/${jobId}`],
      HostConfig: { Init: true, AutoRemove: false },
    });
    containers.push(container);
    await container.start();
    // Waiting after start is race-free: the container is kept (AutoRemove false), so an early exit still reports its code.
    // (Waiting before start would return at once: a created container already counts as not running.)
    const exit = container.wait() as Promise<{ StatusCode: number }>;
    // A test that fails before awaiting `exit` must not leave an unhandled rejection behind.
    exit.catch(() => undefined);
    return { jobId, container, exit };
  }

  it('sums body.values and PUTs completed {"result": sum}, then exits 0', async () => {
    const { jobId, container, exit } = await runJob({ values: [1, 2, 3] });
    const putArrived = once(api.puts, `put:${jobId}`);
    const [put] = (await withDeadline(putArrived, 'the completed PUT')) as [RecordedPut];

    assert.equal(put.headers['x-foreman-job-status'], 'completed');
    assert.equal(put.headers['x-foreman-job-progress'], '1');
    assert.equal(put.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(put.body), { result: 6 });
    assert.equal((await withDeadline(exit, 'the container to exit')).StatusCode, 0);
    assert.equal(api.received.get(jobId)?.length, 1);
    await container.remove();
  });

  it('action "exit" ends the container with body.code without completing', async () => {
    const { jobId, container, exit } = await runJob({ action: 'exit', code: 3, message: 'boom' });

    assert.equal((await withDeadline(exit, 'the container to exit')).StatusCode, 3);
    assert.equal(api.received.get(jobId), undefined, 'no PUT was sent');
    // Non-TTY logs are multiplexed frames; the message sits whole inside one frame.
    const logs = await container.logs({ stdout: false, stderr: true });
    assert.match(logs.toString(), /boom/);
    await container.remove();
  });
});
