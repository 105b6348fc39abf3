/**
 * A job's `secrets`: kept in this process's memory only (the store keeps their names, never their values), written
 * as files to a per-job directory on a tmpfs of the engine's host, bound read-only into the container at
 * /run/foreman/secrets, and removed once the container stopped. Docker 20.10 cannot take files into a container's
 * tmpfs before it starts (the archive upload finds no such path: the tmpfs is mounted at start), nor into a tmpfs
 * volume (the upload mounts it and unmounts it again, and what was written goes with it), so the agent writes the
 * files itself; the container's config names only the directory. Why not Swarm's secrets: docs/security.md.
 */
import { chmodSync, chownSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ExecutorJobError } from '../../executor/executor.ts';
import { hasEnded } from '../../jobs/state.ts';
import type { JobRecord } from '../../jobs/store.ts';
import type { JobSpec } from '../../shared/job-spec.ts';
import { REDACTIONS_PER_JOB } from '../../protocol/wire.ts';

/** statfs's f_type of a tmpfs: secrets are never written where they would reach a disk. */
const TMPFS_MAGIC = 0x01021994;

export interface SecretsOptions {
  /** The folder on a tmpfs of the engine's host the per-job directories go under (`docker.secrets_dir`). */
  readonly dir: string;
  readonly agentId: string;
  /** Why jobs with secrets cannot run here at all (the Swarm executor, a remote engine); undefined when they can. */
  readonly unsupported: string | undefined;
  /** The container's user (`docker.user`), numeric `uid[:gid]`, who owns the files; by name or unset: root. */
  readonly user: string | undefined;
}

/** A job's spec as stored: each secret's name kept, its value blanked. */
export function withoutSecretValues(spec: JobSpec): JobSpec {
  if (!spec.secrets) return spec;
  return { ...spec, secrets: Object.fromEntries(Object.keys(spec.secrets).map((name) => [name, ''])) };
}

/** Every form a value may take in a log: as it is, base64 (both alphabets), URL-encoded and JSON-escaped. */
export function redactionForms(value: string): string[] {
  if (value.length === 0) return [];
  const base64 = Buffer.from(value).toString('base64');
  const forms = [
    value,
    base64,
    base64.replace(/=+$/, ''),
    Buffer.from(value).toString('base64url'),
    encodeURIComponent(value),
    JSON.stringify(value).slice(1, -1),
  ];
  return [...new Set(forms)].filter((form) => form.length > 0);
}

export class JobSecrets {
  private readonly log: Logger;
  private readonly options: SecretsOptions;
  /** The values, by job id: only here, only while the job is live. */
  private readonly values = new Map<string, Readonly<Record<string, string>>>();
  /** Values jobs added through the job API, by job id: in memory only too. */
  private readonly redactions = new Map<string, string[]>();
  private refusal: string | undefined | null = null;

  constructor(log: Logger, options: SecretsOptions) {
    this.log = log;
    this.options = options;
  }

  /** Why a job with secrets is refused (`invalid`), or undefined when this agent can deliver them. */
  refuses(spec: JobSpec): string | undefined {
    if (!spec.secrets || Object.keys(spec.secrets).length === 0) return undefined;
    if (this.refusal === null) this.refusal = this.options.unsupported ?? this.checkDir();
    return this.refusal;
  }

  /** Keeps a received job's values; returns the spec to store, without them. */
  hold(spec: JobSpec): JobSpec {
    if (spec.secrets && Object.keys(spec.secrets).length > 0) this.values.set(spec.id, spec.secrets);
    return withoutSecretValues(spec);
  }

  /** The job's values and their encoded forms, to hide in its logs and reports. */
  hidden(jobId: string): string[] {
    return [...Object.values(this.values.get(jobId) ?? {}), ...(this.redactions.get(jobId) ?? [])].flatMap(redactionForms);
  }

  /** Adds values the job wants hidden; returns their forms to hide, or why not (`REDACTIONS_PER_JOB`). */
  redact(jobId: string, values: readonly string[]): { forms: string[] } | { error: string } {
    const held = this.redactions.get(jobId) ?? [];
    const fresh = [...new Set(values)].filter((value) => !held.includes(value));
    if (held.length + fresh.length > REDACTIONS_PER_JOB) return { error: `a job may add at most ${REDACTIONS_PER_JOB} values to redact` };
    this.redactions.set(jobId, [...held, ...fresh]);
    return { forms: fresh.flatMap(redactionForms) };
  }

  /**
   * True when a live job's values to hide are not in this process: it got secrets or added redactions before a
   * restart. An ended job's are released on purpose (its container stopped), so it is never lost.
   */
  lost(job: JobRecord): boolean {
    if (hasEnded(job.state)) return false;
    const secretsLost = Object.keys(job.spec.secrets ?? {}).length > 0 && !this.values.has(job.id);
    return secretsLost || (job.redacting && !this.redactions.has(job.id));
  }

  /** Writes the job's files; returns the host directory to bind, or undefined when it has none. Throws a job error. */
  materialize(job: JobRecord): string | undefined {
    const values = this.values.get(job.id);
    if (!values) return undefined;
    const dir = this.dirOf(job.id);
    const [uid, gid] = this.owner();
    try {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(this.root(), { recursive: true, mode: 0o711 });
      mkdirSync(dir, { mode: 0o500 | 0o200 });
      for (const [name, value] of Object.entries(values)) {
        const file = join(dir, name);
        writeFileSync(file, value, { mode: 0o400 });
        if (uid !== undefined) chownSync(file, uid, gid ?? uid);
      }
      chmodSync(dir, 0o500);
      if (uid !== undefined) chownSync(dir, uid, gid ?? uid);
    } catch (err) {
      this.release(job.id);
      throw new ExecutorJobError('create', `could not write the job's secrets under ${this.root()}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return dir;
  }

  /** The container no longer runs: its files and the values go. Safe to call twice. */
  release(jobId: string): void {
    this.values.delete(jobId);
    this.redactions.delete(jobId);
    try {
      rmSync(this.dirOf(jobId), { recursive: true, force: true });
    } catch (err) {
      this.log.error({ jobId, reason: err instanceof Error ? err.message : String(err) }, "could not remove a job's secret files");
    }
  }

  /** At start: files left by a previous run (whose jobs end now) go. */
  sweep(): void {
    try {
      for (const entry of readdirSync(this.root())) rmSync(join(this.root(), entry), { recursive: true, force: true });
    } catch {
      // No folder yet: nothing to sweep.
    }
  }

  private root(): string {
    return join(this.options.dir, `foreman-${this.options.agentId}`);
  }

  /** A job's directory: named by a hash, as a job id may hold anything. */
  private dirOf(jobId: string): string {
    return join(this.root(), createHash('sha256').update(jobId).digest('hex').slice(0, 32));
  }

  /** The numeric owner of the files: `docker.user`'s when numeric; root's (no change) otherwise. */
  private owner(): [number | undefined, number | undefined] {
    const match = /^(\d+)(?::(\d+))?$/.exec(this.options.user ?? '');
    if (!match?.[1] || process.getuid?.() !== 0) return [undefined, undefined];
    return [Number(match[1]), match[2] === undefined ? undefined : Number(match[2])];
  }

  private checkDir(): string | undefined {
    try {
      if (statfsSync(this.options.dir).type !== TMPFS_MAGIC)
        return `docker.secrets_dir (${this.options.dir}) is not a tmpfs; secrets are never written to a disk`;
      return undefined;
    } catch (err) {
      return `docker.secrets_dir (${this.options.dir}) cannot be used: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
}
