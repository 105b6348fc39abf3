import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullImageReference, imageMatcher, imagePatternRegExp } from './image-pattern.ts';

test('the full form of a reference names registry, library/ and tag as the engine resolves them', () => {
  const cases: Array<[string, string]> = [
    ['node', 'docker.io/library/node:latest'],
    ['node:20', 'docker.io/library/node:20'],
    ['team/app', 'docker.io/team/app:latest'],
    ['docker.io/node', 'docker.io/library/node:latest'],
    ['index.docker.io/team/app:1', 'docker.io/team/app:1'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1'],
    ['registry.example.com/ci/build', 'registry.example.com/ci/build:latest'],
    ['registry.example.com:443/ci/build@sha256:' + 'a'.repeat(64), 'registry.example.com:443/ci/build@sha256:' + 'a'.repeat(64)],
    ['node:20@sha256:' + 'b'.repeat(64), 'docker.io/library/node:20@sha256:' + 'b'.repeat(64)],
  ];
  for (const [reference, full] of cases) assert.equal(fullImageReference(reference), full, reference);
});

test('* stays within one path part, ** crosses parts, everything else is literal', () => {
  assert.ok(imagePatternRegExp('a/*').test('a/b:1'), '* matches one path segment');
  assert.ok(!imagePatternRegExp('a/*').test('a/b/c'), '* does not cross a slash');
  assert.ok(imagePatternRegExp('a/**').test('a/b/c:1'), '** crosses slashes');
  assert.ok(imagePatternRegExp('a.b/c').test('a.b/c'), 'a dot is a literal dot');
  assert.ok(!imagePatternRegExp('a.b/c').test('axb/c'), '. is literal');
  assert.ok(!imagePatternRegExp('a?').test('ab'), '? is literal');
  assert.ok(!imagePatternRegExp('node').test('node:20'), 'whole reference');
  assert.ok(!imagePatternRegExp('Node:*').test('node:20'), 'case-sensitive');
});

test('a reference is allowed when a pattern matches it as written or in full; no patterns allow all', () => {
  const allowed = imageMatcher(['foreman-test-job:*', 'registry.example.com/ci/**', 'docker.io/library/*']);
  for (const image of ['foreman-test-job:latest', 'registry.example.com/ci/a/b:1', 'node:20', 'node', 'docker.io/library/alpine:3']) {
    assert.ok(allowed(image), image);
  }
  for (const image of ['registry.example.com/other/a', 'evil.example.com/ci/a', 'team/app:1', 'registry.example.com/ci']) {
    assert.ok(!allowed(image), image);
  }
  const local = imageMatcher(['foreman-test-job:*']);
  assert.ok(local('foreman-test-job'), 'an untagged reference means :latest');
  assert.ok(local('docker.io/library/foreman-test-job:1'), 'the same image written in full');
  assert.ok(!local('foreman-test-job/x:1'), 'a local name is not a docker.io one');
  assert.ok(!local('evil.example.com/foreman-test-job:1'), 'another registry is another image');
  assert.ok(imageMatcher(['team/*'])('docker.io/team/app'), 'team/* matches docker.io/team/app');
  assert.ok(!imageMatcher(['team/*'])('docker.io/library/team'), 'team/* does not match docker.io/library/team');
  assert.ok(imageMatcher([])('anything/at:all'), 'no patterns allow any image');
});
