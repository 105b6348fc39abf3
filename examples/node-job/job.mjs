// A foreman job in JavaScript with the foreman-job kit (packages/job; docs/writing-jobs.md walks through it).
// The same job as examples/shell-job/job.sh: five steps with progress, then the result; body.fail fails it.

/* global process, setTimeout, console */

import { createJobClient } from 'foreman-job';

// The default client reads FOREMAN_GET_JOB_ENDPOINT and FOREMAN_PUT_JOB_ENDPOINT and retries connection errors and
// 503 for two minutes; this one also says so on stderr each time, so the job's log shows it riding out a restart.
const { getJob, progress, complete, fail } = createJobClient({
  onRetry: ({ attempt, delayMs, reason }) => process.stderr.write(`retrying the job API (${reason}), attempt ${attempt}, in ${delayMs} ms\n`),
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const job = await getJob();
console.log(`got job: ${JSON.stringify(job)}`);
const { steps = 5, delayMs = 1000, fail: failing = false } = job.body ?? {};

if (failing) {
  console.error('failing on purpose');
  // The details go to the control server as a last update; the process exits 3 and the agent reports "failed".
  await fail({ error: 'failing on purpose' }, { exitCode: 3 });
}

for (let step = 1; step <= steps; step++) {
  console.log(`step ${step}/${steps}`);
  await sleep(delayMs);
  await progress(step / steps, { step });
}

await complete({ result: 'done', steps });
console.log('done');
