// Starts a kube-apiserver and dies without stop(): how it dies is argv[2] ("exit": process.exit;
// "hang": waits to be SIGKILLed). Prints one JSON line with the namespace and the server's processes.
import { execFileSync } from 'node:child_process';
import { startKubeApiServer } from './kube-apiserver.ts';

const kube = await startKubeApiServer();
const pids = execFileSync('ip', ['netns', 'pids', kube.netns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
console.log(JSON.stringify({ netns: kube.netns, pids }));
if (process.argv[2] === 'exit') process.exit(3);
setInterval(() => undefined, 60_000);
