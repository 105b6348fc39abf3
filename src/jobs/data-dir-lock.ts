import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export class DataDirInUseError extends Error {
  constructor(dataDir: string, pid: number) {
    super(`another foreman agent (pid ${pid}) is using data_dir ${dataDir}; give each agent its own data_dir`);
    this.name = 'DataDirInUseError';
  }
}

/** Who holds a lock: the pid, and what tells that process from a later one given the same pid. */
interface Owner {
  readonly pid: number;
  /** The process's start time in clock ticks since boot (Linux), or null where /proc is missing. */
  readonly start: string | null;
  /** The kernel's boot id (Linux): after a reboot every pid is new. */
  readonly boot: string | null;
}

/** Lock files this process holds, so that opening one data_dir twice in one process is still refused. */
const heldHere = new Set<string>();

function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces and parentheses). */
function startTime(pid: number): string | null {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as { code?: string }).code === 'EPERM';
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const owner = JSON.parse(text) as Partial<Owner>;
    if (typeof owner.pid === 'number' && Number.isInteger(owner.pid) && owner.pid > 0) {
      return { pid: owner.pid, start: typeof owner.start === 'string' ? owner.start : null, boot: typeof owner.boot === 'string' ? owner.boot : null };
    }
  } catch {
    // A lock written by an older version: the pid alone.
  }
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? { pid, start: null, boot: null } : undefined;
}

/**
 * True when the lock's owner still runs. A pid alone is not enough: an agent that ran as PID 1 in
 * a container and crashed leaves pid 1, which the next agent in that container is itself; and a
 * host reuses pids. So the owner is the same process only when its start time (and boot) match too.
 */
function ownerRuns(file: string, owner: Owner): boolean {
  if (owner.pid === process.pid) return heldHere.has(file);
  if (!isAlive(owner.pid)) return false;
  if (owner.boot !== null && owner.boot !== readProc('/proc/sys/kernel/random/boot_id')) return false;
  if (owner.start !== null) {
    const start = startTime(owner.pid);
    if (start !== null && start !== owner.start) return false;
  }
  return true;
}

/**
 * Claims `dataDir` for this process with a lock file, so two agents never share one store (and
 * one agent id). A lock left by a process that is gone (kill -9, a crashed container, a reused
 * pid) is taken over. Returns the release function.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = join(dataDir, 'agent.lock');
  const me = JSON.stringify({ pid: process.pid, start: startTime(process.pid), boot: readProc('/proc/sys/kernel/random/boot_id') } satisfies Owner);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, me);
      closeSync(fd);
      heldHere.add(file);
      return () => {
        heldHere.delete(file);
        try {
          if (readFileSync(file, 'utf8') === me) unlinkSync(file);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      const owner = parseOwner(readFileSync(file, 'utf8'));
      if (owner && ownerRuns(file, owner)) throw new DataDirInUseError(dataDir, owner.pid);
      unlinkSync(file);
    }
  }
  throw new Error(`could not claim data_dir ${dataDir}`);
}
