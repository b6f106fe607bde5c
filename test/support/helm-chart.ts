import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { helmPath } from './k8s-tools.ts';

export const chartDir = join(import.meta.dirname, '..', '..', 'charts', 'airlock');
export const RELEASE_NAMESPACE = 'airlock-system';

export interface HelmResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function helm(args: readonly string[]): HelmResult {
  const r = spawnSync(helmPath(), args, { encoding: 'utf8' });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A Kubernetes object as rendered, loosely typed: tests read the fields they assert. */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly [field: string]: unknown;
}

export interface RenderOptions {
  /** Values files (-f), in order. */
  readonly files?: readonly string[];
  /** --set key=value pairs. */
  readonly set?: readonly string[];
  readonly release?: string;
  /** The release namespace (default RELEASE_NAMESPACE). */
  readonly namespace?: string;
}

function renderArgs(o: RenderOptions): string[] {
  return [
    o.release ?? 'airlock',
    chartDir,
    '--namespace',
    o.namespace ?? RELEASE_NAMESPACE,
    ...(o.files ?? []).flatMap((f) => ['-f', f]),
    ...(o.set ?? []).flatMap((s) => ['--set', s]),
  ];
}

/** `helm template`: the objects, or a thrown error carrying helm's message. */
export function renderChart(o: RenderOptions = {}): K8sObject[] {
  const r = helm(['template', ...renderArgs(o)]);
  if (r.status !== 0) throw new Error(r.stderr);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

/** `helm template` that is expected to fail: its message. */
export function renderError(o: RenderOptions): string {
  const r = helm(['template', ...renderArgs(o)]);
  if (r.status === 0) throw new Error('helm template succeeded, expected it to refuse the values');
  return r.stderr;
}

export function lintStrict(o: RenderOptions = {}): HelmResult {
  return helm(['lint', '--strict', chartDir, '--namespace', RELEASE_NAMESPACE, ...(o.files ?? []).flatMap((f) => ['-f', f]), ...(o.set ?? []).flatMap((s) => ['--set', s])]);
}

export function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found === undefined) throw new Error(`no ${kind}${name === undefined ? '' : ` ${name}`} rendered (got ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')})`);
  return found;
}

export function all(objects: readonly K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}
