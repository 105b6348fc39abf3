// Test job run by node inside the foreman test image (no dependencies).
//
// It GETs FOREMAN_GET_JOB_ENDPOINT -> { id, body } and then acts on body.action:
//   (none)       sum body.values (numbers), PUT completed {"result": sum}; exit 0.
//   "progress"   body.steps (default 5) PUTs of running with progress i/steps, body.delayMs (default 200) apart,
//                then completed with the sum as above (or, with body.then = "sleep", sleep forever without completing).
//   "exit"       print body.message (default "job crashed") to stderr, exit with body.code (default 3).
//   "sleep"      sleep body.ms (default forever) without completing, then exit 0.
//   "raw"        PUT exactly body.headers (must include x-foreman-job-status) with body.payload (a string, sent
//                verbatim; body.payloadBase64 for arbitrary bytes) using node:http, so no headers are added
//                beyond host/content-length/connection; log the status and exit 0.
//   "probe"      GET each of body.urls, then PUT completed {"probe": [{url, status}]} (status 0 + error if the GET failed;
//                each GET gives up after body.timeoutMs, default 10000).
//   "self"       PUT completed with what the container may do: {"status": {NoNewPrivs, CapEff, CapPrm, CapBnd, Uid, Gid}
//                from /proc/self/status, "pidsMax" (the cgroup's pids.max, v2 or v1), "rootWritable"/"tmpWritable"
//                (writing a file in / and /tmp worked; else "rootError"/"tmpError" hold the error code), "reach"
//                (a probe of body.urls, as above)}.
//   "serve"      listen on body.port (default 8080) on every interface, answering "serving" to any request; PUT running
//                once listening, then sleep forever.
//   "put-twice"  PUT completed twice; print both statuses; exit 0.
//   "oom"        allocate and touch memory until killed; exits 1 if still alive after body.maxMb (default 4096) MB.
//   "burn"       spin on the CPU until this process has used body.cpuMs (default 2000) ms of CPU time, then PUT completed
//                {"cpuMs": the CPU time it measured}.
//   "alloc"      allocate and touch body.mb (default 256) MiB, hold it body.holdMs (default 0), then PUT completed
//                {"mb", "cgroupPeakBytes"}: the peak its own memory cgroup recorded (v1 memory.max_usage_in_bytes, v2
//                memory.peak), or null where neither is readable.
//   "log"        print body.lines (default 1000) numbered lines, `log <n> <stream> <padding>`: every third line (n % 3 == 2)
//                to stderr, the rest to stdout; with body.longEvery = k every k-th line (n % k == k - 1) is padded with
//                "x" to body.longBytes (default 40000) bytes. body.perTick lines (default all) are printed, then a pause
//                of body.tickMs (default 0). body.print (strings) and then
//                `NAME=value` for each name in body.printEnv are printed to stdout first. Then completes
//                with {"lines": n}, or with body.then = "sleep" sleeps forever.
//   "secret"     read /run/foreman/secrets/<body.name>, print it raw, base64, URL-encoded, JSON-escaped and cut across a
//                16 KiB line split, then PUT completed {"sha256", "length", "mode" (octal), "uid", "names" (the folder's
//                files), "writeError" (the code writing a file there gave)}; with body.then = "sleep", sleep forever.
//   "redact"     POST {"values": [v]} to the job API's redactions route, v being body.value reversed (so that v is in no
//                job spec), print its status, then print v raw and base64, then PUT completed {"redactStatus"}.
// body.onTerm changes what SIGTERM (the container's stop signal) does, for any action:
//   "ignore"     nothing: the job runs on until it is killed.
//   "report"     PUT running with progress 0.99 and {"cleanup": true}, then exit with body.termExitCode (default 0).
// Every PUT's response status is printed to stdout. A failed GET/PUT, or a non-2xx answer to the final completed
// PUT, prints the reason to stderr and exits 1. An unknown action exits 2. GET and PUT retry connection errors and
// 503s for up to two minutes, so a job rides out an agent restart.

/* global process, Buffer, URL, fetch, setTimeout, AbortSignal -- Node globals; eslint has no Node environment for .mjs */

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const getEndpoint = process.env.FOREMAN_GET_JOB_ENDPOINT;
const putEndpoint = process.env.FOREMAN_PUT_JOB_ENDPOINT;

