/** The engine under test (the host's, or FOREMAN_DOCKER_URL's) and what the tests made on it: containers, services, networks. */
import { rmSync } from 'node:fs';
import type Docker from 'dockerode';
import { createDockerClient } from '../../src/executor/docker/client.ts';
import { waitFor } from './wait.ts';

/** The engine's URL, as the agents under test get it. */
export const dockerUrl = process.env.FOREMAN_DOCKER_URL ?? 'unix:///var/run/docker.sock';
/** A client of the engine under test. */
export const docker = createDockerClient(dockerUrl);

/** The engine these tests run on, when not the host's Docker engine (FOREMAN_TEST_ENGINE: podman, swarm). */
export const testEngine = process.env.FOREMAN_TEST_ENGINE;

/** Containers (any state) labelled with this agent id, or with any agent when omitted. */
export async function containersOf(agentId?: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [agentId ? `foreman.agent=${agentId}` : 'foreman.managed=true'] } });
}

/** The container of a job, from the handle the agent stored: the container id, or with the swarm executor its service's task container. */
export async function jobContainer(handle: string | null | undefined): Promise<Docker.Container> {
  if (testEngine !== 'swarm') return docker.getContainer(handle ?? '');
  const id = await waitFor('the service task to have a container', async () => {
    const tasks = (await docker.listTasks({ filters: { service: [handle ?? ''] } })) as Array<{ Status?: { ContainerStatus?: { ContainerID?: string } } }>;
    return tasks.map((t) => t.Status?.ContainerStatus?.ContainerID).find(Boolean);
  });
  return docker.getContainer(id);
}

/** Takes away a job's container behind the agent's back: the container, or with the swarm executor the whole service. */
export async function removeJobContainers(agentId: string): Promise<void> {
  if (testEngine === 'swarm') {
    for (const s of await docker.listServices({ filters: { label: [`foreman.agent=${agentId}`] } }))
      await docker
        .getService(s.ID)
        .remove()
        .catch(() => undefined);
    return;
  }
  for (const c of await containersOf(agentId))
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => undefined);
}

/** Removes the test's containers (services on a swarm), network and temp dir. */
export async function cleanup(t: { readonly dir: string; readonly networkName: string }, agentId?: string): Promise<void> {
  if (agentId) {
    await removeJobContainers(agentId);
    if (testEngine === 'swarm')
      await waitFor("the services' containers to go", async () => (await containersOf(agentId)).length === 0, 30_000, 200).catch(() => undefined);
    await removeJobContainers(agentId);
    for (const c of await containersOf(agentId))
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
  }
  await docker
    .getNetwork(t.networkName)
    .remove()
    .catch(() => undefined);
  rmSync(t.dir, { recursive: true, force: true });
}

export interface EngineEvent {
  readonly Action: string;
  readonly id: string;
  readonly timeNano: number;
  readonly Actor: { readonly ID?: string; readonly Attributes: Readonly<Record<string, string>> };
}

/** Streams container events of `actions` for containers carrying `label` until `stop()`. */
export async function watchContainerEvents(actions: string[], label: string, onEvent: (event: EngineEvent) => void): Promise<{ stop: () => void }> {
  // Actions are picked out here: Podman's `event` filter matches no `die` event.
  const stream = (await docker.getEvents({ filters: { type: ['container'], label: [label] } })) as NodeJS.ReadableStream & {
    destroy(): void;
  };
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line) as EngineEvent;
      if (actions.includes(event.Action)) onEvent(event);
    }
  });
  return { stop: () => stream.destroy() };
}
