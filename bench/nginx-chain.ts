// The peer chain the issue measures Airlock against, built from Debian's nginx: wrk → egress nginx
// (an `auth_request` subrequest per call to a tiny always-allow endpoint, then mTLS with kept-alive
// upstream connections) → ingress nginx (verifies the client certificate) → the same echo app.
// Configuration and certificates are generated in a temp dir; both nginx run pinned like the sidecars.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../test/support/ports.ts';
import { run, SERVER_CPU } from './chain.ts';

export const NGINX_MISSING = "bench: no nginx comparison chain in this run: Debian's nginx is missing (apt-get install -y nginx-light).";

export interface NginxChain {
  /** wrk's target: the egress nginx (absolute-form requests, like a proxy). */
  readonly egressPort: number;
  /** Master and worker pids of both nginx, for RSS. */
  pids(): Promise<{ egress: number[]; ingress: number[] }>;
  stop(): Promise<void>;
}

export async function nginxAvailable(): Promise<boolean> {
  try {
    await run('which', ['nginx']);
    return true;
  } catch {
    return false;
  }
}

/** A CA and two leaf certificates (egress = client, ingress = server), made with openssl. */
async function certificates(dir: string): Promise<void> {
  const ssl = (args: string[]): Promise<unknown> => run('openssl', args, { cwd: dir });
  await ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=bench nginx CA']);
  for (const name of ['egress', 'ingress']) {
    await ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.bench`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}.bench\n`);
    await ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  }
}

function common(dir: string, name: string): string {
  // access_log buffered, like Airlock's audit lines: the peer also writes a line per call.
  return `worker_processes 1;
daemon off;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}-error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/${name}-access.log combined buffer=64k flush=1s;
  client_body_temp_path ${dir}/tmp-${name}-body;
  proxy_temp_path ${dir}/tmp-${name}-proxy;
  fastcgi_temp_path ${dir}/tmp-${name}-fastcgi;
  uwsgi_temp_path ${dir}/tmp-${name}-uwsgi;
  scgi_temp_path ${dir}/tmp-${name}-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
`;
}

export async function startNginxChain(parent: string, appPort: number): Promise<NginxChain> {
  const dir = join(parent, 'nginx');
  mkdirSync(dir, { recursive: true });
  await certificates(dir);
  const [egressPort, authPort, ingressPort] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(join(dir, 'ingress.conf'), `${common(dir, 'ingress')}
  upstream app { server 127.0.0.1:${appPort}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${ingressPort} ssl;
    ssl_certificate ${dir}/ingress.pem;
    ssl_certificate_key ${dir}/ingress.key;
    ssl_client_certificate ${dir}/ca.pem;
    ssl_verify_client on;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-Client-Cert "Subject=$ssl_client_s_dn";
    }
  }
}
`);
  writeFileSync(join(dir, 'egress.conf'), `${common(dir, 'egress')}
  upstream auth { server 127.0.0.1:${authPort}; keepalive 32; keepalive_requests 1000000; }
  upstream ingress { server 127.0.0.1:${ingressPort}; keepalive 64; keepalive_requests 1000000; }
  # The always-allow authorization endpoint (the per-call decision, stubbed at its cheapest).
  server {
    listen 127.0.0.1:${authPort};
    access_log off;
    location / { return 204; }
  }
  server {
    listen 127.0.0.1:${egressPort};
    location / {
      auth_request /_authz;
      proxy_pass https://ingress;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_certificate ${dir}/egress.pem;
      proxy_ssl_certificate_key ${dir}/egress.key;
      proxy_ssl_trusted_certificate ${dir}/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name ingress.bench;
      proxy_ssl_session_reuse on;
    }
    location = /_authz {
      internal;
      proxy_pass http://auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }
  }
}
`);
  const start = async (name: string, port: number): Promise<ChildProcess> => {
    const child = spawn('taskset', ['-c', SERVER_CPU, 'nginx', '-p', dir, '-e', join(dir, `${name}-error.log`), '-c', join(dir, `${name}.conf`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) break;
      try {
        await fetch(`http${name === 'ingress' ? 's' : ''}://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) });
        return child;
      } catch (err) {
        // An https fetch fails on the (unknown) CA or the missing client certificate: nginx is up.
        if (name === 'ingress' && /certificate|TLS|SSL|socket/i.test(String((err as { cause?: unknown }).cause ?? err))) return child;
      }
      await sleep(100);
    }
    throw new Error(`nginx ${name} did not start: ${stderr}${readTail(join(dir, `${name}-error.log`))}`);
  };
  const children = [await start('ingress', ingressPort), await start('egress', egressPort)];
  const pidsOf = async (name: string): Promise<number[]> => {
    const master = Number(readFileSync(join(dir, `${name}.pid`), 'utf8').trim());
    const { stdout } = await run('ps', ['-o', 'pid=', '--ppid', String(master)]);
    return [master, ...stdout.split('\n').filter((l) => l.trim() !== '').map(Number)];
  };
  return {
    egressPort,
    pids: async () => ({ egress: await pidsOf('egress'), ingress: await pidsOf('ingress') }),
    async stop() {
      await Promise.all(
        children.map(async (c) => {
          if (c.exitCode !== null) return;
          const exited = new Promise((resolve) => c.once('exit', resolve));
          c.kill('SIGTERM'); // taskset execs nginx: this is the master, which stops its worker
          await exited;
        }),
      );
    },
  };
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
