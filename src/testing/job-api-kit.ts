// For the job API's tests: a server over a backend that accepts every request.
import { createRequire } from 'node:module';
import pino from 'pino';
import { createJobApi, type JobApiBackend, type JobApiServer } from '../job-api/server.ts';

export function openApi(backend: Partial<JobApiBackend> = {}): JobApiServer {
  return createJobApi({
    log: pino({ level: 'silent' }),
    maxBodySize: 1024,
    backend: {
      authorize: () => true,
      fetchJob: (id) => Promise.resolve({ status: 200, body: { id } }),
      updateJob: () => Promise.resolve({ status: 200, body: {} }),
      addRedactions: (_id, values) => Promise.resolve({ status: 200, body: { redacting: values.length } }),
      ...backend,
    },
  });
}

/** Whether this process has loaded fastify (each test file runs in its own process). */
export const loadedFastify = (): boolean => Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes('/node_modules/fastify/'));
