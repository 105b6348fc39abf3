/** What a job's container used, sampled from the (fake) engine, in every final report of a job whose container ran. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_USAGE } from '../../executor/fake/fake-executor.ts';
import type { JobUsage } from '../../protocol/wire.ts';
import { settle } from '../../testing/clock-kit.ts';
import { jobSpec, makeKit, type Kit } from '../../testing/agent-kit.ts';

const MiB = 1024 * 1024;

async function running(kit: Kit, id: string, extra: Record<string, unknown> = {}): Promise<string> {
  kit.scheduler.receive([jobSpec(id, extra)]);
  await settle();
  const container = kit.executor.containerOf(id);
  assert.ok(container?.running, `the container of ${id} runs`);
  return container.id;
}

/** The container "uses" more: what the engine's next stats call answers. */
function uses(kit: Kit, containerId: string, usage: Partial<typeof NO_USAGE>): void {
  const container = kit.executor.containers.get(containerId);
  assert.ok(container, 'the container exists');
  container.usage = { ...NO_USAGE, ...usage };
}

const usageHeader = (kit: Kit, id: string): JobUsage | undefined => {
  const final = kit.delivered.filter((d) => d.jobId === id).find((d) => d.headers['x-foreman-job-outcome'] !== undefined);
  const header = final?.headers['x-foreman-usage'];
  return header === undefined ? undefined : (JSON.parse(header) as JobUsage);
};

test('a job that completes: its final update carries what its container used, sampled as it reported', async () => {
  const kit = makeKit({ usageIntervalMs: 1000, memoryLimit: 512 * MiB });
  const cid = await running(kit, 'done');
  uses(kit, cid, { cpuNs: 400e6, memoryBytes: 100 * MiB, pids: 3 });
  await kit.clock.advance(1000);
  // The peak passes between samples; the kernel's high-water mark (cgroup v1) still has it.
  uses(kit, cid, { cpuNs: 2_000e6, memoryBytes: 60 * MiB, memoryMaxBytes: 256 * MiB, pids: 2, networkRxBytes: 1234, networkTxBytes: 99 });
  await kit.clock.advance(500);
  const result = await kit.scheduler
    .track('done')
    .containerUpdated({ status: 'completed', headers: { 'x-foreman-job-status': 'completed', 'x-foreman-usage': '{"forged":true}' }, body: Buffer.from('{}') });
  assert.equal(result.kind, 'accepted', 'the completion was stored');
  const usage = usageHeader(kit, 'done');
  assert.deepEqual(
    usage,
    {
      cpuSeconds: 2,
      memoryPeakBytes: 256 * MiB,
      memoryLimitBytes: 512 * MiB,
      pidsPeak: 3,
      wallMs: 1500,
      networkRxBytes: 1234,
      networkTxBytes: 99,
    },
    'CPU from the sample taken as it reported, the peaks over every sample, the wall time from its start; the container cannot forge it',
  );
});

test('an ending the agent reports (a timeout) carries usage in its body and header, taken before the container is stopped', async () => {
  const kit = makeKit({ usageIntervalMs: 1000, completionTimeoutMs: 3000 });
  const cid = await running(kit, 'slow', { resources: { memory: 128 * MiB } });
  uses(kit, cid, { cpuNs: 2_500e6, memoryBytes: 50 * MiB, pids: 5 });
  await kit.clock.advance(3000);
  await settle();
  const [report] = kit.reports('slow');
  assert.equal(report?.outcome, 'timed-out', 'timed out');
  const body = report.body as { usage?: JobUsage };
  assert.deepEqual(
    body.usage,
    { cpuSeconds: 2.5, memoryPeakBytes: 50 * MiB, memoryLimitBytes: 128 * MiB, pidsPeak: 5, wallMs: 3000 },
    'the job asked for 128 MiB',
  );
  assert.deepEqual(usageHeader(kit, 'slow'), body.usage, 'the header says the same');
  const stopAt = kit.executor.calls.indexOf(`stop ${cid} 10000`);
  const lastSample = kit.executor.calls.lastIndexOf(`stats ${cid}`);
  assert.ok(lastSample >= 0 && lastSample < stopAt, 'the last sample was taken before the stop');
});

