import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDockerClient, describeEngineError, EngineSettingError, type EngineTls } from './client.ts';

const dir = mkdtempSync(join(tmpdir(), 'foreman-client-'));
const file = (name: string): string => join(dir, name);

/** What docker-modem was built with (its typings leave out protocol, host, port and the TLS files). */
function modemOf(
  engineUrl: string,
  tls?: EngineTls,
): { protocol: string; host?: string; port?: number; socketPath?: string; ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return createDockerClient(engineUrl, tls).modem as unknown as ReturnType<typeof modemOf>;
}

function settingError(engineUrl: string, tls: EngineTls): string {
  try {
    createDockerClient(engineUrl, tls);
  } catch (err) {
    assert.ok(err instanceof EngineSettingError, String(err));
    return err.message;
  }
  assert.fail('no error');
}

before(() => {
  // A self-signed certificate serves as CA and client certificate alike: only reading and pairing are checked here.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', file('key.pem'), '-out', file('cert.pem'), '-days', '1', '-subj', '/CN=unit'], {
    stdio: 'ignore',
  });
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', file('other-key.pem')], { stdio: 'ignore' });
  writeFileSync(file('not-pem.txt'), 'hello\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('createDockerClient', () => {
  test('tcp:// with TLS files is TLS on 2376, as the docker CLI with DOCKER_TLS_VERIFY; the files are read', () => {
    const modem = modemOf('tcp://10.0.0.5', { ca: file('cert.pem'), cert: file('cert.pem'), key: file('key.pem') });
    assert.equal(modem.protocol, 'https');
    assert.equal(modem.host, '10.0.0.5');
    assert.equal(modem.port, 2376);
    assert.deepEqual(modem.ca, readFileSync(file('cert.pem')));
    assert.deepEqual(modem.cert, readFileSync(file('cert.pem')));
    assert.deepEqual(modem.key, readFileSync(file('key.pem')));
    assert.equal(modemOf('tcp://10.0.0.5:3000', { ca: file('cert.pem') }).port, 3000);
  });

  test('tcp:// without TLS files stays plain HTTP on 2375; https:// takes docker.ca alone', () => {
    const plain = modemOf('tcp://10.0.0.5');
    assert.deepEqual([plain.protocol, plain.port, plain.ca], ['http', 2375, undefined]);
    const https = modemOf('https://engine.example:2400', { ca: file('cert.pem') });
    assert.deepEqual([https.protocol, https.port, https.cert], ['https', 2400, undefined]);
    assert.ok(https.ca, 'the CA is passed to the engine connection');
    assert.equal(modemOf('unix:///run/docker.sock').socketPath, '/run/docker.sock');
  });

  test('TLS files with unix:// or http:// are refused, naming the keys', () => {
    assert.equal(
      settingError('unix:///var/run/docker.sock', { ca: file('cert.pem') }),
      'docker.ca is set, but docker.url uses unix://, which has no TLS: use tcp://host:2376 or https://host:2376, or unset it',
    );
    assert.equal(
      settingError('http://10.0.0.5:2375', { cert: file('cert.pem'), key: file('key.pem') }),
      'docker.cert, docker.key are set, but docker.url uses http://, which has no TLS: use tcp://host:2376 or https://host:2376, or unset them',
    );
  });

  test('a file that cannot be read is one line naming the key and the path', () => {
    assert.equal(settingError('tcp://h', { ca: file('missing.pem') }), `docker.ca ${file('missing.pem')} cannot be read: no such file`);
    assert.equal(settingError('tcp://h', { ca: dir }), `docker.ca ${dir} cannot be read: it is a directory`);
    assert.equal(settingError('https://h', { cert: file('cert.pem'), key: file('nope.pem') }), `docker.key ${file('nope.pem')} cannot be read: no such file`);
  });

  test('cert without key (or the reverse), a non-PEM file and a key of another certificate are refused', () => {
    assert.equal(
      settingError('tcp://h', { ca: file('cert.pem'), cert: file('cert.pem') }),
      'docker.cert is set but docker.key is not: a client certificate needs both',
    );
    assert.equal(settingError('tcp://h', { key: file('key.pem') }), 'docker.key is set but docker.cert is not: a client certificate needs both');
    assert.equal(settingError('tcp://h', { ca: file('not-pem.txt') }), `docker.ca ${file('not-pem.txt')} holds no PEM certificate`);
    assert.equal(settingError('tcp://h', { cert: file('key.pem'), key: file('key.pem') }), `docker.cert ${file('key.pem')} holds no PEM certificate`);
    assert.equal(settingError('tcp://h', { cert: file('cert.pem'), key: file('cert.pem') }), `docker.key ${file('cert.pem')} holds no PEM private key`);
    assert.equal(
      settingError('tcp://h', { cert: file('cert.pem'), key: file('other-key.pem') }),
      `docker.key ${file('other-key.pem')} is not the private key of docker.cert ${file('cert.pem')}`,
    );
  });
});

