/**
 * Real traffic checked against the OpenAPI contracts in docs/openapi/: a request (and, for the job API, its
 * reply) is matched to its operation and checked with ajv against the schemas the document gives: its
 * parameters (headers coerced from text to the parameter's type), its security, its body by media type, and
 * the document's `x-header-rules` and `x-line-schema` extensions. The few rules the documents state only in
 * prose are checked below too, each named (`proseRules`).
 */
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { HEADER, parseLogBatch } from '../../src/protocol/wire.ts';
import { repoRoot } from './paths.ts';

type Json = Record<string, unknown>;
type Headers = Readonly<Record<string, string | string[] | undefined>>;

export interface Exchange {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly url: string;
  readonly headers: Headers;
  readonly body: Buffer;
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
}

interface Operation {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly spec: Json;
  readonly parameters: Json[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

function headerValue(headers: Headers, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A header or query value as the type its schema names: HTTP carries text. Undefined when it cannot be. */
function coerce(value: string, schema: Json): unknown {
  const type = schema.type;
  if (type === 'integer') return /^-?\d+$/.test(value.trim()) ? Number(value) : undefined;
  if (type === 'number') return value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : undefined;
  if (type === 'boolean') return value === 'true' ? true : value === 'false' ? false : undefined;
  return value;
}

function mediaType(headers: Headers): string {
  return (headerValue(headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** The entry of `content` for a media type: exact, then `type/*`, then `*\/*`. */
function mediaEntry(content: Json | undefined, type: string): [string, Json] | undefined {
  if (!content) return undefined;
  for (const key of [type, `${type.split('/')[0] ?? ''}/*`, '*/*']) if (content[key]) return [key, content[key] as Json];
  return undefined;
}

/** A loaded contract: its operations and an ajv that has compiled what it needs once. */
export class Contract {
  readonly file: string;
  readonly document: Json;
  private readonly operations: Operation[];
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  private readonly compiled = new Map<object, ValidateFunction>();

  private constructor(file: string, document: Json) {
    this.file = file;
    this.document = document;
    addFormats.default(this.ajv);
    const operations: Operation[] = [];
    for (const [path, item] of Object.entries((document.paths ?? {}) as Record<string, Json>)) {
      for (const method of METHODS) {
        const spec = item[method] as Json | undefined;
        if (!spec) continue;
        const parameters = [...((item.parameters as Json[] | undefined) ?? []), ...((spec.parameters as Json[] | undefined) ?? [])];
        operations.push({ id: String(spec.operationId), method: method.toUpperCase(), path, spec, parameters });
      }
    }
    this.operations = operations;
  }

  /** Reads and checks a document of docs/openapi/ (it must be valid OpenAPI), with every $ref resolved. */
  static async load(name: string): Promise<Contract> {
    const file = join(repoRoot, 'docs/openapi', name);
    const validator = new Validator();
    const result = await validator.validate(file);
    if (!result.valid) throw new Error(`${file} is not valid OpenAPI: ${JSON.stringify(result.errors)}`);
    return new Contract(file, validator.resolveRefs());
  }

  /** The schema a components entry names, e.g. `schemas/Report`. */
  component(path: string): Json {
    let at: unknown = this.document.components;
    for (const part of path.split('/')) at = (at as Json | undefined)?.[part];
    if (!at) throw new Error(`${this.file} has no components/${path}`);
    return at as Json;
  }

  private validate(schema: Json, value: unknown, what: string): string[] {
    let check = this.compiled.get(schema);
    if (!check) {
      check = this.ajv.compile(schema);
      this.compiled.set(schema, check);
    }
    if (check(value)) return [];
    return (check.errors ?? []).map(
      (e) =>
        `${what}${e.instancePath} ${e.message ?? 'is invalid'}${e.params && 'allowedValues' in e.params ? ` (${JSON.stringify(e.params.allowedValues)})` : ''}`,
    );
  }

  /** The operation a request is for: by method, and by path where the document's paths are real ones. */
  private operationOf(request: Exchange): { op: Operation; pathParams: Record<string, string> } | undefined {
    const path = new URL(request.url, 'http://x').pathname;
    for (const op of this.operations) {
      if (op.method !== request.method.toUpperCase()) continue;
      // An operation with servers of its own names its whole URL: its path adds nothing, so any path is it.
      if (op.spec.servers) return { op, pathParams: {} };
      const names: string[] = [];
      const pattern = new RegExp(`^${op.path.replace(/\{([^}]+)\}/g, (_, n: string) => (names.push(n), '([^/]+)'))}$`);
      const match = pattern.exec(path);
      if (match) return { op, pathParams: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(match[i + 1] ?? '')])) };
    }
    return undefined;
  }

  /** What is wrong with a request; empty when it keeps the contract. */
  checkRequest(request: Exchange): string[] {
    const found = this.operationOf(request);
    if (!found) return [`${request.method} ${request.url}: no operation of the contract`];
    const { op, pathParams } = found;
    const problems: string[] = [];
    const query = new URL(request.url, 'http://x').searchParams;
    for (const param of op.parameters) {
      const name = String(param.name);
      const raw = param.in === 'header' ? headerValue(request.headers, name) : param.in === 'query' ? (query.get(name) ?? undefined) : pathParams[name];
      if (raw === undefined) {
        if (param.required === true) problems.push(`${param.in as string} ${name} is missing`);
        continue;
      }
      const schema = (param.schema ?? {}) as Json;
      const value = coerce(raw, schema);
      if (value === undefined) problems.push(`${param.in as string} ${name} ${JSON.stringify(raw)} is not ${String(schema.type)}`);
      else problems.push(...this.validate(schema, value, `${param.in as string} ${name} ${JSON.stringify(raw)}`));
    }
    problems.push(...this.checkSecurity(op, request, query));
    const rules = op.spec['x-header-rules'] as Json | undefined;
    if (rules) {
      const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(', ') : v]));
      problems.push(...this.validate(rules, headers, 'headers (x-header-rules)'));
    }
    problems.push(...this.checkBody(op.spec.requestBody as Json | undefined, request.headers, request.body, 'request body'));
    problems.push(...this.proseRules(op, request));
    return problems.map((p) => `${op.id} (${request.method} ${request.url}): ${p}`);
  }

