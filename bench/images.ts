/**
 * Warm hosts: jobs of five distinct images over three agents, each agent on a Docker engine of its own (a private
 * dockerd, test/support/private-engine.ts; agents on one engine would share its image store), handed out by the
 * reference control server (the bundle). The figure is the start latency, from POST /jobs to the job's process
 * running in its container (the job reports its own start time; the host's clock is the container's), with the
 * server's image preference (`--image-preference 5s`, the default) and without it (`0`), in the same run.
 *
 * Each image is the test job image plus a 64 MiB layer of its own, served by a private registry (Debian's
 * docker-registry). Every run starts with none of the five on any engine (only the shared base layer, pulled once at
 * set-up), fresh agents and a fresh server; both settings get the same sequence of images at the same times, and the
 * runs alternate. Needs root (private engines) and docker-registry; otherwise it says why and skips.
 *
 *   npm run bench -- --only images [--images-jobs 24] [--images-rounds 2] [--images-gap 2500]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEADER } from '../src/protocol/wire.ts';
import type { JobView } from '../src/server/rows.ts';
import { NODE_IN_IMAGE } from '../scripts/scratch-image.ts';
import { type SpawnedAgent, spawnAgent, stopAgent, testEnv } from '../test/support/agents.ts';
import { docker } from '../test/support/containers.ts';
import { operatorFetch } from '../test/support/control-server.ts';
import { testJobImage } from '../test/support/image.ts';
import { type PrivateEngine, privateEngineUnavailable, startPrivateEngine } from '../test/support/private-engine.ts';
import { follow, Registry } from '../test/support/registry.ts';
import { waitFor } from '../test/support/wait.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, type Instance, startInstance, stopInstance } from './handout.ts';

const IMAGES = 5;
const AGENTS = 3;
const SLOTS = 2;
const LAYER_MIB = 64;

/** The job: reports when its process started (`performance.timeOrigin`) and completes. */
const COMMAND = [
  NODE_IN_IMAGE,
  '-e',
  `const startedAt = Math.round(performance.timeOrigin);
fetch(process.env.FOREMAN_PUT_JOB_ENDPOINT, { method: 'PUT', headers: { 'content-type': 'application/json', '${HEADER.jobStatus}': 'completed' }, body: JSON.stringify({ startedAt }) })
  .then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));`,
];

interface Sample {
  readonly image: number;
  readonly agentId: string;
  readonly submittedAt: number;
  readonly startedAt: number;
}

const pull = async (engine: PrivateEngine, ref: string): Promise<void> => follow(await engine.docker.pull(ref));

/** Pushes the base and the five images to the registry, leaving the host engine as it was. */
async function pushImages(registry: Registry): Promise<{ base: string; images: string[] }> {
  const local = await testJobImage();
  const prefix = `127.0.0.1:${registry.port}/bench-images`;
  const auth = { authconfig: { username: '', password: '', serveraddress: `127.0.0.1:${registry.port}` } };
  const base = `${prefix}/base:1`;
  const images = Array.from({ length: IMAGES }, (_, i) => `${prefix}/image-${i}:1`);
  const context = mkdtempSync(join(tmpdir(), 'foreman-bench-images-'));
  try {
    await docker.getImage(local).tag({ repo: `${prefix}/base`, tag: '1' });
    await follow(await docker.getImage(base).push(auth));
    for (const [i, ref] of images.entries()) {
      writeFileSync(join(context, 'layer'), randomBytes(LAYER_MIB * 1024 * 1024));
      writeFileSync(join(context, 'Dockerfile'), `FROM ${local}\nCOPY layer /layer-${i}\n`);
      execFileSync('docker', ['build', '-q', '-t', ref, context], { stdio: ['ignore', 'ignore', 'pipe'] });
      await follow(await docker.getImage(ref).push(auth));
    }
  } finally {
    for (const ref of [base, ...images])
      await docker
        .getImage(ref)
        .remove()
        .catch(() => undefined);
    rmSync(context, { recursive: true, force: true });
  }
  return { base, images };
}

/** The same for every run: which image each job uses (a seeded sequence), one job every `gapMs`. */
function plan(jobs: number): number[] {
  let seed = 0x2f6b_13a7;
  return Array.from({ length: jobs }, () => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0;
    return (seed >>> 0) % IMAGES;
  });
}

