// Runs the reference control server:
//   node --import tsx examples/control-server/main.ts --port 8888 --host 127.0.0.1 --db ./cs.db --token T
// Every flag has an environment fallback: CS_PORT, CS_HOST, CS_DB, CS_TOKENS (comma-separated), CS_TOKEN_FILE,
// CS_PUBLIC_URL, CS_AGENT_TIMEOUT.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createControlServer } from './server.ts';

const USAGE = `usage: control-server [--port 8888] [--host 127.0.0.1] [--db ./control-server.db] (--token TOKEN [--token TOKEN2] | --token-file FILE) [--public-url URL] [--agent-timeout MS]`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        db: { type: 'string' },
        token: { type: 'string', multiple: true },
        'token-file': { type: 'string' },
        'public-url': { type: 'string' },
        'agent-timeout': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const env = process.env;
  const portText = values.port ?? env.CS_PORT ?? '8888';
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port > 65535) {
    process.stderr.write(`invalid port "${portText}"\n`);
    return 2;
  }
  const host = values.host ?? env.CS_HOST ?? '127.0.0.1';
  const dbPath = values.db ?? env.CS_DB ?? './control-server.db';
  // A token file (a compose or systemd secret) holds one token a line.
  const tokenFile = values['token-file'] ?? env.CS_TOKEN_FILE;
  let fileTokens: string[] = [];
  if (tokenFile !== undefined) {
    try {
      fileTokens = readFileSync(tokenFile, 'utf8').split('\n');
    } catch (error) {
      process.stderr.write(`cannot read the token file ${tokenFile}: ${(error as Error).message}\n`);
      return 2;
    }
  }
  const tokens = [...(values.token ?? (env.CS_TOKENS ?? '').split(',')), ...fileTokens].map((token) => token.trim()).filter((token) => token !== '');
  if (tokens.length === 0) {
    process.stderr.write(`at least one token is required (--token, --token-file, CS_TOKENS or CS_TOKEN_FILE)\n${USAGE}\n`);
    return 2;
  }
  const publicUrl = values['public-url'] ?? env.CS_PUBLIC_URL;
  // Three of the agents' poll_frequency (5000 ms by default); 0 never requeues.
  const agentTimeoutText = values['agent-timeout'] ?? env.CS_AGENT_TIMEOUT ?? '15000';
  const agentTimeoutMs = Number(agentTimeoutText);
  if (!/^\d{1,10}$/.test(agentTimeoutText) || agentTimeoutMs > 2_147_483_647) {
    process.stderr.write(`invalid agent timeout "${agentTimeoutText}": a whole number of ms (0 to 2147483647)\n`);
    return 2;
  }

  let server;
  try {
    server = await createControlServer({ dbPath, tokens, agentTimeoutMs, logger: { level: env.CS_LOG_LEVEL ?? 'info' }, ...(publicUrl ? { publicUrl } : {}) });
    await server.app.listen({ port, host });
  } catch (error) {
    process.stderr.write(`control server failed to start: ${(error as Error).message}\n`);
    await server?.close();
    return 1;
  }
  const listening = server.app.server.address();
  const actualPort = typeof listening === 'object' && listening !== null ? listening.port : port;
  process.stdout.write(`dashboard: http://${host.includes(':') ? `[${host}]` : host}:${actualPort}/\n`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.close();
  return 0;
}

process.exitCode = await main();
