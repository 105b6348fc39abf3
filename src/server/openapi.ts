// The head of the reference server's OpenAPI document; @fastify/swagger adds a path for each route from its schema.
// scripts/openapi.ts writes the whole document to docs/openapi/reference-server.yaml (test/openapi.test.ts checks it).
import pkg from '../../package.json' with { type: 'json' };
import { SESSION_COOKIE } from './auth.ts';

import type { SwaggerOptions } from '@fastify/swagger';

export const OPENAPI_INFO: NonNullable<Extract<SwaggerOptions, { openapi?: unknown }>['openapi']> = {
  openapi: '3.1.0',
  info: {
    title: 'foreman reference control server',
    version: pkg.version,
    description:
      'The API of `foreman server`: what agents call (the poll, each job’s callbackUrl and logsUrl) and what operators call (submit, cancel, page through jobs, agents, live events). Agents present an agent token; operators an admin or read-only token, or the dashboard’s session cookie. See docs/control-server.md.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  tags: [
    { name: 'agents', description: 'Called by foreman agents: an agent token for the poll; the job’s secret in its URLs for updates and logs' },
    { name: 'operators', description: 'An admin token, or a read-only one for reads; or the dashboard’s session cookie' },
    { name: 'dashboard', description: 'The dashboard’s session' },
    { name: 'health', description: 'For load balancers' },
  ],
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'an agent token (GET /job) or an admin or read-only token' },
      session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'set by POST /session' },
    },
  },
};