test('an OOM kill reports a peak of at least the limit; an exit reports the last sample', async () => {
  const kit = makeKit({ usageIntervalMs: 1000, memoryLimit: 64 * MiB });
  const oom = await running(kit, 'oom');
  uses(kit, oom, { cpuNs: 100e6, memoryBytes: 10 * MiB, pids: 1 });
  await kit.clock.advance(1000);
  kit.executor.exit(oom, 137, { oom: true });
  await settle();
  const killed = kit.reports('oom')[0]?.body as { usage?: JobUsage } | undefined;
  assert.equal(killed?.usage?.memoryPeakBytes, 64 * MiB, 'killed at its limit: the peak is the limit');
  assert.equal(killed.usage.cpuSeconds, 0.1, 'CPU from the last sample (its cgroup is gone)');
});

test('a job whose container never ran reports no usage; usage_interval 0 samples nothing and reports none', async () => {
  const kit = makeKit({ usageIntervalMs: 1000 });
  kit.scheduler.receive([jobSpec('bad', { image: 'missing/image:1' })]);
  await settle();
  assert.equal(kit.reports('bad')[0]?.outcome, 'pull-failed', 'the pull failed');
  assert.equal((kit.reports('bad')[0]?.body as { usage?: unknown }).usage, undefined, 'no container ran: no usage');

  const off = makeKit({ usageIntervalMs: 0, completionTimeoutMs: 1000 });
  await running(off, 'quiet');
  await off.clock.advance(1000);
  await settle();
  assert.equal(off.reports('quiet')[0]?.outcome, 'timed-out', 'timed out');
  assert.equal((off.reports('quiet')[0]?.body as { usage?: unknown }).usage, undefined, 'no usage');
  assert.ok(!off.executor.calls.some((c) => c.startsWith('stats ')), 'the engine was never asked');
});

test('a re-adopted container is sampled again, and its usage says what the restart left out', async () => {
  const kit = makeKit({ usageIntervalMs: 1000, completionTimeoutMs: 5000 });
  const cid = await running(kit, 'kept');
  uses(kit, cid, { cpuNs: 1_000e6, memoryBytes: 20 * MiB, pids: 2 });
  // A new runner for the same job, as after a restart: it finds the container running.
  const listed = await kit.executor.inspect(cid);
  // The first agent goes away leaving the job running (detach_on_terminate), and a second one takes it back.
  await kit.scheduler.detach();
  const again = makeKitSharing(kit);
  await again.scheduler.track('kept').reconcile(listed);
  await again.clock.advance(5000);
  await settle();
  const body = again.reports('kept')[0]?.body as { usage?: JobUsage } | undefined;
  assert.equal(body?.usage?.cpuSeconds, 1, 'CPU counts from the container start');
  assert.match(body.usage.note ?? '', /restarted/, 'the note says what the restart left out');
});

/** A second agent on the same store, engine and clock (a restart in memory). */
function makeKitSharing(kit: Kit): Kit {
  const again = makeKit({ usageIntervalMs: 1000, completionTimeoutMs: 5000, share: kit });
  return again;
}

test('a short job that reports before the launch saw its container run (a swarm start call returns late) is still sampled', async () => {
  const kit = makeKit({ usageIntervalMs: 1000 });
  kit.executor.holdStarts = true;
  kit.scheduler.receive([jobSpec('quick')]);
  await settle();
  const container = kit.executor.containerOf('quick');
  assert.ok(container, 'its container was created');
  // The engine runs it and the job is done; the start call has not returned yet.
  container.running = true;
  uses(kit, container.id, { cpuNs: 300e6, memoryBytes: 20 * MiB, pids: 2 });
  const result = await kit.scheduler
    .track('quick')
    .containerUpdated({ status: 'completed', headers: { 'x-foreman-job-status': 'completed' }, body: Buffer.from('{}') });
  kit.executor.releaseStarts();
  await settle();
  assert.equal(result.kind, 'accepted', 'the completion was stored');
  const usage = usageHeader(kit, 'quick');
  assert.equal(usage?.cpuSeconds, 0.3, `sampled as it reported: ${JSON.stringify(usage)}`);
  assert.equal(usage?.memoryPeakBytes, 20 * MiB, 'its memory too');
});
