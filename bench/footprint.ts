/** The agent's idle memory beside a bare node process (`npm run bench -- --only idle`). */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { spawnAgent, testEnv } from '../test/support/agents.ts';
import { cleanup } from '../test/support/containers.ts';
import { FakeControlServer } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';

const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

const CLOCK_TICKS = 100;

/** CPU seconds a process has used: user + system, or one of them. */
export function cpuOf(pid: number, part: 'all' | 'user' | 'system' = 'all'): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const user = Number(fields[11]);
    const system = Number(fields[12]);
    return (part === 'user' ? user : part === 'system' ? system : user + system) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Resident memory in MB: all of it, and the anonymous part (heap, stacks), which excludes mapped files such as the node binary. */
export function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' | 'VmHWM' = 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
  return kb / 1024;
}

export interface IdleRss {
  /** Just started: the first polls done, startup garbage not yet collected. */
  early: number;
  /** After a minute of idling, once V8's memory reducer has given back what startup used. */
  settled: number;
  settledAnon: number;
}

/** Median of 5 samples, one per poll, from the poll numbered `from` on. */
async function sampleRss(pid: number, polls: () => number, from: number): Promise<{ rss: number; anon: number }> {
  const samples: Array<{ rss: number; anon: number }> = [];
  for (let i = 0; i < 5; i++) {
    await waitFor('the next poll', () => polls() >= from + i, 120_000, 100);
    samples.push({ rss: rssMb(pid), anon: rssMb(pid, 'RssAnon') });
  }
  samples.sort((a, b) => a.rss - b.rss);
  return samples[2] ?? { rss: NaN, anon: NaN };
}

/**
 * RSS of an idle agent polling every second: just started, and after a minute. `executable` runs another build
 * (a script that `exec`s its `node bin/foreman.js`, so the pid is node's), for a baseline in the same run.
 */
export async function idleAgentRss(extraEnv: Record<string, string>, nodeFlags: string[], executable?: string): Promise<IdleRss> {
  const control = await new FakeControlServer().start();
  const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'warn', FOREMAN_CORE_POLL_FREQUENCY: '1000' });
  const agent = spawnAgent(env, extraEnv, nodeFlags, [], executable);
  try {
    const pid = agent.child.pid ?? 0;
    const polls = (): number => control.polls.length;
    const early = await sampleRss(pid, polls, 3);
    const settled = await sampleRss(pid, polls, 60);
    return { early: early.rss, settled: settled.rss, settledAnon: settled.anon };
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
    await control.close();
    await cleanup(env);
  }
}

/**
 * Extra node flags for the agent under test, from BENCH_AGENT_FLAGS: "--cpu-prof --cpu-prof-dir=/tmp/prof"
 * profiles it; "--no-opt" and the like compare V8 settings.
 */
export function benchAgentFlags(): string[] {
  return process.env.BENCH_AGENT_FLAGS?.split(' ').filter(Boolean) ?? [];
}

/** The tuning the systemd unit and the agent image apply: a 1 MB young generation, two malloc arenas. */
export const TUNED = { env: { MALLOC_ARENA_MAX: '2' }, flags: ['--max-semi-space-size=1'] };

export async function benchIdle(): Promise<void> {
  // Three agents of each kind, side by side, since one process's RSS varies by several MB from run to run.
  const plain: IdleRss[] = [];
  const tuned: IdleRss[] = [];
  for (let round = 0; round < 3; round++) {
    const [a, b] = await Promise.all([idleAgentRss({}, []), idleAgentRss(TUNED.env, TUNED.flags)]);
    plain.push(a);
    tuned.push(b);
  }
  // A bare node process that has loaded nothing: what any Node.js agent costs at least.
  const node = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  await once(node, 'spawn');
  const pidOf = node.pid ?? 0;
  const bareRss = await waitFor(
    'bare node to settle',
    async () => {
      await new Promise((r) => setTimeout(r, 1000));
      return rssMb(pidOf);
    },
    10_000,
  );
  const bareAnon = rssMb(pidOf, 'RssAnon');
  node.kill();
  const median = (runs: IdleRss[], pick: (r: IdleRss) => number): number => sortNum(runs.map(pick))[Math.floor(runs.length / 2)] ?? NaN;
  const all = (runs: IdleRss[], pick: (r: IdleRss) => number): string => runs.map((r) => fmt(pick(r))).join(', ');
  const settled = (r: IdleRss): number => r.settled;
  const early = (r: IdleRss): number => r.early;
  console.log('\n## Idle footprint');
  console.log('agent RSS, idle, polling every 1 s (median of 3 agents, each the median of 5 samples):');
  console.log(`  after a minute idle: ${fmt(median(plain, settled))} MB (all: ${all(plain, settled)}); target ≤ 60 MB`);
  console.log(`  just started (polls 3-7): ${fmt(median(plain, early))} MB (all: ${all(plain, early)})`);
  console.log(
    `  with ${TUNED.flags.join(' ')} and MALLOC_ARENA_MAX=2 (as the systemd unit and image run it): ${fmt(median(tuned, settled))} MB after a minute (all: ${all(tuned, settled)}), ${fmt(median(tuned, early))} MB just started`,
  );
  console.log(`bare \`node -e\`: ${fmt(bareRss)} MB; ratio ${fmt(median(plain, settled) / bareRss, 2)}× (tuned ${fmt(median(tuned, settled) / bareRss, 2)}×)`);
  console.log(
    `of which anonymous (heap, not the mapped node binary), after a minute: agent ${fmt(median(plain, (r) => r.settledAnon))} MB (tuned ${fmt(median(tuned, (r) => r.settledAnon))} MB), bare node ${fmt(bareAnon)} MB`,
  );
}
