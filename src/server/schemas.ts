// The control server's request and reply shapes (TypeBox): they validate requests, serialize replies, and make
// docs/openapi/reference-server.yaml (scripts/openapi.ts).
import { Type } from '@fastify/type-provider-typebox';
import { HEADER } from '../protocol/wire.ts';
import { MAX_ID_LENGTH } from './http.ts';

const MAX_TIMER_MS = 2_147_483_647;

const Labels = Type.Record(Type.String(), Type.String());
const Resources = Type.Object(
  {
    cpus: Type.Optional(Type.Number({ minimum: 0.01, maximum: 65_536 })),
    memory: Type.Optional(Type.Integer({ minimum: 6_291_456, maximum: Number.MAX_SAFE_INTEGER })),
    pids: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  },
  { additionalProperties: false },
);

export const NewJobSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'default: a UUID' })),
    image: Type.String({ minLength: 1 }),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    body: Type.Optional(Type.Unknown({ description: 'any JSON, handed to the job' })),
    labels: Type.Optional({ ...Labels, description: 'labels an agent must carry, with equal values, to be handed the job' }),
    alwaysPull: Type.Optional(Type.Boolean()),
    // Handed to the agent as they are: the agent enforces its own maxima.
    timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS, description: 'ms' })),
    stallTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, description: 'ms' })),
    cancelGracePeriod: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, description: 'ms' })),
    resources: Type.Optional(Resources),
    // W3C trace context: checked with OpenTelemetry's own parser in the route; without one the server begins a trace.
    traceparent: Type.Optional(Type.String({ maxLength: 256, description: 'W3C traceparent: the job continues this trace' })),
    tracestate: Type.Optional(Type.String({ maxLength: 512, description: 'W3C tracestate, handed out with traceparent' })),
  },
  { additionalProperties: false },
);

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);
const Timestamp = Type.String({ format: 'date-time' });

export const JobStatusSchema = Type.Union(
  [Type.Literal('queued'), Type.Literal('assigned'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('canceled')],
  { description: 'completed: the agent reported the end (see outcome); canceled: the server ended it' },
);

export const JobViewSchema = Type.Object({
  id: Type.String(),
  image: Type.String(),
  labels: Labels,
  status: JobStatusSchema,
  progress: Type.Union([Type.Number(), Type.Null()]),
  outcome: Nullable(Type.String()),
  result: Type.Unknown({ description: 'the final update’s body, parsed when JSON' }),
  agentId: Nullable(Type.String()),
  cancelRequested: Type.Boolean(),
  cancelRequestedAt: Nullable(Timestamp),
  requeues: Type.Integer({ description: 'how often the job went back to the queue because its agent was lost' }),
  logLines: Type.Integer({ description: 'log lines stored' }),
  logComplete: Type.Boolean({ description: 'the log’s end arrived and every line below it is stored' }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  endedAt: Nullable(Timestamp),
  traceId: Nullable(Type.String({ description: 'the 32-hex trace id of the job’s traceparent' })),
  reportTraceparent: Nullable(Type.String({ description: 'the traceparent of the agent’s last report applied' })),
  usage: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], {
    description: `what the container used (cpuSeconds, memoryPeakBytes, memoryLimitBytes, pidsPeak, wallMs…), from the final report’s ${HEADER.usage}`,
  }),
});

export const AgentViewSchema = Type.Object({
  id: Type.String(),
  labels: Labels,
  capacity: Type.Integer(),
  userAgent: Nullable(Type.String()),
  lastPollAt: Timestamp,
  firstSeenAt: Timestamp,
  lost: Type.Boolean({ description: 'no poll for the agent timeout: its unfinished jobs were taken back' }),
  lostAt: Nullable(Timestamp),
  attributes: Type.Record(Type.String(), Type.String(), { description: `the host’s facts from its last ${HEADER.attributes}` }),
  images: Type.Array(Type.String(), { description: `the image references from its last poll’s ${HEADER.images}` }),
});

export const AssignedJobSchema = Type.Object({
  id: Type.String(),
  image: Type.String(),
  body: Type.Unknown(),
  callbackUrl: Type.String({ description: 'PUT the job’s updates here; it carries the job’s secret' }),
  logsUrl: Type.String({ description: 'POST the job’s log batches here; it carries the job’s secret' }),
  command: Type.Optional(Type.Array(Type.String())),
  env: Type.Optional(Type.Record(Type.String(), Type.String())),
  alwaysPull: Type.Optional(Type.Boolean()),
  timeout: Type.Optional(Type.Integer()),
  stallTimeout: Type.Optional(Type.Integer()),
  cancelGracePeriod: Type.Optional(Type.Integer()),
  resources: Type.Optional(Resources),
  traceparent: Type.Optional(Type.String()),
  tracestate: Type.Optional(Type.String()),
});
