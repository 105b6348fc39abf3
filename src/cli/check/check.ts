import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { Agent, request } from '../../shared/http-client.ts';
import pkg from '../../../package.json' with { type: 'json' };
import { show } from '../../config/load.ts';
import { registryRows, registrySummary, REGISTRIES_KEY } from '../../config/registries.ts';
import { formatDuration } from '../../config/formats.ts';
import { isDurationKey, LEAF_KEYS } from '../../config/schema.ts';
import type { Config, LoadedConfig } from '../../config/types.ts';
import { encodeAttributes, HEADER, pollHeaders, userAgentFor } from '../../protocol/wire.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import { systemClock, type Timer } from '../../shared/clock.ts';
import { createDockerClient, describeEngineError } from '../../executor/docker/client.ts';
import { hostFacts } from '../../executor/docker/engine-facts.ts';
import { allowsInterContainerTraffic, iccWarning, settingProblems, type EngineInfo } from '../../executor/docker/hardening.ts';
import { checkSwarm } from './swarm.ts';

/** How long `check` waits for the Docker engine before calling it unreachable. */
const ENGINE_TIMEOUT_MS = 10_000;

/** `warn` is worth fixing but does not fail the check. */
type Status = 'ok' | 'note' | 'warn' | 'FAIL';

interface CheckLine {
  status: Status;
  text: string;
}

/**
 * `foreman check`: prints the effective configuration with where each value
 * came from, then probes the data directory, the Docker engine, the job
 * network and the control server. Resolves 0 when nothing failed, else 1.
 */
export async function runCheck(loaded: LoadedConfig, write: (line: string) => void, version: string = pkg.version): Promise<number> {
  const { config } = loaded;
  write(`foreman ${version} check`);
  write(`config file: ${loaded.file ?? 'none (settings come from env and defaults)'}`);
  write('');
  write('Effective configuration:');
  for (const line of describeConfig(loaded)) write(`  ${line}`);
  write('');
  write('Checks:');

  const lines: CheckLine[] = [...settingWarnings(config), await checkDataDir(config.core.data_dir)];
  lines.push(...(await checkDocker(config)));
  lines.push({ status: 'note', text: registrySummary(config.docker.registries) });
  lines.push(await checkControlServer(config.core, version));
  for (const { status, text } of lines) write(`  ${status.padEnd(4)}  ${text}`);

  const failures = lines.filter((line) => line.status === 'FAIL').length;
  write('');
  write(failures === 0 ? 'All checks passed.' : `${failures} check${failures === 1 ? '' : 's'} failed.`);
  return failures === 0 ? 0 : 1;
}

function describeConfig({ config, sources, file }: LoadedConfig): string[] {
  const rows: [key: string, value: string, source: string][] = [];
  const addLeaf = (key: string): void => {
    const [section = '', name = ''] = key.split('.');
    const value = (config as unknown as Record<string, Record<string, unknown>>)[section]?.[name];
    // A token read from token_file comes from that file, whatever `sources` says of core.token itself.
    const source = key === 'core.token' && config.core.token_file ? `core.token_file ${config.core.token_file}` : (sources[key] ?? 'default');
    rows.push([key, displayValue(key, value), source]);
  };
  LEAF_KEYS.filter((key) => key.startsWith('core.')).forEach(addLeaf);
  for (const table of ['env', 'labels'] as const) {
    const entries = Object.entries(config.core[table]);
    if (entries.length === 0) rows.push([`core.${table}`, '(none)', 'default']);
    for (const [name, value] of entries) {
      const key = `core.${table}.${name}`;
      rows.push([key, show(key, value), sources[key] ?? 'default']);
    }
  }
  for (const key of LEAF_KEYS.filter((k) => !k.startsWith('core.'))) {
    // One row per registry, saying where its password is but never what it is.
    if (key === REGISTRIES_KEY) rows.push(...registryRows(config.docker.registries, file));
    else addLeaf(key);
  }
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value, source]) => `${key.padEnd(width)} = ${value}  (${source})`);
}