// Written synchronously: process.exit would drop a write still queued for a pipe.
function fail(message, code = 1) {
  try {
    writeSync(2, `${message}\n`);
  } catch {
    process.stderr.write(`${message}\n`);
  }
  process.exit(code);
}

function errorMessage(err) {
  const cause = err && err.cause ? `: ${err.cause.message ?? String(err.cause)}` : '';
  return `${err instanceof Error ? err.message : String(err)}${cause}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Like a well-behaved job: ride out an agent restart (connection refused) or a 503 by retrying,
// for up to RETRY_FOR_MS in all.
const RETRY_FOR_MS = 120_000;
async function fetchWithRetry(url, init) {
  const deadline = Date.now() + RETRY_FOR_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(url, init);
      if (response.status !== 503 || Date.now() > deadline) return response;
      await response.arrayBuffer();
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(Math.min(2000, 100 * 2 ** attempt));
  }
}

// A pending timer keeps the event loop alive; a bare unresolved promise would let node exit.
function sleepForever() {
  return new Promise(() => {
    const rearm = () => setTimeout(rearm, 2 ** 31 - 1);
    rearm();
  });
}

function sumValues(body) {
  const values = body && Array.isArray(body.values) ? body.values : [];
  return values.reduce((sum, value) => (typeof value === 'number' && Number.isFinite(value) ? sum + value : sum), 0);
}

async function getJob() {
  if (!getEndpoint) fail('FOREMAN_GET_JOB_ENDPOINT is not set');
  let response;
  try {
    response = await fetchWithRetry(getEndpoint);
  } catch (err) {
    fail(`GET job failed: ${errorMessage(err)}`);
  }
  if (!response.ok) fail(`GET job failed: HTTP ${response.status}`);
  try {
    return await response.json();
  } catch (err) {
    fail(`GET job returned invalid JSON: ${errorMessage(err)}`);
  }
}

async function put(status, progress, payload, label = status) {
  if (!putEndpoint) fail('FOREMAN_PUT_JOB_ENDPOINT is not set');
  let response;
  try {
    response = await fetchWithRetry(putEndpoint, {
      method: 'PUT',
      headers: {
        'content-type': 'application/json',
        'x-foreman-job-status': status,
        'x-foreman-job-progress': String(progress),
      },
      body: JSON.stringify(payload),
    });
    await response.arrayBuffer();
  } catch (err) {
    fail(`PUT ${label} failed: ${errorMessage(err)}`);
  }
  process.stdout.write(`PUT ${label} -> ${response.status}\n`);
  return response.status;
}

async function complete(payload) {
  const status = await put('completed', 1, payload);
  if (status < 200 || status > 299) fail(`PUT completed was rejected: HTTP ${status}`);
}

function rawPut(headers, payload) {
  const url = new URL(putEndpoint);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: 'PUT', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function probe(urls, timeoutMs = 10_000) {
  const results = [];
  for (const url of urls) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await response.arrayBuffer();
      results.push({ url, status: response.status });
    } catch (err) {
      results.push({ url, status: 0, error: errorMessage(err) });
    }
  }
  return results;
}

// What the container's process may do, read from inside: privileges, ids, the pids limit, writable paths.
async function selfReport(urls, timeoutMs) {
  const status = {};
  for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const match = /^(NoNewPrivs|CapEff|CapPrm|CapBnd|Uid|Gid):\s*(.*)$/.exec(line);
    if (match) status[match[1]] = match[2].trim().split(/\s+/).join(' ');
  }
  let pidsMax = null;
  for (const path of ['/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max']) {
    try {
      pidsMax = readFileSync(path, 'utf8').trim();
      break;
    } catch {
      // The other cgroup version's path.
    }
  }
  const report = { status, pidsMax };
  for (const [name, dir] of [
    ['root', '/'],
    ['tmp', '/tmp/'],
  ]) {
    const file = `${dir}foreman-write-test-${process.pid}`;
    try {
      writeFileSync(file, 'x');
      unlinkSync(file);
      report[`${name}Writable`] = true;
    } catch (err) {
      report[`${name}Writable`] = false;
      report[`${name}Error`] = err && err.code ? err.code : errorMessage(err);
    }
  }
  report.reach = await probe(urls, timeoutMs);
  return report;
}

function allocateUntilKilled(maxMb) {
  const chunks = [];
  const chunkMb = 16;
  for (let allocated = 0; allocated < maxMb; allocated += chunkMb) {
    // Filling with a non-zero byte touches every page (zeroed allocations may stay lazily unmapped).
    chunks.push(Buffer.alloc(chunkMb * 1024 * 1024, 1));
    if (allocated % 256 === 0) process.stdout.write(`allocated ${allocated + chunkMb} MB\n`);
  }
  fail(`still alive after allocating ${maxMb} MB (${chunks.length} chunks)`);
}

function stringList(value) {
  return Array.isArray(value) ? value.filter((item) => typeof item === 'string') : [];
}

function positiveInt(value, fallback) {
  return Number.isInteger(value) && value >= 0 ? value : fallback;
}

async function printLines(opts) {
  for (const text of Array.isArray(opts.print) ? opts.print : []) process.stdout.write(`${String(text)}\n`);
  for (const name of Array.isArray(opts.printEnv) ? opts.printEnv : []) process.stdout.write(`${String(name)}=${process.env[name] ?? ''}\n`);
  const lines = positiveInt(opts.lines, 1000);
  const perTick = positiveInt(opts.perTick, lines) || lines;
  const tickMs = positiveInt(opts.tickMs, 0);
  const longEvery = positiveInt(opts.longEvery, 0);
  const longBytes = positiveInt(opts.longBytes, 40_000);
  for (let n = 0; n < lines; n++) {
    const stream = n % 3 === 2 ? 'stderr' : 'stdout';
    let text = `log ${n} ${stream} `;
    if (longEvery > 0 && n % longEvery === longEvery - 1) text = text.padEnd(longBytes, 'x');
    (stream === 'stderr' ? process.stderr : process.stdout).write(`${text}\n`);
    if ((n + 1) % perTick === 0 && n + 1 < lines && tickMs > 0) await sleep(tickMs);
  }
  // Node writes to pipes asynchronously: wait until both streams have handed everything to the engine.
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))));
}

const job = await getJob();
const body = job && typeof job === 'object' ? job.body : undefined;
const opts = body && typeof body === 'object' && !Array.isArray(body) ? body : {};
process.stdout.write(`job ${String(job?.id)} action ${opts.action ?? '(default)'}\n`);

if (opts.onTerm === 'ignore') {
  process.on('SIGTERM', () => process.stdout.write('SIGTERM ignored\n'));
} else if (opts.onTerm === 'report') {
  process.on('SIGTERM', () => {
    process.stdout.write('SIGTERM: reporting, then exiting\n');
    void put('running', 0.99, { cleanup: true }, 'running (cleanup)').then(() => process.exit(Number.isInteger(opts.termExitCode) ? opts.termExitCode : 0));
  });
}

switch (opts.action) {
  case undefined:
    await complete({ result: sumValues(body) });
    break;

  case 'progress': {
    const steps = Number.isInteger(opts.steps) && opts.steps > 0 ? opts.steps : 5;
    const delayMs = typeof opts.delayMs === 'number' && opts.delayMs >= 0 ? opts.delayMs : 200;
    for (let step = 1; step <= steps; step++) {
      process.stdout.write(`step ${step}/${steps}: working\n`);
      await put('running', step / steps, { step, steps }, `running ${step}/${steps}`);
      await sleep(delayMs);
    }
    if (opts.then === 'sleep') await sleepForever();
    await complete({ result: sumValues(body) });
    break;
  }

  case 'exit':
    if (typeof opts.ms === 'number' && opts.ms >= 0) await sleep(opts.ms);
    fail(typeof opts.message === 'string' ? opts.message : 'job crashed', Number.isInteger(opts.code) ? opts.code : 3);
    break;

  case 'sleep':
    if (typeof opts.ms === 'number' && opts.ms >= 0) await sleep(opts.ms);
    else await sleepForever();
    break;

  case 'raw': {
    const headers = opts.headers && typeof opts.headers === 'object' ? opts.headers : {};
    const payload = typeof opts.payloadBase64 === 'string' ? Buffer.from(opts.payloadBase64, 'base64') : typeof opts.payload === 'string' ? opts.payload : '';
    try {
      const status = await rawPut(headers, payload);
      process.stdout.write(`PUT raw -> ${status}\n`);
    } catch (err) {
      fail(`PUT raw failed: ${errorMessage(err)}`);
    }
    break;
  }

  case 'probe': {
    await complete({ probe: await probe(stringList(opts.urls), positiveInt(opts.timeoutMs, 10_000)) });
    break;
  }

  case 'self':
    await complete(await selfReport(stringList(opts.urls), positiveInt(opts.timeoutMs, 10_000)));
    break;

  case 'serve': {
    const port = positiveInt(opts.port, 8080);
    const server = createServer((_req, res) => res.end('serving'));
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', resolve);
    });
    process.stdout.write(`serving on port ${port}\n`);
    await put('running', 0.5, { serving: port }, 'running (serving)');
    await sleepForever();
    break;
  }

  case 'put-twice': {
    const payload = { result: sumValues(body) };
    const first = await put('completed', 1, payload, 'completed #1');
    const second = await put('completed', 1, payload, 'completed #2');
    process.stdout.write(`put-twice statuses ${first} ${second}\n`);
    break;
  }

  case 'secret': {
    const dir = '/run/foreman/secrets';
    const file = `${dir}/${String(opts.name)}`;
    const value = readFileSync(file, 'utf8');
    const { mode, uid } = statSync(file);
    const encoded = JSON.stringify(value).slice(1, -1);
    process.stdout.write(`raw ${value}\nbase64 ${Buffer.from(value).toString('base64')}\nurl ${encodeURIComponent(value)}\njson ${encoded}\n`);
    // The engine splits a line at 16 KiB: this one cuts the value in two across the split.
    process.stdout.write(`${'p'.repeat(16_384 - Math.floor(value.length / 2))}${value}\n`);
    let writeError = null;
    try {
      writeFileSync(`${dir}/new`, 'x');
    } catch (err) {
      writeError = err.code;
    }
    const payload = {
      sha256: createHash('sha256').update(value).digest('hex'),
      length: value.length,
      mode: (mode & 0o777).toString(8),
      uid,
      names: readdirSync(dir),
      writeError,
    };
    if (opts.then === 'sleep') {
      await put('running', 0.5, payload, 'read the secret');
      await sleepForever();
    }
    await complete(payload);
    break;
  }

  case 'redact': {
    const url = new URL(putEndpoint);
    url.pathname += '/redactions';
    const value = [...String(opts.value)].reverse().join('');
    const response = await fetchWithRetry(url.toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ values: [value] }),
    });
    await response.arrayBuffer();
    process.stdout.write(`redactions -> ${response.status}\nafter raw ${value}\nafter base64 ${Buffer.from(value).toString('base64')}\n`);
    await complete({ redactStatus: response.status });
    break;
  }

  case 'log':
    await printLines(opts);
    if (opts.then === 'sleep') await sleepForever();
    await complete({ lines: positiveInt(opts.lines, 1000) });
    break;

  case 'burn': {
    const wantMs = positiveInt(opts.cpuMs, 2000);
    const cpuMs = () => {
      const used = process.cpuUsage();
      return (used.user + used.system) / 1000;
    };
    let x = 0;
    while (cpuMs() < wantMs) for (let i = 0; i < 100000; i++) x += Math.sqrt(i);
    await complete({ cpuMs: Math.round(cpuMs()), x: x > 0 });
    break;
  }

  case 'alloc': {
    const mb = positiveInt(opts.mb, 256);
    const held = [];
    // Filling with a non-zero byte touches every page.
    for (let n = 0; n < mb; n += 16) held.push(Buffer.alloc(Math.min(16, mb - n) * 1024 * 1024, 1));
    await sleep(positiveInt(opts.holdMs, 0));
    const peak = ['/sys/fs/cgroup/memory/memory.max_usage_in_bytes', '/sys/fs/cgroup/memory.peak']
      .map((file) => {
        try {
          return Number(readFileSync(file, 'utf8').trim());
        } catch {
          return NaN;
        }
      })
      .find((n) => Number.isFinite(n));
    await complete({ mb, chunks: held.length, cgroupPeakBytes: peak ?? null });
    break;
  }

  case 'oom':
    allocateUntilKilled(typeof opts.maxMb === 'number' && opts.maxMb > 0 ? opts.maxMb : 4096);
    break;

  default:
    fail(`unknown action ${JSON.stringify(opts.action)}`, 2);
}

process.exit(0);
