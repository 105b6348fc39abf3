// `foreman conformance <core.url>`: plays agents and their jobs against a running control server and checks each
// rule of docs/protocol.md a server must keep (its section 6). One line per rule, pass or FAIL and why; the jobs
// it needs are enqueued the way the server's author says (a command or an HTTP request template), each rule with
// labels of its own, so one rule's jobs never reach another's polls. Needs no container and no engine.
import { HEADER } from '../protocol/wire.ts';
import { randomUUID } from 'node:crypto';
import { systemClock } from '../shared/clock.ts';
import { IMAGE, LABEL_KEY, Wire } from './client.ts';
import type { CheckerOptions, HandedJob } from './client.ts';

export type { CheckerOptions, Hook } from './client.ts';

export interface RuleResult {
  rule: string;
  outcome: 'pass' | 'FAIL' | 'skip';
  why: string;
}

class RuleFailure extends Error {}

function check(condition: unknown, why: string): asserts condition {
  if (!condition) throw new RuleFailure(why);
}

const ok = (status: number) => status >= 200 && status <= 299;

/** One rule's context: its own labels, agents, and the jobs it enqueued. */
class Case {
  readonly run = `${randomUUID().slice(0, 8)}`;
  #deliveries = 0;
  readonly seqs = new Map<string, number>();

  constructor(
    readonly wire: Wire,
    readonly rule: string,
  ) {}

  agent(name: string): string {
    return `conformance-${this.run}-${name}`;
  }

  async enqueue(count = 1): Promise<void> {
    for (let n = 0; n < count; n++) {
      const values = { id: `conformance-${this.run}-${n}`, run: this.run, label: LABEL_KEY, image: IMAGE };
      try {
        await this.wire.run(this.wire.options.enqueue, values);
      } catch (error) {
        throw new RuleFailure(`could not enqueue a job: ${(error as Error).message}`);
      }
    }
  }

  async cancel(job: HandedJob): Promise<void> {
    const hook = this.wire.options.cancel;
    if (hook === undefined) throw new RuleFailure('no cancel hook');
    try {
      await this.wire.run(hook, { id: job.id, run: this.run, label: LABEL_KEY, image: IMAGE });
    } catch (error) {
      throw new RuleFailure(`could not cancel job ${job.id}: ${(error as Error).message}`);
    }
  }

