/**
 * The floor of following a container's output: what a process spends only to receive the engine's log
 * stream (dockerode, follow with timestamps, as the agent asks for it) and count its frames, with no
 * parsing, storing or sending. bench/run.ts measures its CPU beside the agent's in the same run.
 *
 *   node --import tsx bench/follow-floor.ts CONTAINER_ID
 */
import { createDockerClient } from '../src/executor/docker/client.ts';

const [containerId = ''] = process.argv.slice(2);
const docker = createDockerClient(process.env.FOREMAN_DOCKER_URL ?? 'unix:///var/run/docker.sock');
const stream = (await docker
  .getContainer(containerId)
  .logs({ follow: true, stdout: true, stderr: true, timestamps: true })) as unknown as AsyncIterable<Buffer>;
let frames = 0;
let pending: Buffer = Buffer.alloc(0);
for await (const chunk of stream) {
  let data: Buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  while (data.length >= 8 && data.length - 8 >= data.readUInt32BE(4)) {
    frames++;
    data = data.subarray(8 + data.readUInt32BE(4));
  }
  pending = data;
}
process.stdout.write(`${frames}\n`);
