import type { Metadata, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import {
  ChangeType,
  DocumentKind,
  type ApplyPolicyRequest,
  type DeleteDocumentRequest,
  type DiffPolicyRequest,
  type Document,
  type DocumentChange as ProtoChange,
  type ExplainRequest,
  type GetPolicyRequest,
  type ListDocumentsRequest,
  type ListPolicyVersionsRequest,
  type RollbackPolicyRequest,
} from '@airlock/proto/admin/v1';
import type { DecisionState } from '../../authz/decision-state.ts';
import type { PeerIssuers } from '../peer.ts';
import type { DocumentChange } from '../../policy/diff.ts';
import type { PolicyEntry } from '../../policy/load.ts';
import type { ChangeResult, DocumentKind as Kind, PolicyStore } from '../../policy/policy-store.ts';
import type { Store } from '../../store/store.ts';
import { certificatePrincipal, requireGrant, tokenPrincipal, type AdminRole, type Principal } from './admin-auth.ts';
import type { AdminLimits } from './admin-limits.ts';
import { checkDocumentName, explainCall, MAX_HISTORY } from './policy-endpoints.ts';

export interface AdminGrpcDeps {
  readonly store: Store;
  readonly policies: PolicyStore;
  /** The CAs whose admin certificates are accepted (read per call: a root rollover changes them). */
  readonly caIssuers: () => PeerIssuers;
  readonly trustDomain: string;
  /** Where bundles are read (a worker thread), within the admin limits (the HTTP API's too). */
  readonly limits: AdminLimits;
  /** Revoked identities, so explain answers as Authorize would. */
  /** What decisions read: explain answers on the same snapshot as Authorize would. */
  readonly decisions: DecisionState;
}

type Call = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'metadata'>;

/**
 * Who calls: a bearer token in `authorization` metadata if one is sent (the same check as HTTP),
 * else the admin client certificate of the TLS handshake. Either way the same role check follows.
 */
export async function adminPrincipal(call: Call, deps: AdminGrpcDeps, role: AdminRole): Promise<Principal> {
  const authorization = firstString(call.metadata, 'authorization');
  const principal =
    authorization !== undefined
      ? await tokenPrincipal(deps.store, authorization)
      : await certificatePrincipal(deps.store, call.getAuthContext().sslPeerCertificate?.raw, deps.caIssuers(), deps.trustDomain);
  return requireGrant(principal, role);
}

function firstString(md: Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v : undefined;
}

type Handler = (call: ServerUnaryCall<unknown, unknown>) => unknown;

/** A handler of one request type: grpc-js hands every handler its decoded request as `call.request`. */
function rpc<Req>(fn: (call: ServerUnaryCall<Req, unknown>, req: Req) => unknown): Handler {
  return (call) => fn(call as ServerUnaryCall<Req, unknown>, call.request as Req);
}

/**
 * The AdminService handlers: each checks its role, then calls the PolicyStore exactly as the HTTP
 * routes do (validation, versioning and audit live there, not here). Run them with a wrapper that
 * maps AirlockErrors to statuses (grpc-server's `unary`).
 */
export function adminServiceHandlers(deps: AdminGrpcDeps): Record<string, Handler> {
  const p = deps.policies;
  return {
    applyPolicy: rpc<ApplyPolicyRequest>(async (call, req) => {
      const who = await adminPrincipal(call, deps, 'editor');
      const yaml = bundle(req.yaml);
      return deps.limits.run(who, '/airlock.admin.v1.AdminService/ApplyPolicy', async () => changeResult(await deps.limits.apply(yaml, req.file || 'request', who.name)));
    }),
    getPolicy: rpc<GetPolicyRequest>(async (call, req) => {
      await adminPrincipal(call, deps, 'viewer');
      const v = req.version;
      return v === 0 ? { version: p.version(), documents: p.entries().map(document) } : { version: v, documents: (await p.versionEntries(v)).map(document) };
    }),
    listDocuments: rpc<ListDocumentsRequest>(async (call, req) => {
      await adminPrincipal(call, deps, 'viewer');
      const kind = kindOf(req.kind);
      return { version: p.version(), documents: p.entries().filter((e) => e.kind === kind).map(document) };
    }),
    deleteDocument: rpc<DeleteDocumentRequest>(async (call, req) => {
      const who = await adminPrincipal(call, deps, 'editor');
      return changeResult(await p.delete(kindOf(req.kind), checkDocumentName(req.name), who.name));
    }),
    diffPolicy: rpc<DiffPolicyRequest>(async (call, req) => {
      const who = await adminPrincipal(call, deps, 'viewer');
      const yaml = bundle(req.yaml);
      return deps.limits.run(who, '/airlock.admin.v1.AdminService/DiffPolicy', async () => {
        const d = await deps.limits.diff(yaml, req.file || 'request');
        return { version: d.version, changes: d.changes.map(change) };
      });
    }),
    listPolicyVersions: rpc<ListPolicyVersionsRequest>(async (call, req) => {
      await adminPrincipal(call, deps, 'viewer');
      const limit = req.limit === 0 ? MAX_HISTORY : Math.min(req.limit, MAX_HISTORY);
      return {
        version: p.version(),
        versions: (await p.history(limit)).map((v) => ({ version: v.version, createdAtUnixMs: v.createdAt, actor: v.actor, action: v.action, summary: v.summary })),
      };
    }),
    rollbackPolicy: rpc<RollbackPolicyRequest>(async (call, req) => {
      const who = await adminPrincipal(call, deps, 'editor');
      if (req.to < 1) throw new AirlockError(ErrorCode.BadRequest, '"to" must be a version number (1 or more)');
      return changeResult(await p.rollback(req.to, who.name));
    }),
    explain: rpc<ExplainRequest>(async (call, req) => {
      await adminPrincipal(call, deps, 'viewer');
      if (req.from === '' || req.to === '') throw new AirlockError(ErrorCode.BadRequest, '"from" and "to" are required');
      let args: unknown;
      if (req.argsJson !== '') {
        try {
          args = JSON.parse(req.argsJson);
        } catch {
          throw new AirlockError(ErrorCode.BadRequest, '"args_json" must be a JSON object');
        }
      }
      const e = explainCall({ from: req.from, to: req.to, method: req.method || undefined, path: req.path || undefined, tool: req.tool || undefined, args, headers: req.headers }, deps.decisions, deps.trustDomain);
      return { allow: e.allow, version: e.version, policy: e.policy, rule: e.rule, reason: e.reason, dryRunDeny: e.dryRunDeny, source: e.source, destination: e.destination, arguments: [...(e.arguments ?? [])] };
    }),
  };
}

/** The handlers as a service implementation, each wrapped by `wrap` (status mapping). */
export function adminServiceImplementation(deps: AdminGrpcDeps, wrap: (fn: Handler) => UntypedServiceImplementation[string]): UntypedServiceImplementation {
  return Object.fromEntries(Object.entries(adminServiceHandlers(deps)).map(([k, fn]) => [k, wrap(fn)]));
}

/** A bundle's text (its size is the admin limits' to check, as for HTTP). */
function bundle(yaml: string): string {
  if (yaml === '') throw new AirlockError(ErrorCode.BadRequest, '"yaml" must be a non-empty string');
  return yaml;
}

function kindOf(k: DocumentKind): Kind {
  if (k === DocumentKind.DOCUMENT_KIND_SEGMENT) return 'Segment';
  if (k === DocumentKind.DOCUMENT_KIND_POLICY) return 'Policy';
  if (k === DocumentKind.DOCUMENT_KIND_RATE_LIMIT) return 'RateLimit';
  if (k === DocumentKind.DOCUMENT_KIND_THREAT_FEED) return 'ThreatFeed';
  if (k === DocumentKind.DOCUMENT_KIND_BASELINE) return 'Baseline';
  throw new AirlockError(ErrorCode.BadRequest, '"kind" must be DOCUMENT_KIND_SEGMENT, DOCUMENT_KIND_POLICY, DOCUMENT_KIND_RATE_LIMIT, DOCUMENT_KIND_THREAT_FEED or DOCUMENT_KIND_BASELINE');
}

function protoKind(k: Kind): DocumentKind {
  return k === 'Segment' ? DocumentKind.DOCUMENT_KIND_SEGMENT : k === 'Policy' ? DocumentKind.DOCUMENT_KIND_POLICY : k === 'RateLimit' ? DocumentKind.DOCUMENT_KIND_RATE_LIMIT : k === 'Baseline' ? DocumentKind.DOCUMENT_KIND_BASELINE : DocumentKind.DOCUMENT_KIND_THREAT_FEED;
}

function document(e: PolicyEntry): Document {
  return { kind: protoKind(e.kind), name: e.name, yaml: e.yaml };
}

const CHANGE: Readonly<Record<DocumentChange['change'], ChangeType>> = {
  added: ChangeType.CHANGE_TYPE_ADDED,
  changed: ChangeType.CHANGE_TYPE_CHANGED,
  removed: ChangeType.CHANGE_TYPE_REMOVED,
};

function change(c: DocumentChange): ProtoChange {
  return { kind: protoKind(c.kind), name: c.name, change: CHANGE[c.change], lines: [...c.lines] };
}

function changeResult(r: ChangeResult): { version: number; changed: boolean; changes: ProtoChange[] } {
  return { version: r.version, changed: r.changed, changes: r.changes.map(change) };
}
