import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExecutorJobError } from '../../executor/executor.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { launchFailedDetails } from './endings.ts';
import { secretsOf } from './container.ts';

const job = {
  id: 'j1',
  secret: 'job-secret-xyz',
  spec: { id: 'j1', image: 'img', body: null, callbackUrl: 'http://h/cb', env: { '': 'job-value', BAD: 'nul\u0000job-value-2' } },
} as unknown as JobRecord;

test("an engine message that echoes env entries is reported with the job's, [core.env]'s and the secret's values hidden", () => {
  const secrets = secretsOf(job, { CORE: 'core-value' });
  const messages = [
    'creating the container failed: invalid environment variable: =job-value',
    'starting the container failed: environment variable value can\'t contain null(\\x00): "BAD=nul\\x00job-value-2": unknown',
    'creating the container failed: invalid environment variable: CORE=core-value',
    'creating the container failed: FOREMAN_GET_JOB_ENDPOINT=http://h/job/j1?token=job-secret-xyz',
  ];
  for (const message of messages) {
    const { failed, details } = launchFailedDetails(new ExecutorJobError('create', message), secrets);
    const { message: reported } = details('start-failed', 'creating');
    assert.equal(failed, 'start');
    assert.match(reported, /\[redacted\]/, reported);
    for (const secret of ['job-value', 'core-value', 'job-secret-xyz']) assert.ok(!reported.includes(secret), reported);
  }
});

test('an engine that did not answer is reported as such, also redacted', () => {
  const { details } = launchFailedDetails(new Error('socket hang up near core-value'), secretsOf(undefined, { CORE: 'core-value' }));
  assert.equal(details('start-failed', 'creating').message, 'the Docker engine did not answer: socket hang up near [redacted]');
});
