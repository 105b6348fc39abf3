/** The agent's idle memory beside a bare node process (`npm run bench -- --only idle`). */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { cleanup, FakeControlServer, spawnAgent, testEnv, waitFor } from '../test/support/harness.ts';

const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

/** Resident memory in MB: all of it, and the anonymous part (heap, stacks), which excludes mapped files such as the node binary. */
export function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' | 'VmHWM' = 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
  return kb / 1024;
}

/** Median RSS (and anonymous RSS) of an idle agent polling every second, over 5 polls. */
async function idleAgentRss(extraEnv: Record<string, string>, nodeFlags: string[]): Promise<{ rss: number; anon: number }> {
  const control = await new FakeControlServer().start();
  const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'warn', FOREMAN_CORE_POLL_FREQUENCY: '1000' });
  const agent = spawnAgent(env, extraEnv, nodeFlags);
  try {
    await waitFor('a few polls', () => control.polls.length >= 3, 30_000, 100);
    const pid = agent.child.pid ?? 0;
    const samples: Array<{ rss: number; anon: number }> = [];
    for (let i = 0; i < 5; i++) {
      samples.push({ rss: rssMb(pid), anon: rssMb(pid, 'RssAnon') });
      await waitFor('the next poll', () => control.polls.length >= 4 + i, 10_000, 100);
    }
    samples.sort((a, b) => a.rss - b.rss);
    return samples[2] ?? { rss: NaN, anon: NaN };
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
    await control.close();
    await cleanup(env);
  }
}

/** The tuning the systemd unit and the agent image apply: a 1 MB young generation, two malloc arenas. */
const TUNED = { env: { MALLOC_ARENA_MAX: '2' }, flags: ['--max-semi-space-size=1'] };

export async function benchIdle(): Promise<void> {
  // Three agents of each kind, alternating, since one process's RSS varies by several MB from run to run.
  const plain: number[] = [];
  const tuned: number[] = [];
  const anon: { plain: number[]; tuned: number[] } = { plain: [], tuned: [] };
  for (let round = 0; round < 3; round++) {
    const a = await idleAgentRss({}, []);
    plain.push(a.rss);
    anon.plain.push(a.anon);
    const b = await idleAgentRss(TUNED.env, TUNED.flags);
    tuned.push(b.rss);
    anon.tuned.push(b.anon);
  }
  // A bare node process that has loaded nothing: what any Node.js agent costs at least.
  const node = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  await once(node, 'spawn');
  const pidOf = node.pid ?? 0;
  const bareRss = await waitFor('bare node to settle', async () => {
    await new Promise((r) => setTimeout(r, 1000));
    return rssMb(pidOf);
  }, 10_000);
  const bareAnon = rssMb(pidOf, 'RssAnon');
  node.kill();
  const median = (xs: number[]): number => sortNum(xs)[Math.floor(xs.length / 2)] ?? NaN;
  console.log('\n## Idle footprint');
  console.log(`agent RSS, idle, polling every 1 s (median of 3 agents, each the median of 5 samples): ${fmt(median(plain))} MB (all: ${plain.map((x) => fmt(x)).join(', ')}); target ≤ 60 MB`);
  console.log(`  with ${TUNED.flags.join(' ')} and MALLOC_ARENA_MAX=2 (as the systemd unit and image run it): ${fmt(median(tuned))} MB (all: ${tuned.map((x) => fmt(x)).join(', ')})`);
  console.log(`bare \`node -e\`: ${fmt(bareRss)} MB; ratio ${fmt(median(plain) / bareRss, 2)}× (tuned ${fmt(median(tuned) / bareRss, 2)}×)`);
  console.log(`of which anonymous (heap, not the mapped node binary): agent ${fmt(median(anon.plain))} MB (tuned ${fmt(median(anon.tuned))} MB), bare node ${fmt(bareAnon)} MB`);
}