describe('describeEngineError', () => {
  const tls = { ca: '/etc/foreman/ca.pem', cert: '/etc/foreman/cert.pem', key: '/etc/foreman/key.pem' };
  const url = 'tcp://10.0.0.5:2376';
  const fail = (code: string, message: string, extra: Record<string, unknown> = {}): Error => Object.assign(new Error(message), { code, ...extra });

  test('an engine certificate from another CA names docker.ca, or the system CAs without it', () => {
    for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_SIGNATURE_FAILURE']) {
      assert.equal(
        describeEngineError(url, fail(code, 'x'), tls),
        `Docker engine at ${url}: the engine's TLS certificate is not signed by docker.ca (/etc/foreman/ca.pem)`,
      );
    }
    assert.equal(
      describeEngineError('https://h', fail('SELF_SIGNED_CERT_IN_CHAIN', 'x')),
      "Docker engine at https://h: the engine's TLS certificate is not signed by a CA this system trusts: set docker.ca",
    );
  });

  test('a certificate for another host, as Node reports it', () => {
    const err = fail('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: IP: 127.0.0.2 is not in the cert's list: 127.0.0.1", {
      host: '127.0.0.2',
      reason: "IP: 127.0.0.2 is not in the cert's list: 127.0.0.1",
    });
    assert.equal(
      describeEngineError(url, err, tls),
      `Docker engine at ${url}: the engine's TLS certificate is not made out to 127.0.0.2 (IP: 127.0.0.2 is not in the cert's list: 127.0.0.1)`,
    );
  });

  test('the engine refusing the client certificate, or wanting one', () => {
    const required = fail(
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      'error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:rec_layer_s3.c:1601:SSL alert number 116\n',
      {
        reason: 'tlsv13 alert certificate required',
      },
    );
    assert.equal(
      describeEngineError(url, required, { ca: tls.ca }),
      `Docker engine at ${url}: the engine requires a client certificate: set docker.cert and docker.key (TLS alert "certificate required")`,
    );
    // TLS 1.2 reports the alert on write, as EPROTO with the alert only in the message.
    const bad = fail('EPROTO', 'write EPROTO 80AC:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:rec_layer_s3.c:1601:');
    assert.equal(
      describeEngineError(url, bad, tls),
      `Docker engine at ${url}: the engine refused the client certificate docker.cert (/etc/foreman/cert.pem) (TLS alert "bad certificate")`,
    );
    assert.equal(
      describeEngineError(url, fail('ECONNRESET', 'socket hang up'), tls),
      `Docker engine at ${url}: the engine closed the connection during the TLS exchange: it may have refused the client certificate docker.cert (/etc/foreman/cert.pem)`,
    );
  });

  test('TLS spoken to a plain-HTTP port', () => {
    const err = fail('EPROTO', 'write EPROTO 808C:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:ssl3_record.c:350:\n');
    assert.match(describeEngineError(url, err, tls), /: the engine did not answer in TLS: docker.url may name a plain-HTTP port/);
  });

  test('without TLS, and for failures that are not about TLS, the line is unchanged', () => {
    assert.equal(
      describeEngineError('unix:///x.sock', fail('ECONNRESET', 'socket hang up')),
      'no Docker engine at unix:///x.sock: start Docker or set docker.url (socket hang up)',
    );
    assert.equal(
      describeEngineError(url, fail('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:2376'), tls),
      `no Docker engine at ${url}: start Docker or set docker.url (connect ECONNREFUSED 10.0.0.5:2376)`,
    );
    assert.equal(
      describeEngineError(url, new EngineSettingError('docker.ca /x cannot be read: no such file')),
      `Docker engine at ${url}: docker.ca /x cannot be read: no such file`,
    );
  });
});