  /** What is wrong with the reply to a request; empty when it keeps the contract. */
  checkReply(request: Exchange, reply: Reply): string[] {
    const found = this.operationOf(request);
    if (!found) return [];
    const { op } = found;
    const responses = (op.spec.responses ?? {}) as Record<string, Json>;
    const spec = responses[String(reply.status)] ?? responses[`${String(reply.status)[0] ?? ''}XX`] ?? responses.default;
    const where = `${op.id} (${request.method} ${request.url}) reply ${reply.status}`;
    if (!spec) return [`${where}: the contract names no such status`];
    return this.checkBody(spec, reply.headers, reply.body, 'body').map((p) => `${where}: ${p}`);
  }

  private checkSecurity(op: Operation, request: Exchange, query: URLSearchParams): string[] {
    const requirements = (op.spec.security ?? this.document.security ?? []) as Json[];
    const schemes = (this.document.components as Json | undefined)?.securitySchemes as Record<string, Json> | undefined;
    const problems: string[] = [];
    for (const requirement of requirements) {
      for (const name of Object.keys(requirement)) {
        const scheme = schemes?.[name];
        if (scheme?.type === 'http' && scheme.scheme === 'bearer' && !/^Bearer \S+$/.test(headerValue(request.headers, 'authorization') ?? '')) {
          problems.push(`security ${name}: no Authorization: Bearer <token>`);
        }
        if (scheme?.type === 'apiKey') {
          const at = scheme.in === 'query' ? query.get(String(scheme.name)) : headerValue(request.headers, String(scheme.name));
          if (!at) problems.push(`security ${name}: no ${String(scheme.in)} ${String(scheme.name)}`);
        }
      }
    }
    return problems;
  }

