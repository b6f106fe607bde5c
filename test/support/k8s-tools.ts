import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

// Pinned in scripts/k8s-tools.sh, which installs them here (issue 13); keep the two in step.
export const HELM_VERSION = 'v4.3.2';
export const KUBE_VERSION = 'v1.37.2';
export const ETCD_PATH = '/usr/bin/etcd';

/** Where scripts/k8s-tools.sh caches the tools: $AIRLOCK_TOOLS_DIR, else ~/.cache/airlock-tools. */
export function toolsDir(): string {
  return process.env.AIRLOCK_TOOLS_DIR ?? join(homedir(), '.cache', 'airlock-tools');
}

// A missing tool fails the test with the command that installs it: a skipped test would hide that CI
// no longer proves the chart against a real API server.
function executable(path: string, what: string): string {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${what} is not installed at ${path}: run \`bash scripts/k8s-tools.sh\` (it installs helm, kube-apiserver and etcd; .ci/run does)`);
  }
  return path;
}

export function helmPath(): string {
  return executable(join(toolsDir(), `helm-${HELM_VERSION}`, 'helm'), `helm ${HELM_VERSION}`);
}

export function kubeApiserverPath(): string {
  return executable(join(toolsDir(), `kube-apiserver-${KUBE_VERSION}`, 'kube-apiserver'), `kube-apiserver ${KUBE_VERSION}`);
}

export function etcdPath(): string {
  return executable(ETCD_PATH, "etcd (Debian's etcd-server)");
}
