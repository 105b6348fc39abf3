"""A foreman job in Python with the foreman_job kit (packages/job-python; docs/writing-jobs.md walks through it).
The same job as examples/shell-job/job.sh: five steps with progress, then the result; body.fail fails it."""

import json
import sys
import time

from foreman_job import JobClient, RetryInfo


def say_retry(info: RetryInfo) -> None:
    # The default client retries quietly; this one says so, so the job's log shows it riding out a restart.
    print(f"retrying the job API ({info.reason}), attempt {info.attempt}, in {info.delay * 1000:.0f} ms", file=sys.stderr, flush=True)


# Reads FOREMAN_GET_JOB_ENDPOINT and FOREMAN_PUT_JOB_ENDPOINT; retries connection errors and 503 for two minutes.
client = JobClient(on_retry=say_retry)

job = client.get_job()
print(f"got job: {json.dumps(job)}", flush=True)
body = job["body"] or {}
steps = body.get("steps", 5)
delay = body.get("delayMs", 1000) / 1000

if body.get("fail"):
    print("failing on purpose", file=sys.stderr, flush=True)
    # The details go to the control server as a last update; the process exits 3 and the agent reports "failed".
    client.fail({"error": "failing on purpose"}, exit_code=3)

for step in range(1, steps + 1):
    print(f"step {step}/{steps}", flush=True)
    time.sleep(delay)
    client.progress(step / steps, {"step": step})

client.complete({"result": "done", "steps": steps})
print("done", flush=True)
