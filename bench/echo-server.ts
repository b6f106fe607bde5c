// The benchmark's destination app: the demo's echo agent in its own process, so it can be pinned.
import { startEchoApp } from '../cli/src/demo/echo-app.ts';

const port = Number(process.argv[2]);
await startEchoApp('researcher', port);
process.on('SIGTERM', () => process.exit(0));
console.log('ready');
