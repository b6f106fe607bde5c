import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Server } from 'node:http';
import { closeServer } from '@airlock/common/net';
import { parseFlags, UsageError } from '../args.ts';
import { adminPost } from '../admin-client.ts';
import { readCredentialsFile } from '../credentials.ts';
import { startEchoApp } from '../demo/echo-app.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../demo/processes.ts';
import { DEMO_AGENTS, DEMO_CONTROL_PLANE, DEMO_POLICY, DEMO_TRUST_DOMAIN, demoIdentity } from '../demo/mesh.ts';
import { untilSignal } from '../run-until-signal.ts';

const HELP = `Usage: airlock demo [--dir .airlock]

Starts a local mesh on 127.0.0.1: the control plane (data in <dir>/control-plane) and three echo
agents (planner, researcher, payments), each behind its own sidecar, with a demo policy:
planner → researcher GET/POST /v1/*, planner → payments POST /v1/charge, nothing else.
Writes admin credentials to <dir>/credentials.json so \`npx airlock …\` in this directory talks to
this control plane. Logs go to <dir>/logs/. Ctrl-C stops everything.`;

export async function runDemo(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, dir: { type: 'string' } });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0] ?? ''}"`);
  const dir = resolve(typeof values.dir === 'string' ? values.dir : '.airlock');
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, DEMO_POLICY);

  const processes: AirlockProcess[] = [];
  const apps: Server[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.stop()));
    await Promise.all(apps.map((s) => closeServer(s)));
  };
  const stopped = untilSignal();
  try {
    const dataDir = join(dir, 'control-plane');
    const cp = spawnAirlock('control-plane', [
      'control-plane',
      '--trust-domain', DEMO_TRUST_DOMAIN,
      '--data-dir', dataDir,
      '--grpc-listen', `127.0.0.1:${DEMO_CONTROL_PLANE.grpcPort}`,
      '--http-listen', `127.0.0.1:${DEMO_CONTROL_PLANE.httpPort}`,
      '--admin-listen', `127.0.0.1:${DEMO_CONTROL_PLANE.adminPort}`,
      '--policy-file', policyFile,
    ], { logFile: join(logs, 'control-plane.log') });
    processes.push(cp);
    await waitReady(cp, `http://127.0.0.1:${DEMO_CONTROL_PLANE.httpPort}/readyz`);

    // The admin API is HTTPS: the CLI verifies it against the trust bundle the control plane keeps
    // current (a root rollover included), by the control plane's SPIFFE ID.
    const credsFile = join(dir, 'credentials.json');
    const file = {
      server: `https://127.0.0.1:${DEMO_CONTROL_PLANE.adminPort}`,
      token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(),
      caFile: relative(dir, join(dataDir, 'trust-bundle.pem')),
    };
    writeFileSync(credsFile, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    chmodSync(credsFile, 0o600);
    const creds = readCredentialsFile(credsFile);

    for (const agent of DEMO_AGENTS) {
      apps.push(await startEchoApp(agent.name, agent.appPort));
      const { token } = (await adminPost(creds, '/v1/join-tokens', { identity: demoIdentity(agent.name), ttlSeconds: 600 })) as { token: string };
      const sidecar = spawnAirlock(`sidecar ${agent.name}`, [
        'sidecar',
        '--trust-domain', DEMO_TRUST_DOMAIN,
        '--control-plane', `127.0.0.1:${DEMO_CONTROL_PLANE.grpcPort}`,
        '--ca-file', join(dataDir, 'trust-bundle.pem'),
        '--outbound-listen', `127.0.0.1:${agent.outboundPort}`,
        '--inbound-listen', `127.0.0.1:${agent.inboundPort}`,
        '--admin-listen', `127.0.0.1:${agent.adminPort}`,
        '--app-port', String(agent.appPort),
      ], { logFile: join(logs, `sidecar-${agent.name}.log`), env: { AIRLOCK_JOIN_TOKEN: token } });
      processes.push(sidecar);
    }
    await Promise.all(DEMO_AGENTS.map((a, i) => {
      const p = processes[i + 1];
      return p === undefined ? Promise.resolve() : waitReady(p, `http://127.0.0.1:${a.adminPort}/readyz`);
    }));
    printReady(dir);
    // Any child dying ends the demo: a half-running mesh would only confuse.
    const died = Promise.race(processes.map((p) => p.exited.then((code) => ({ p, code }))));
    const first = await Promise.race([stopped.then(() => undefined), died]);
    if (first !== undefined) {
      console.error(`\n${first.p.name} exited unexpectedly (code ${String(first.code)}); see ${first.p.logFile}`);
      return 1;
    }
    console.log('\nStopping the demo…');
    return 0;
  } finally {
    await stopAll();
  }
}

function printReady(dir: string): void {
  const rows = DEMO_AGENTS.map(
    (a) => `| ${a.name.padEnd(10)} | 127.0.0.1:${a.outboundPort} | ${String(a.inboundPort).padEnd(7)} | ${a.appPort} | ${String(a.adminPort).padEnd(6)} | ${demoIdentity(a.name)}`,
  );
  console.log(`
Airlock demo is up. Control plane: gRPC 127.0.0.1:${DEMO_CONTROL_PLANE.grpcPort}, admin API https://127.0.0.1:${DEMO_CONTROL_PLANE.adminPort}, metrics http://127.0.0.1:${DEMO_CONTROL_PLANE.httpPort}

| agent      | outbound proxy  | inbound | app   | admin  | identity
|------------|-----------------|---------|-------|--------|---------
${rows.join('\n')}

Try (each agent uses its own sidecar as HTTP proxy):
  curl -x http://127.0.0.1:15001 http://researcher.demo/v1/search            # 200, researcher's echo, XFCC names planner
  curl -x http://127.0.0.1:15001 -X POST http://payments.demo/v1/charge      # 200, planner may charge
  curl -x http://127.0.0.1:15101 -X POST http://payments.demo/v1/charge      # 403, researcher may not
  curl -x http://127.0.0.1:15001 http://payments.demo/v1/charge              # 403, planner may only POST there
  curl http://127.0.0.1:15020/metrics | grep airlock_sidecar_requests_total
  npx airlock token create --identity spiffe://${DEMO_TRUST_DOMAIN}/ns/demo/sa/another

Logs (audit lines included): ${join(dir, 'logs')}/   Ctrl-C stops everything.`);
}
