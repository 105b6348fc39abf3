// `foreman` from the TypeScript sources, for tests that spawn a command: node --import tsx test/support/foreman.ts ARGS.
// (bin/foreman.js runs dist/ when it was built, which may be older than the sources under test.)
import { main } from '../../src/cli/main.ts';

process.exitCode = await main(process.argv.slice(2), process.env);