  /** Polls as `agent` until `count` jobs came (each reply checked against capacity), or fails after `waitMs`. */
  async take(agent: string, count: number, capacity = count, waitMs = 10_000): Promise<HandedJob[]> {
    const taken: HandedJob[] = [];
    const deadline = systemClock.now() + waitMs;
    while (taken.length < count) {
      const reply = await this.wire.poll(this.agent(agent), this.run, capacity);
      check(reply.problem === undefined, `a poll was answered badly: ${reply.problem ?? ''}`);
      check(reply.jobs.length <= capacity, `asked for ${capacity} jobs (${HEADER.capacity}), was handed ${reply.jobs.length}`);
      for (const job of reply.jobs) {
        check(typeof job.callbackUrl === 'string' && /^https?:\/\//.test(job.callbackUrl), `job ${job.id} has no absolute http(s) callbackUrl`);
        check(typeof job.image === 'string' && job.image !== '', `job ${job.id} has no image`);
        check('body' in job, `job ${job.id} has no body`);
        check(!taken.some((earlier) => earlier.id === job.id), `job ${job.id} was handed out again to the same agent before anything was reported`);
        taken.push(job);
      }
      if (taken.length >= count) break;
      check(systemClock.now() < deadline, `expected ${count} jobs within ${waitMs} ms, was handed ${taken.length}`);
      await systemClock.sleep(100);
    }
    return taken;
  }

  /** Sends an update with the job's next seq (or `seq`), a fresh delivery id unless `deliveryId` repeats one. */
  async update(
    job: HandedJob,
    agent: string,
    status: 'running' | 'completed',
    extra: { seq?: number; deliveryId?: string; progress?: number; outcome?: string } = {},
  ) {
    const seq = extra.seq ?? (this.seqs.get(job.id) ?? 0) + 1;
    this.seqs.set(job.id, Math.max(seq, this.seqs.get(job.id) ?? 0));
    const deliveryId = extra.deliveryId ?? `${this.run}-delivery-${++this.#deliveries}`;
    const body = status === 'completed' ? { conformance: true } : undefined;
    return {
      deliveryId,
      reply: await this.wire.update(job, this.agent(agent), {
        status,
        seq,
        deliveryId,
        ...(extra.progress === undefined ? {} : { progress: extra.progress }),
        ...(extra.outcome === undefined ? (status === 'completed' ? { outcome: 'succeeded' } : {}) : { outcome: extra.outcome }),
        ...(body === undefined ? {} : { body }),
      }),
    };
  }

  /** Ends jobs so they leave nothing behind. */
  async finish(jobs: readonly HandedJob[], agent: string): Promise<void> {
    for (const job of jobs) await this.update(job, agent, 'completed').catch(() => undefined);
  }
}

type Rule = { name: string; needs?: 'cancel' | 'lost'; run(c: Case): Promise<string> };

const RULES: Rule[] = [
  {
    name: 'authenticates the poll',
    async run(c) {
      for (const token of [null, `${c.wire.options.token}-wrong`]) {
        const reply = await c.wire.poll(c.agent('a'), c.run, 0, token);
        check(
          reply.status === 401 || reply.status === 403,
          `a poll ${token === null ? 'without a token' : 'with a wrong token'} got HTTP ${reply.status}, not 401`,
        );
      }
      const good = await c.wire.poll(c.agent('a'), c.run, 0);
      check(good.problem === undefined, `a poll with the token was answered badly: ${good.problem ?? ''}`);
      return 'no token or a wrong one: 401; the token: 2xx';
    },
  },
  {
    name: `honours ${HEADER.capacity}`,
    async run(c) {
      await c.enqueue(3);
      for (let n = 0; n < 3; n++) {
        const none = await c.wire.poll(c.agent('a'), c.run, 0);
        check(none.problem === undefined, `a poll with capacity 0 was answered badly: ${none.problem ?? ''}`);
        check(none.jobs.length === 0, `a poll with ${HEADER.capacity}: 0 was handed ${none.jobs.length} jobs`);
      }
      const two = await c.take('a', 2, 2);
      const one = await c.take('a', 1, 1);
      await c.finish([...two, ...one], 'a');
      return 'none at 0; at most 2 when 2 are free, then at most 1; every job handed out once';
    },
  },
  {
    name: 'never hands a job out again after its final update',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('a', 1);
      const done = await c.update(job!, 'a', 'completed');
      check(ok(done.reply.status), `the final update got HTTP ${done.reply.status}`);
      for (const agent of ['a', 'b']) {
        for (let n = 0; n < 3; n++) {
          const reply = await c.wire.poll(c.agent(agent), c.run, 5);
          check(!reply.jobs.some((again) => again.id === job!.id), `job ${job!.id} was handed out again after its final update`);
        }
      }
      const late = await c.update(job!, 'a', 'running', { progress: 0.5 });
      check(ok(late.reply.status), `an update after the final one got HTTP ${late.reply.status}, not 2xx (ignored)`);
      return 'polls by the same and another agent never see it again; a later update is answered 2xx';
    },
  },
  {
    name: 'accepts a duplicate delivery idempotently (same id and seq twice)',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('a', 1);
      const first = await c.update(job!, 'a', 'running', { progress: 0.3 });
      check(ok(first.reply.status), `the update got HTTP ${first.reply.status}`);
      const again = await c.update(job!, 'a', 'running', { progress: 0.3, seq: 1, deliveryId: first.deliveryId });
      check(ok(again.reply.status), `the same delivery again (a retry) got HTTP ${again.reply.status}, not 2xx`);
      const final = await c.update(job!, 'a', 'completed');
      check(ok(final.reply.status), `the final update got HTTP ${final.reply.status}`);
      const finalAgain = await c.update(job!, 'a', 'completed', { seq: c.seqs.get(job!.id) ?? 2, deliveryId: final.deliveryId });
      check(ok(finalAgain.reply.status), `the final update again got HTTP ${finalAgain.reply.status}, not 2xx`);
      return 'a retried update and a retried final update are answered 2xx';
    },
  },
  {
    name: 'keeps the latest state when an older seq arrives late',
    needs: 'cancel',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('a', 1);
      const two = await c.update(job!, 'a', 'running', { seq: 2, progress: 0.6 });
      const one = await c.update(job!, 'a', 'running', { seq: 1, progress: 0.3 });
      check(ok(two.reply.status) && ok(one.reply.status), `updates got HTTP ${two.reply.status} and ${one.reply.status}`);
      const final = await c.update(job!, 'a', 'completed', { seq: 4 });
      check(ok(final.reply.status), `the final update got HTTP ${final.reply.status}`);
      const late = await c.update(job!, 'a', 'running', { seq: 3, progress: 0.9 });
      check(ok(late.reply.status), `a late older update got HTTP ${late.reply.status}, not 2xx (ignored)`);
      // Had the late update reopened the job, a cancel would now be pending and repeated on polls.
      await c.cancel(job!).catch(() => undefined);
      const reply = await c.wire.poll(c.agent('a'), c.run, 0);
      check(
        !reply.cancel.includes(job!.id),
        'after the final update and a late older one, the job is canceled as if it still ran: the late update reopened it',
      );
      const again = await c.wire.poll(c.agent('b'), c.run, 5);
      check(!again.jobs.some((handed) => handed.id === job!.id), 'the job was handed out again after a late older update');
      return 'seq 2 then a late seq 1: both 2xx; a late running after the final one leaves the job ended';
    },
  },
  {
    name: `repeats ${HEADER.cancel} until the final update`,
    needs: 'cancel',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('a', 1);
      const running = await c.update(job!, 'a', 'running', { progress: 0.1 });
      check(ok(running.reply.status), `the update got HTTP ${running.reply.status}`);
      await c.cancel(job!);
      for (let n = 0; n < 3; n++) {
        const reply = await c.wire.poll(c.agent('a'), c.run, 0);
        check(reply.cancel.includes(job!.id), `poll ${n + 1} after the cancel carried no ${HEADER.cancel} for ${job!.id}`);
      }
      const final = await c.update(job!, 'a', 'completed', { outcome: 'canceled' });
      check(ok(final.reply.status), `the final update (canceled) got HTTP ${final.reply.status}`);
      const after = await c.wire.poll(c.agent('a'), c.run, 0);
      check(!after.cancel.includes(job!.id), `${HEADER.cancel} still names the job after its final update`);
      return 'three polls after the cancel carried it; none after the final update';
    },
  },
  {
    name: 'answers log batches with offsets',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('a', 1);
      if (typeof job!.logsUrl !== 'string') {
        await c.finish([job!], 'a');
        return 'the server hands out no logsUrl (optional): nothing to check';
      }
      check(/^https?:\/\//.test(job!.logsUrl), `logsUrl ${JSON.stringify(job!.logsUrl)} is not an absolute http(s) URL`);
      for (const [from, to, what] of [
        [0, 3, 'a batch from offset 0'],
        [0, 3, 'the same batch again (a retry)'],
        [3, 5, 'the next batch from offset 3'],
      ] as const) {
        const reply = await c.wire.logs(job!, c.agent('a'), from, to);
        check(ok(reply.status), `${what} got HTTP ${reply.status}`);
      }
      const end = await c.wire.logs(job!, c.agent('a'), 0, 0, 5);
      check(ok(end.status), `the log's end (${HEADER.logEnd}: 5) got HTTP ${end.status}`);
      await c.finish([job!], 'a');
      return 'batches from 0 and 3, a repeated batch and the end: 2xx';
    },
  },
  {
    name: 'treats an agent that stops polling as lost',
    needs: 'lost',
    async run(c) {
      await c.enqueue(1);
      const [job] = await c.take('silent', 1);
      const waitMs = c.wire.options.lostAfterMs;
      // Another agent keeps polling; the silent one sends nothing more.
      const [again] = await c.take('other', 1, 1, waitMs);
      check(again!.id === job!.id, `another job (${again!.id}) came instead of ${job!.id}`);
      const late = await c.update(job!, 'silent', 'running', { progress: 0.5 });
      check(ok(late.reply.status), `the silent agent's late update got HTTP ${late.reply.status}, not 2xx`);
      await c.finish([again!], 'other');
      return `handed to another agent within ${waitMs} ms of the first agent's last poll; the late agent's update answered 2xx`;
    },
  },
];

export const RULE_NAMES = RULES.map((rule) => rule.name);

/** Runs every rule, calling `report` as each ends. */
export async function runConformance(options: CheckerOptions, report: (result: RuleResult) => void): Promise<RuleResult[]> {
  const wire = new Wire(options);
  const results: RuleResult[] = [];
  for (const rule of RULES) {
    let result: RuleResult;
    if (rule.needs === 'cancel' && options.cancel === undefined) {
      result = { rule: rule.name, outcome: 'skip', why: 'no way to cancel a job was given (--cancel or --cancel-url)' };
    } else if (rule.needs === 'lost' && options.lostAfterMs === 0) {
      result = { rule: rule.name, outcome: 'skip', why: '--lost-after 0' };
    } else {
      try {
        result = { rule: rule.name, outcome: 'pass', why: await rule.run(new Case(wire, rule.name)) };
      } catch (error) {
        const why = error instanceof RuleFailure ? error.message : `the server could not be talked to: ${(error as Error).message}`;
        result = { rule: rule.name, outcome: 'FAIL', why };
      }
    }
    results.push(result);
    report(result);
  }
  return results;
}
