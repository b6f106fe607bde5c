import { InjectionError, InjectionFailure } from './injection-errors.ts';
import type { Pod } from './pod.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** The parts of an AdmissionReview v1 request the injector reads. */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly operation: string;
  readonly namespace: string;
  /** The pod when the request is a pod CREATE (checked by readPod), else whatever was sent. */
  readonly object: unknown;
}

/** JSON Patch (RFC 6902) operations, as the injector emits them. */
export type PatchOperation =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown };

const UID = /^[\x21-\x7e]{1,128}$/;

/**
 * The envelope: an AdmissionReview v1 with a request and its uid. Anything short of that cannot be
 * answered with a review (the answer must echo the uid), so it throws a 400 for the HTTP layer.
 */
export function readReview(body: unknown): { uid: string; request: Record<string, unknown> } {
  const fail = (why: string): never => {
    throw new InjectionError(InjectionFailure.ReviewInvalid, `not an AdmissionReview ${ADMISSION_API_VERSION}: ${why}`);
  };
  if (!isObject(body)) return fail('the body is not a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION) return fail(`apiVersion is ${JSON.stringify(body.apiVersion)} (the webhook must list admissionReviewVersions: ["v1"])`);
  if (body.kind !== 'AdmissionReview') return fail(`kind is ${JSON.stringify(body.kind)}`);
  const request = body.request;
  if (!isObject(request)) return fail('it has no request');
  if (typeof request.uid !== 'string' || !UID.test(request.uid)) return fail('request.uid is missing or not a printable string of at most 128 characters');
  return { uid: request.uid, request };
}

/** The request's fields; a wrong type is refused in the review (its uid is known by now). */
export function readRequest(uid: string, request: Record<string, unknown>): AdmissionRequest {
  const fail = (why: string): never => {
    throw new InjectionError(InjectionFailure.ReviewInvalid, `malformed AdmissionReview: ${why}`);
  };
  const kind = request.kind;
  if (!isObject(kind) || typeof kind.group !== 'string' || typeof kind.version !== 'string' || typeof kind.kind !== 'string') return fail('request.kind must be {group, version, kind}');
  if (typeof request.operation !== 'string') return fail('request.operation must be a string');
  const namespace = request.namespace ?? '';
  if (typeof namespace !== 'string') return fail('request.namespace must be a string');
  return { uid, kind: { group: kind.group, version: kind.version, kind: kind.kind }, operation: request.operation, namespace, object: request.object };
}

export function isPodCreate(r: AdmissionRequest): boolean {
  return r.kind.group === '' && r.kind.version === 'v1' && r.kind.kind === 'Pod' && r.operation === 'CREATE';
}

/**
 * The pod of a pod CREATE, with the fields the injector reads checked for type (the API server
 * validates the rest after the mutating webhooks ran, so it never trusts what we did not check).
 */
export function readPod(object: unknown): Pod {
  const fail = (why: string): never => {
    throw new InjectionError(InjectionFailure.ReviewInvalid, `malformed pod in the AdmissionReview: ${why}`);
  };
  if (!isObject(object)) return fail('request.object is not an object');
  const metadata = object.metadata ?? {};
  if (!isObject(metadata)) return fail('metadata is not an object');
  for (const field of ['labels', 'annotations'] as const) {
    const map = metadata[field];
    if (map !== undefined && (!isObject(map) || Object.values(map).some((v) => typeof v !== 'string'))) return fail(`metadata.${field} must map strings to strings`);
  }
  const spec = object.spec;
  if (!isObject(spec)) return fail('spec is not an object');
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) return fail('spec.containers must be a non-empty list');
  for (const field of ['containers', 'initContainers', 'volumes'] as const) {
    const list = spec[field];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.some((c) => !isObject(c) || typeof c.name !== 'string')) return fail(`spec.${field} must be a list of objects with a name`);
  }
  for (const field of ['containers', 'initContainers'] as const) {
    for (const c of (spec[field] ?? []) as Record<string, unknown>[]) {
      if (c.env !== undefined && (!Array.isArray(c.env) || c.env.some((e) => !isObject(e) || typeof e.name !== 'string'))) return fail(`spec.${field}[${String(c.name)}].env must be a list of {name, …}`);
      if (c.ports !== undefined && (!Array.isArray(c.ports) || c.ports.some((p) => !isObject(p) || !Number.isInteger(p.containerPort)))) return fail(`spec.${field}[${String(c.name)}].ports must be a list of {containerPort, …}`);
      if (c.volumeMounts !== undefined && (!Array.isArray(c.volumeMounts) || c.volumeMounts.some((m) => !isObject(m) || typeof m.name !== 'string'))) return fail(`spec.${field}[${String(c.name)}].volumeMounts must be a list of {name, …}`);
    }
  }
  for (const v of (spec.volumes ?? []) as Record<string, unknown>[]) {
    const projected = v.projected;
    if (projected !== undefined && (!isObject(projected) || (projected.sources !== undefined && (!Array.isArray(projected.sources) || projected.sources.some((src) => !isObject(src)))))) {
      return fail(`spec.volumes[${String(v.name)}].projected must be an object with a list of sources`);
    }
  }
  if (spec.hostNetwork !== undefined && typeof spec.hostNetwork !== 'boolean') return fail('spec.hostNetwork must be a boolean');
  return object as unknown as Pod;
}

export interface ReviewAnswer {
  readonly allowed: boolean;
  readonly patch?: readonly PatchOperation[];
  readonly warnings?: readonly string[];
  readonly status?: { readonly code: number; readonly message: string };
}

/** The AdmissionReview v1 the API server expects back: same uid, the patch base64-encoded. */
export function reviewResponse(uid: string, a: ReviewAnswer): Record<string, unknown> {
  const response: Record<string, unknown> = { uid, allowed: a.allowed };
  if (a.patch !== undefined && a.patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(a.patch)).toString('base64');
  }
  if (a.warnings !== undefined && a.warnings.length > 0) response.warnings = a.warnings;
  if (a.status !== undefined) response.status = a.status;
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
