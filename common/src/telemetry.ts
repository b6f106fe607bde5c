import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { ListenAddress } from './config.ts';
import { listen } from './net.ts';
import { enforceListenerLimits, httpServerOptions, type LimitRefusal, type ListenerLimits } from './listener-limits.ts';

/**
 * prom-client default metrics that are gauges named `_total`, which `promtool check metrics` refuses
 * (the suffix means a counter): dropped. The gauges by type (airlock_nodejs_active_handles{type},
 * _requests, _resources) remain; sum() over them is the same number.
 */
const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** One metrics registry per process, with Node's default metrics under the airlock_ prefix. */
export function createRegistry(process: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ process });
  collectDefaultMetrics({ register: registry, prefix: 'airlock_' });
  for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(`airlock_${name}`);
  return registry;
}

export interface HealthChecks {
  /** Liveness: the process is serving. */
  readonly healthy: () => boolean;
  /** Readiness: a reason it is not ready, or undefined when ready. */
  readonly notReadyReason: () => string | undefined;
}

export interface AdminRoute {
  (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): boolean | Promise<boolean>;
}

/**
 * A request listener that tries `routes` in order: 404 JSON when none handles the request, 500
 * JSON (no detail) when one throws. Both the monitoring listener and the control plane's admin API use it.
 */
export function routeRequests(routes: readonly AdminRoute[]): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void {
  return (req, res) => {
    void (async () => {
      for (const route of routes) {
        if (await route(req, res)) return;
      }
      const path = (req.url ?? '/').split('?')[0];
      sendJson(res, 404, { error: 'not_found', reason: `no route for ${req.method ?? ''} ${path ?? ''}` });
    })().catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', reason: 'internal error' });
      else res.destroy();
    });
  };
}

/** GET /metrics, /healthz and /readyz. */
export function monitoringRoute(registry: Registry, health: HealthChecks): AdminRoute {
  return async (req, res) => {
    if (req.method !== 'GET') return false;
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
      return true;
    }
    if (path === '/healthz') {
      const ok = health.healthy();
      sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unhealthy' });
      return true;
    }
    if (path === '/readyz') {
      const reason = health.notReadyReason();
      sendJson(res, reason === undefined ? 200 : 503, reason === undefined ? { status: 'ready' } : { status: 'not ready', reason });
      return true;
    }
    return false;
  };
}

/**
 * The admin/monitoring listener: /metrics, /healthz, /readyz, then any extra routes. A route
 * returns true when it handled the request.
 */
export async function startAdminServer(
  address: ListenAddress,
  registry: Registry,
  health: HealthChecks,
  routes: readonly AdminRoute[] = [],
  guard?: ListenerGuard,
): Promise<Server> {
  const server = createServer(guard === undefined ? {} : httpServerOptions(guard.limits), routeRequests([monitoringRoute(registry, health), ...routes]));
  if (guard !== undefined) enforceListenerLimits(server, guard.limits.maxConnections, guard.refused);
  await listen(server, address);
  return server;
}

/** A listener's limits, and what to do with each connection they cut (count it). */
export interface ListenerGuard {
  readonly limits: Pick<ListenerLimits, 'maxConnections' | 'headersTimeoutMs' | 'requestTimeoutMs'>;
  readonly refused: (reason: LimitRefusal) => void;
}

export function sendJson(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
