import { hasEnded } from '../../jobs/state.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import { traced, type JobTrace } from '../../tracing/job-trace.ts';
import type { LaunchAbort } from './abort.ts';
import type { JobClocks } from './clocks.ts';
import { containerSpec } from './container.ts';
import type { RunnerContext } from './context.ts';
import type { JobLog } from './live-log.ts';
import type { UsageMeter } from './usage.ts';

/** The parts of one job's runner that its launch uses. */
export interface Launching {
  readonly id: string;
  readonly ctx: RunnerContext;
  readonly abort: LaunchAbort;
  readonly clocks: JobClocks;
  readonly meter: UsageMeter;
  readonly logs: JobLog | undefined;
  /** The job's trace, begun (or continued) for `job`. */
  trace(job?: JobRecord): JobTrace | undefined;
  /** The agent is going away: no timers. */
  stopping(): boolean;
  /** Gives the slot back; with `requeue`, the job queues again at the front first. */
  release(requeue?: boolean): void;
  /** The engine refused: the job ends (`pull-failed`, `start-failed`). */
  failed(err: unknown): Promise<void>;
}

/** Pulls (one pull shared by every job that needs the image), creates and starts the job's container. */
export async function launch(runner: Launching): Promise<void> {
  const { store, executor, clock, log, images, endpoints, options } = runner.ctx;
  // Cancelled before its turn came: the job never started, and the step that cancelled it ends it.
  if (runner.abort.reason) return runner.release();
  let job: JobRecord;
  try {
    job = store.transition(runner.id, 'creating', { postHookDue: runner.ctx.hooks?.postJobConfigured === true });
  } catch (err) {
    // Nothing changed: queue it again, then give the slot back, so the retry waits a moment.
    log.error({ jobId: runner.id, reason: describeHttpError(err) }, 'could not record the job start; will retry');
    return runner.release(true);
  }
  runner.clocks.armLaunch(job);
  const trace = runner.trace(job);
  const signal = runner.abort.signal;
  try {
    await runner.ctx.hooks?.preJob(job, signal);
    const image = { 'container.image.name': job.spec.image, 'foreman.pull.always': job.spec.alwaysPull === true };
    await traced(trace, 'pull', image, () => images.ensure(job.spec.image, job.spec.alwaysPull === true, signal));
    const secretsDir = runner.ctx.secrets?.materialize(job);
    const spec = containerSpec(job, endpoints.urlFor(job.id, job.secret), options.env, trace?.containerEnv, secretsDir);
    const containerId = await traced(trace, 'create', { 'container.name': job.containerName }, () => executor.create(spec, signal));
    // Started before the engine call returns, so a fast container's first request finds it ready.
    const started = store.transition(runner.id, 'started', { containerId, startedAt: clock.now() });
    runner.logs?.open(started);
    await startContainer(runner, containerId);
  } catch (err) {
    // Whoever aborted (a timeout, a cancel, the shutdown) has queued the step that ends the job.
    if (runner.abort.reason) log.debug({ jobId: runner.id, abort: runner.abort.reason }, 'launch abandoned');
    else await runner.failed(err);
  }
}

/** Starts the created container (also one found created after a restart); its clocks count from then. */
export async function startContainer(runner: Launching, containerId: string): Promise<void> {
  const { store, executor, clock, log, metrics } = runner.ctx;
  const trace = runner.trace();
  try {
    await traced(trace, 'start', { 'container.id': containerId }, () => executor.start(containerId, runner.abort.signal));
  } catch (err) {
    if (!runner.abort.reason) await runner.failed(err);
    return;
  }
  const stored = store.get(runner.id);
  if (stored) runner.logs?.follow(stored);
  if (!stored || hasEnded(stored.state)) return;
  // The job's clocks count from now, when the engine says the container runs, not from before the start call
  // (about 0.6 s earlier on Docker here, seconds on a swarm): a job gets its whole timeout.
  let job = stored;
  try {
    job = store.recordStart(runner.id, clock.now()) ?? stored;
  } catch (err) {
    log.error({ jobId: runner.id, reason: describeHttpError(err) }, 'could not record the container start; its timeouts count from before it');
  }
  if (job.startedAt !== null) trace?.running(containerId, job.startedAt);
  log.info({ jobId: runner.id, containerId, image: job.spec.image }, 'job container started');
  runner.meter.start(containerId);
  if (job.startedAt !== null) metrics?.startLatency.observe(Math.max(0, job.startedAt - job.receivedAt) / 1000);
  if (!runner.stopping()) runner.clocks.armRunning(job);
}
