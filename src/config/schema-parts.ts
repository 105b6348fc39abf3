import { Type } from 'typebox';

/** The config schema's building blocks: each leaf kind with its `expected` phrase, and the word lists. */

/** Largest delay Node timers accept; longer ones silently fire after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

/** How a duration may be written, for every duration's `expected` phrase. */
export const DURATION_FORMS = 'whole milliseconds (e.g. 1500) or a string with a unit: "500ms", "90s", "15m", "2h", "7d", or combined as "1h30m"';

// `duration: true` marks a key the loader accepts written with a unit ("90s"); the schema sees milliseconds.
export const timerMs = (fallback: number, description: string) =>
  Type.Integer({
    minimum: 0,
    maximum: MAX_TIMER_MS,
    default: fallback,
    duration: true,
    expected: `a duration of at most ${MAX_TIMER_MS} ms (about 24.8 days): ${DURATION_FORMS}`,
    description,
  });

export const ageMs = (fallback: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: fallback, duration: true, expected: `a duration: ${DURATION_FORMS}`, description });

/** A token: printable ASCII without spaces, as an `Authorization: Bearer` header carries it. */
export const TOKEN_PATTERN = '^[!-~]+$';

export const bytes = (description: string) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0, expected: 'a non-negative integer number of bytes (0 for off)', description });

export const hostLike = (what: string, description: string, defaultText: string) =>
  Type.String({ minLength: 1, pattern: '^[^\\s/]+$', expected: `a ${what} (no scheme, path or spaces)`, description, defaultText });

/** Linux capabilities by their kernel names (without `CAP_`), as `docker.cap_add` accepts them. */
export const CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
] as const;

export const CAPABILITY_PATTERN = `^(CAP_)?(${CAPABILITIES.join('|')})$`;

/** `host[:port]` of a registry: DNS labels or an IPv4 address, or a bracketed IPv6 address. */
export const REGISTRY_HOST = '^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$';

/** One side of `docker.user`: a name or a numeric id. */
export const USER_PART = '[A-Za-z0-9_][A-Za-z0-9_.-]*';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['json', 'text'] as const;
