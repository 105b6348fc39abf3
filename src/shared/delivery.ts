/** One queued PUT to a job's callback URL. */
export interface Delivery {
  readonly id: string;
  readonly jobId: string;
  /** 1-based, per job; deliveries of one job go out in this order. */
  readonly seq: number;
  readonly url: string;
  /** Headers as stored; the outbox adds x-foreman-delivery-id and x-foreman-delivery-seq when it sends. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly createdAt: number;
  readonly attempts: number;
}

export interface NewDelivery {
  readonly url: string;
  /** Headers to send, without the delivery id and seq (see `wireHeaders`). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}
