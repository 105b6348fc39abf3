/**
 * docs/openapi/reference-server.yaml is what the reference server's routes say (scripts/openapi.ts generates it from
 * their schemas with @fastify/swagger), and it is a valid OpenAPI 3.1 document.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { parse } from 'yaml';
import { REFERENCE_SERVER_YAML, referenceServerYaml } from '../scripts/openapi.ts';

test('docs/openapi/reference-server.yaml matches the routes of src/server/ (npm run build:openapi writes it)', async () => {
  const onDisk = await readFile(REFERENCE_SERVER_YAML, 'utf8');
  const fromRoutes = await referenceServerYaml();
  assert.ok(onDisk === fromRoutes, 'docs/openapi/reference-server.yaml is out of date: run npm run build:openapi');
});

test('docs/openapi/reference-server.yaml is a valid OpenAPI 3.1 document naming every route', async () => {
  const document = parse(await readFile(REFERENCE_SERVER_YAML, 'utf8')) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  const validator = new Validator();
  const result = await validator.validate(document);
  assert.equal(validator.version, '3.1', 'validated as OpenAPI 3.1');
  assert.ok(result.valid, `not valid OpenAPI 3.1: ${JSON.stringify(result.errors, null, 2)}`);
  const routes = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
  for (const route of [
    'GET /job',
    'PUT /job/{id}',
    'POST /job/{id}/logs',
    'POST /jobs',
    'POST /jobs/{id}/cancel',
    'GET /jobs',
    'GET /jobs/{id}',
    'GET /jobs/{id}/logs',
    'GET /jobs/{id}/logs/events',
    'GET /agents',
    'GET /events',
    'POST /session',
    'GET /healthz',
  ]) {
    assert.ok(routes.includes(route), `${route} is in the document (it has: ${routes.join(', ')})`);
  }
});

test('a document that breaks OpenAPI 3.1 is refused by the validator', async () => {
  const validator = new Validator();
  const result = await validator.validate({ openapi: '3.1.0', info: { title: 'x' }, paths: { '/a': { get: { responses: { 200: { content: {} } } } } } });
  assert.equal(result.valid, false, 'info without a version, a response without a description');
});
