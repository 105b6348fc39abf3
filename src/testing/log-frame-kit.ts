/** Engine log frames for tests: what the engine sends for a container's or a service's log. */

/** One multiplexed frame: [stream, 0, 0, 0, size uint32 BE] + payload. */
export function frame(kind: number, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const header = Buffer.alloc(8);
  header[0] = kind;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** A stdout frame as asked for with timestamps: `<timestamp> <text>`. */
export function stdoutFrame(ts: string, text: string): Buffer {
  return frame(1, `${ts} ${text}`);
}
