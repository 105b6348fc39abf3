import { Type } from 'typebox';
import { bytes, timerMs } from './schema-parts.ts';

/** Sections of the config schema that stand apart from the agent's core and engine: the image cache, hooks, tracing. */

export const ImagesSection = Type.Object({
  budget_bytes: bytes(
    'The most disk the images this agent pulled itself may take (as the engine sizes them); above it the least recently used are removed until they fit. `0`: no budget. Images a queued or running job needs, or the engine is pulling, are never removed; nor are images the agent did not pull.',
  ),
  low_free_bytes: bytes(
    'When the free disk where the engine keeps images falls below this, the least recently used images this agent pulled are removed until `high_free_bytes` are free. `0`: not watched. Needs the agent to see that file system (not so for a remote engine or an agent in a container).',
  ),
  high_free_bytes: bytes('The free disk removal goes on to once `low_free_bytes` was crossed (at least `low_free_bytes`).'),
});

export const HooksSection = Type.Object({
  pre_job: Type.Array(Type.String(), {
    default: [],
    maxItems: 64,
    expected: 'a command as a list of strings, e.g. ["/usr/local/bin/prepare", "--fast"] (no shell), or [] for none',
    description:
      "A command run on the agent's host before each job's image is pulled (argv, no shell); a failure or timeout ends the job `hook-failed` with its output tail. `[]`: none.",
  }),
  post_job: Type.Array(Type.String(), {
    default: [],
    maxItems: 64,
    expected: 'a command as a list of strings, e.g. ["/usr/local/bin/cleanup"] (no shell), or [] for none',
    description:
      "A command run on the agent's host once for every job that was launched, after its container stopped (also canceled, `agent-shutdown` and jobs resolved at restart); the final update waits for it and carries its result. `[]`: none.",
  }),
  timeout: timerMs(300_000, 'How long each hook may run before it is killed (SIGKILL) and counted as failed.'),
});

export const TracingSection = Type.Object({
  endpoint: Type.String({
    format: 'http-url-or-empty',
    default: '',
    expected: 'an http:// or https:// URL (e.g. "http://127.0.0.1:4318"), or "" to turn tracing off',
    description:
      "An OpenTelemetry Collector's (or Jaeger's) OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318`: every job is traced and the spans sent to its `/v1/traces` (a URL ending in `/v1/traces` is used as it is). Unset, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or `OTEL_EXPORTER_OTLP_ENDPOINT` gives it; `OTEL_SDK_DISABLED=true` turns tracing off. Off: nothing of OpenTelemetry is loaded.",
  }),
  service_name: Type.Optional(
    Type.String({
      minLength: 1,
      expected: 'a non-empty service name',
      description: "The `service.name` of the agent's spans.",
      defaultText: '`OTEL_SERVICE_NAME`, else `foreman`',
    }),
  ),
});
