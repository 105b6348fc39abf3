/**
 * A fake image registry on 127.0.0.1, which the engine treats as insecure (plain HTTP allowed). It speaks
 * no registry protocol; it counts the engine's connections and either drops each one at once ("drop": a pull
 * fails fast) or accepts it and never answers ("hang": a pull that never ends, until the engine gives up
 * after about 25 s). For pulls that must succeed, test/registry.e2e.test.ts runs a real registry.
 */
import { createServer, type Server, type Socket } from 'node:net';

export type FakeRegistryMode = 'drop' | 'hang';

export class FakeRegistry {
  /** Connections seen so far: the engine's pull reached the registry. */
  connections = 0;
  port = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(readonly mode: FakeRegistryMode) {}

  async start(): Promise<this> {
    this.server = createServer((socket) => {
      this.connections++;
      socket.on('error', () => undefined);
      if (this.mode === 'drop') {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  /** host:port, as an image reference names the registry. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** An image reference on this registry: `127.0.0.1:<port>/foreman/<name>:latest`. */
  image(name: string): string {
    return `${this.host}/foreman/${name}:latest`;
  }

  /** Ends every connection it holds and stops listening. Safe to call twice. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