function displayValue(key: string, value: unknown): string {
  if (value === undefined) {
    if (key === 'core.hostname') return '(not set: containers use the network gateway)';
    if (key === 'docker.user') return "(not set: the image's user)";
    if (key === 'docker.runtime') return "(not set: the engine's default)";
    return '(not set)';
  }
  if (key === 'metrics.address' && value === '') return '"" (metrics off)';
  if (key === 'health.address' && value === '') return '"" (none; foreman ping asks <data_dir>/foreman.sock)';
  if (key === 'tracing.endpoint' && value === '') return '"" (tracing off)';
  if (key === 'core.max_job_timeout' && value === 0) return '0 (no maximum)';
  if (typeof value === 'number' && isDurationKey(key) && value > 0) return `${value} (${formatDuration(value)})`;
  if (typeof value === 'string' && (key === 'core.url' || key === 'docker.url' || key === 'tracing.endpoint')) return JSON.stringify(withoutPassword(value));
  return show(key, value);
}

/** URLs may carry credentials; never print them. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return url;
  }
}

/** A minute: a completion timeout below it stops most real jobs (a CI build, a report) before they end. */
const SHORT_COMPLETION_TIMEOUT_MS = 60_000;

/** Settings that work but are likely mistakes in production. */
function settingWarnings(config: Config): CheckLine[] {
  const lines: CheckLine[] = [];
  const timeout = config.core.job_completion_timeout;
  if (timeout < SHORT_COMPLETION_TIMEOUT_MS) {
    lines.push({
      status: 'warn',
      text: `core.job_completion_timeout is ${formatDuration(timeout)}, under a minute: a job that runs longer without its own timeout is stopped and reported timed-out; set what your jobs need, e.g. "1h"`,
    });
  }
  const url = new URL(config.core.url);
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    lines.push({
      status: 'warn',
      text: `core.url sends the token over plain http:// to ${url.hostname}, which is not this host's loopback: anyone on the way can read it; use https://`,
    });
  }
  return lines;
}

/** `localhost`, 127.0.0.0/8 and ::1: addresses that never leave this host. */
function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '::1';
}

async function checkDataDir(dir: string): Promise<CheckLine> {
  try {
    const stats = await stat(dir);
    if (!stats.isDirectory()) return { status: 'FAIL', text: `data_dir ${dir} exists but is not a directory` };
    await access(dir, constants.W_OK);
    return { status: 'ok', text: `data_dir ${dir} exists and is writable` };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ENOENT') return { status: 'note', text: `data_dir ${dir} does not exist yet; the agent creates it at start` };
    if (code === 'EACCES' || code === 'EPERM') return { status: 'FAIL', text: `data_dir ${dir} is not writable` };
    return { status: 'FAIL', text: `data_dir ${dir}: ${describeHttpError(err)}` };
  }
}