  /** A body against the `content` of a request body or a response. */
  private checkBody(spec: Json | undefined, headers: Headers, body: Buffer, what: string): string[] {
    const content = spec?.content as Json | undefined;
    if (body.length === 0) return spec?.required === true ? [`${what} is required`] : [];
    if (!content) return [];
    const type = mediaType(headers);
    const entry = mediaEntry(content, type);
    if (!entry) return [`${what}: content-type ${JSON.stringify(type)} is not one of ${Object.keys(content).join(', ')}`];
    const [key, media] = entry;
    const schema = (media.schema ?? {}) as Json;
    if (key === 'application/json') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return [`${what} is not JSON`];
      }
      return this.validate(schema, parsed, what);
    }
    const lineSchema = media['x-line-schema'] as Json | undefined;
    if (lineSchema) {
      const problems: string[] = [];
      body
        .toString('utf8')
        .split('\n')
        .forEach((row, n) => {
          if (row === '') return;
          try {
            problems.push(...this.validate(lineSchema, JSON.parse(row), `${what} line ${n + 1}`));
          } catch {
            problems.push(`${what} line ${n + 1} is not JSON`);
          }
        });
      return problems;
    }
    return [];
  }

  /**
   * The rules the documents state in prose, by operation:
   * - deliverUpdate: a final update with an outcome other than `succeeded` or `canceled` is the agent's own
   *   report, `application/json` and a `Report` (requestBody's description);
   * - sendLogs: a batch's lines are numbered on from `x-foreman-log-offset` with no gap, and the end request
   *   has `x-foreman-log-offset` equal to `x-foreman-log-end` and an empty body (the parameters' descriptions).
   */
  private proseRules(op: Operation, request: Exchange): string[] {
    if (op.id === 'deliverUpdate') {
      const outcome = headerValue(request.headers, HEADER.jobOutcome);
      if (outcome === undefined || outcome === 'succeeded' || outcome === 'canceled') return [];
      if (mediaType(request.headers) !== 'application/json') return [`the agent's report of ${outcome} is not application/json`];
      try {
        return this.validate(this.component('schemas/Report'), JSON.parse(request.body.toString('utf8')), 'report body');
      } catch {
        return ['the report body is not JSON'];
      }
    }
    if (op.id === 'sendLogs') {
      const offset = Number(headerValue(request.headers, HEADER.logOffset));
      const end = headerValue(request.headers, HEADER.logEnd);
      if (end !== undefined) {
        const problems: string[] = [];
        if (Number(end) !== offset) problems.push(`the end request's offset ${offset} is not its end ${end}`);
        if (request.body.length > 0) problems.push('the end request has a body');
        return problems;
      }
      const batch = parseLogBatch(request.body.toString('utf8'));
      if ('error' in batch) return [batch.error];
      if (batch.lines.length === 0) return ['a batch without lines'];
      if (batch.lines[0]?.i !== offset) return [`the batch starts at line ${String(batch.lines[0]?.i)}, its offset says ${offset}`];
    }
    return [];
  }
}

let controlServer: Promise<Contract> | undefined;
let jobApi: Promise<Contract> | undefined;

/** docs/openapi/control-server.yaml, loaded once per test process. */
export function controlServerContract(): Promise<Contract> {
  return (controlServer ??= Contract.load('control-server.yaml'));
}

/** docs/openapi/job-api.yaml, loaded once per test process. */
export function jobApiContract(): Promise<Contract> {
  return (jobApi ??= Contract.load('job-api.yaml'));
}

/** Problems found in traffic, kept until a test's server is closed, which fails on them. */
export class Violations {
  private readonly found: string[] = [];

  add(problems: readonly string[]): void {
    this.found.push(...problems);
  }

  get list(): readonly string[] {
    return this.found;
  }

  /** Throws, once, when anything broke the contract; `who` names the server. */
  assertNone(who: string, file: string): void {
    if (this.found.length === 0) return;
    const shown = this.found.splice(0);
    throw new Error(`${who} received ${shown.length} request(s) that break ${file}:\n  ${shown.slice(0, 20).join('\n  ')}`);
  }
}