async function admin(server: Instance, path: string, init: RequestInit = {}): Promise<unknown> {
  const res = await operatorFetch(ADMIN_TOKEN)(`${server.base}${path}`, { ...init, headers: { 'content-type': 'application/json' } });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

/** One run: fresh server and agents, no job image on any engine; returns each job's start latency. */
async function runOnce(preference: string, engines: readonly PrivateEngine[], images: readonly string[], sequence: readonly number[], gapMs: number) {
  for (const engine of engines)
    for (const ref of images)
      await engine.docker
        .getImage(ref)
        .remove({ force: true })
        .catch(() => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'foreman-bench-images-run-'));
  let server: Instance | undefined;
  const agents: SpawnedAgent[] = [];
  const networks: Array<{ engine: PrivateEngine; name: string }> = [];
  const agentDirs: string[] = [];
  try {
    server = await startInstance(join(dir, 'server.db'), ['--image-preference', preference, '--agent-timeout', '15s', '--log-level', 'warn']);
    for (const engine of engines) {
      const env = testEnv(`${server.base}/job`, {
        FOREMAN_CORE_TOKEN: AGENT_TOKEN,
        FOREMAN_DOCKER_URL: engine.url,
        FOREMAN_CORE_MAX_CONCURRENT_JOBS: String(SLOTS),
        FOREMAN_CORE_POLL_FREQUENCY: '250',
        FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '0',
        FOREMAN_LOG_LEVEL: 'info',
      });
      // The job network, with a subnet of the private engine's own range (the agent uses a network it finds).
      await engine.createNetwork(env.networkName, { 'foreman.managed': 'true' });
      networks.push({ engine, name: env.networkName });
      agentDirs.push(env.dir);
      agents.push(spawnAgent(env));
    }
    const live = server;
    await waitFor('three agents polling', async () => ((await admin(live, '/agents')) as unknown[]).length >= AGENTS, 60_000, 200);
    const submitted = new Map<string, { image: number; at: number }>();
    const start = Date.now();
    for (const [n, image] of sequence.entries()) {
      const wait = start + n * gapMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const at = Date.now();
      const job = (await admin(live, '/jobs', { method: 'POST', body: JSON.stringify({ image: images[image], command: COMMAND }) })) as { id: string };
      submitted.set(job.id, { image, at });
    }
    // One list a poll (a run's jobs fit one page of 500), not a GET per job.
    const ended = await waitFor(
      'every job to end',
      async () => {
        const jobs = ((await admin(live, `/jobs?status=completed,canceled&limit=500`)) as JobView[]).filter((job) => submitted.has(job.id));
        return jobs.length === submitted.size ? jobs : undefined;
      },
      300_000,
      250,
    );
    const samples = ended.map((job): Sample => {
      const startedAt = (job.result as { startedAt?: unknown } | null)?.startedAt;
      if (job.outcome !== 'succeeded' || typeof startedAt !== 'number') throw new Error(`job ${job.id} ended ${job.outcome}: ${JSON.stringify(job.result)}`);
      const { image, at } = submitted.get(job.id)!;
      return { image, agentId: job.agentId ?? '', submittedAt: at, startedAt };
    });
    return samples;
  } finally {
    for (const agent of agents) await stopAgent(agent);
    if (server) await stopInstance(server);
    for (const { engine, name } of networks)
      await engine.docker
        .getNetwork(name)
        .remove()
        .catch(() => undefined);
    for (const made of [dir, ...agentDirs]) rmSync(made, { recursive: true, force: true });
  }
}

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

function summary(samples: readonly Sample[], runs: number) {
  const latencies = samples.map((s) => s.startedAt - s.submittedAt).sort((a, b) => a - b);
  // A pull per agent and image per run (concurrent jobs of one image share one).
  const pulls = new Set(samples.map((s) => `${s.agentId} ${s.image}`)).size;
  return {
    pulls: pulls / runs,
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    mean: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    max: latencies.at(-1) ?? NaN,
  };
}

export async function benchImages(jobs: number, rounds: number, gapMs: number): Promise<void> {
  const why =
    privateEngineUnavailable() ?? (spawnSync('sh', ['-c', 'command -v docker-registry']).status === 0 ? undefined : 'docker-registry is not installed');
  if (why) {
    console.log(`\n## Images: skipped (${why})`);
    return;
  }
  const registry = await new Registry().start();
  const engines: PrivateEngine[] = [];
  try {
    const { base, images } = await pushImages(registry);
    for (let i = 0; i < AGENTS; i++) engines.push(await startPrivateEngine());
    // The shared base layer on every engine: a cold start pulls only the image's own layer.
    for (const engine of engines) await pull(engine, base);
    const coldStarted = performance.now();
    await pull(engines[0]!, images[0]!);
    const coldPullMs = performance.now() - coldStarted;
    const sequence = plan(jobs);
    const modes = [
      { label: 'without preference (`--image-preference 0`)', preference: '0', samples: [] as Sample[] },
      { label: 'with preference (`5s`, the default)', preference: '5s', samples: [] as Sample[] },
    ];
    for (let round = 0; round < rounds; round++) {
      // Alternating, so drift in the machine's speed hits both alike.
      for (const mode of round % 2 === 0 ? modes : [...modes].reverse())
        mode.samples.push(...(await runOnce(mode.preference, engines, images, sequence, gapMs)));
    }
    const fmt = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : 'n/a');
    console.log(
      `\n## Warm hosts: ${jobs} jobs of ${IMAGES} images (each its own ${LAYER_MIB} MiB layer) over ${AGENTS} agents × ${SLOTS} slots, one every ${gapMs} ms; ${rounds} run${rounds === 1 ? '' : 's'} each`,
    );
    console.log('| control server | pulls per run | start p50 ms | p90 ms | mean ms | max ms |\n|---|---|---|---|---|---|');
    const [without, withPreference] = modes.map((mode) => ({ mode, s: summary(mode.samples, rounds) }));
    for (const { mode, s } of [without!, withPreference!])
      console.log(`| ${mode.label} | ${s.pulls.toFixed(1)} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.mean)} | ${fmt(s.max)} |`);
    console.log(
      `with the preference: mean start ${(withPreference!.s.mean / without!.s.mean).toFixed(2)}× and p90 ${(withPreference!.s.p90 / without!.s.p90).toFixed(2)}× without it; one cold pull of an image's own layer took ${fmt(coldPullMs)} ms at set-up`,
    );
  } finally {
    for (const engine of engines) await engine.stop();
    await registry.stop();
  }
}