async function checkDocker(config: Config): Promise<CheckLine[]> {
  const { url } = config.docker;
  const name = config.core.network_name;
  const engineUrl = withoutPassword(url);
  let docker: ReturnType<typeof createDockerClient>;
  let engine: Awaited<ReturnType<ReturnType<typeof createDockerClient>['version']>>;
  try {
    docker = createDockerClient(url, config.docker);
    engine = await withDeadline(docker.version(), ENGINE_TIMEOUT_MS, `no answer within ${ENGINE_TIMEOUT_MS} ms`);
  } catch (err) {
    return [{ status: 'FAIL', text: describeEngineError(engineUrl, err, config.docker) }];
  }
  const lines: CheckLine[] = [{ status: 'ok', text: `Docker engine ${engine.Version} (API ${engine.ApiVersion}) at ${engineUrl}${overTls(config.docker)}` }];

  try {
    const facts = await withDeadline(hostFacts(docker), ENGINE_TIMEOUT_MS, `no answer within ${ENGINE_TIMEOUT_MS} ms`);
    lines.push({ status: 'ok', text: `host facts sent on each poll (${HEADER.attributes}): ${encodeAttributes(facts, config.core.executor)}` });
  } catch (err) {
    lines.push({ status: 'warn', text: `could not read the host facts the agent sends on each poll: ${describeHttpError(err)}` });
  }

  const swarm = config.core.executor === 'swarm';
  try {
    const info = (await withDeadline(docker.info(), ENGINE_TIMEOUT_MS, `no answer within ${ENGINE_TIMEOUT_MS} ms`)) as EngineInfo;
    // Only what the engine is checked against; a swarm has no runtime setting at all: checkSwarm says so instead.
    const problems = settingProblems(
      { memoryLimit: config.docker.memory_limit, cpus: config.docker.cpus, runtime: swarm ? undefined : config.docker.runtime },
      info,
    );
    for (const text of problems) lines.push({ status: 'FAIL', text });
    if (problems.length === 0 && config.docker.runtime && !swarm)
      lines.push({ status: 'ok', text: `docker.runtime "${config.docker.runtime}" is offered by the engine` });
  } catch (err) {
    lines.push({ status: 'FAIL', text: `could not read the engine's runtimes and CPUs: ${describeHttpError(err)}` });
  }

  if (swarm) {
    const deadline = <T>(work: Promise<T>): Promise<T> => withDeadline(work, ENGINE_TIMEOUT_MS, `no answer within ${ENGINE_TIMEOUT_MS} ms`);
    return [...lines, ...(await checkSwarm(docker, { networkName: name, hostname: config.core.hostname, runtime: config.docker.runtime }, deadline))];
  }
  try {
    const network = (await withDeadline(docker.getNetwork(name).inspect(), ENGINE_TIMEOUT_MS, `no answer within ${ENGINE_TIMEOUT_MS} ms`)) as Parameters<
      typeof allowsInterContainerTraffic
    >[0];
    if (allowsInterContainerTraffic(network)) lines.push({ status: 'warn', text: iccWarning(name) });
    else lines.push({ status: 'ok', text: `network "${name}" exists; its containers cannot reach each other` });
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode === 404) {
      lines.push({ status: 'note', text: `network "${name}" does not exist yet; the agent creates it at start, with inter-container traffic off` });
    } else {
      lines.push({ status: 'FAIL', text: `could not inspect network "${name}": ${describeHttpError(err)}` });
    }
  }
  return lines;
}

/** What the engine line adds for TLS: which files the connection was checked with. */
function overTls({ url, ca, cert }: Config['docker']): string {
  if (!url.startsWith('https:') && !ca && !cert) return '';
  const server = ca ? `engine certificate checked against docker.ca ${ca}` : "engine certificate checked against the system's CAs";
  return ` over TLS (${server}${cert ? `; client certificate docker.cert ${cert}` : ''})`;
}

/** The same request the agent polls with, but asking for no jobs (capacity 0). */
async function checkControlServer(core: Pick<Config['core'], 'url' | 'token' | 'labels' | 'poll_timeout'>, version: string): Promise<CheckLine> {
  const { url, token, labels, poll_timeout: timeout } = core;
  const target = `control server ${withoutPassword(url)}`;
  const dispatcher = new Agent({ connect: { timeout } });
  try {
    const response = await request(url, {
      method: 'GET',
      dispatcher,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      headers: pollHeaders({ token, labels, userAgent: userAgentFor(version), capacity: 0 }),
    });
    await response.body.dump();
    const status = response.statusCode;
    if (status >= 200 && status < 300) return { status: 'ok', text: `${target} answered HTTP ${status}` };
    if (status === 401 || status === 403) return { status: 'FAIL', text: `${target}: token rejected (HTTP ${status}); check core.token` };
    return { status: 'FAIL', text: `${target} answered HTTP ${status}` };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const reason =
      code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT'
        ? `no answer within ${timeout} ms (core.poll_timeout)`
        : describeHttpError(err);
    return { status: 'FAIL', text: `${target} did not answer: ${reason}` };
  } finally {
    await dispatcher.destroy();
  }
}

async function withDeadline<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = systemClock.after(ms, () => reject(new Error(message)));
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    timer?.cancel();
  }
}
