#!/bin/sh
# A foreman job in POSIX shell with curl (docs/writing-jobs.md walks through it).
#
# The agent gives the container two URLs and nothing else: FOREMAN_GET_JOB_ENDPOINT to read the job, and
# FOREMAN_PUT_JOB_ENDPOINT to report progress and the result. Everything the job prints goes to the job's live log.
set -eu

# Every call retries connection errors and 503 (and 408, 429, 500, 502, 504) for up to two minutes: while the agent
# restarts (an upgrade, a crash) its job API does not answer, and the same request succeeds once it is back.
# --fail-with-body: any other error status (409: the job has ended; 404: wrong URL) fails the call, and `set -e`
# then ends the job with curl's exit code.
api() {
  curl --silent --show-error --fail-with-body \
    --retry 60 --retry-delay 2 --retry-max-time 120 --retry-connrefused \
    "$@"
}

# Report an update: $1 is running or completed, $2 the progress (0 to 1), $3 a JSON body.
report() {
  api -X PUT "$FOREMAN_PUT_JOB_ENDPOINT" \
    -H "x-foreman-job-status: $1" -H "x-foreman-job-progress: $2" \
    -H 'content-type: application/json' --data "$3" >/dev/null
}

# 1. Read the job: {"id": "...", "body": <whatever the control server put there>}.
job=$(api "$FOREMAN_GET_JOB_ENDPOINT")
echo "got job: $job"

# A job that fails: exit without reporting completed, and the agent reports outcome "failed" with this exit code
# and the last lines of output.
case "$job" in
  *'"fail":true'*)
    echo "failing on purpose" >&2
    exit 3
    ;;
esac

# 2. Do the work, reporting progress as it goes.
steps=5
step=1
while [ "$step" -le "$steps" ]; do
  echo "step $step/$steps"
  sleep 1
  report running "0.$((step * 2 - 1))" "{\"step\": $step}"
  step=$((step + 1))
done

# 3. Report the result. After this the agent stops and removes the container; the exit code no longer matters.
report completed 1 '{"result": "done", "steps": 5}'
echo "done"
