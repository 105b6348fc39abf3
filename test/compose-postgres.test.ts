/**
 * examples/compose/postgres/docker-compose.yml, the several-instances setup docs/control-server.md shows, is a valid
 * compose file to Debian's docker-compose (1.29): two server instances on one PostgreSQL URL, their callbacks sent
 * to the load balancer, and a password required. (Its images come from a registry, so it is checked, not run; the
 * setup itself runs in test/control-server-ha.e2e.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from './support/paths.ts';

const COMPOSE = process.env.COMPOSE_CLI ?? 'docker-compose';
const file = join(repoRoot, 'examples/compose/postgres/docker-compose.yml');
const installed = spawnSync(COMPOSE, ['version', '--short'], { encoding: 'utf8' }).status === 0;

function config(env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(COMPOSE, ['-f', file, 'config'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test(
  'the PostgreSQL compose example is valid: two instances on one database behind the balancer',
  { skip: installed ? false : `${COMPOSE} is not installed` },
  () => {
    const ok = config({ POSTGRES_PASSWORD: 'secret-for-the-test' });
    assert.equal(ok.status, 0, ok.stderr);
    const services = (parse(ok.stdout) as { services: Record<string, { environment?: Record<string, string> }> }).services;
    const instances = ['control-server-1', 'control-server-2'].map((name) => services[name]?.environment ?? {});
    for (const env of instances) {
      assert.equal(env.FOREMAN_SERVER_DATABASE, 'postgres://foreman:secret-for-the-test@postgres:5432/foreman', 'each instance on the one database');
      assert.equal(env.FOREMAN_SERVER_PUBLIC_URL, 'http://127.0.0.1:8888', "jobs' URLs point at the balancer");
    }
    assert.ok(services.balancer !== undefined && services.agent !== undefined, 'a balancer and an agent');
    const missing = config({});
    assert.notEqual(missing.status, 0, 'without POSTGRES_PASSWORD compose refuses to start');
    assert.match(missing.stderr, /POSTGRES_PASSWORD/, 'naming what is missing');
  },
);
