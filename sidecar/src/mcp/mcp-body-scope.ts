import type { McpBodyScope } from '@airlock/proto/identity/v1';

/**
 * Which destinations' POST application/json bodies this sidecar reads for MCP, as last pushed by
 * the control plane (WatchTrustBundle, mcp_body; derived there from the policy). Until a scope
 * arrives (or from a control plane that sends none) every body is read, as before. A stale scope is
 * safe: the control plane checks each skipped body against its own snapshot (mcp/lazy-body.ts).
 */
export class McpBodyNeeds {
  #scope: McpBodyScope | undefined;
  #hosts: ReadonlySet<string> = new Set();
  #ids: ReadonlySet<string> = new Set();

  /** The pushed scope; undefined (none pushed) = read every body. */
  update(scope: McpBodyScope | undefined): void {
    this.#hosts = new Set(scope?.hosts ?? []);
    this.#ids = new Set(scope?.spiffeIds ?? []);
    this.#scope = scope;
  }

  /** The policy version of the scope held; undefined before one arrived. */
  get version(): number | undefined {
    return this.#scope?.policyVersion;
  }

  /** Egress: whether a call to `host` (as the agent named it) needs its body read. */
  needsHost(host: string): boolean {
    const s = this.#scope;
    // An egress cannot tell a mesh host from an external one: all_agents reads every body.
    if (s === undefined || s.all || s.allAgents) return true;
    const lower = host.toLowerCase();
    const h = lower.endsWith('.') ? lower.slice(0, -1) : lower;
    if (this.#hosts.has(h)) return true;
    for (const suffix of s.hostSuffixes) if (h.length > suffix.length && h.endsWith(suffix)) return true;
    return false;
  }

  /** Ingress: whether a call to this sidecar's agent (`self`, its SPIFFE ID) needs its body read. */
  needsAgent(self: string): boolean {
    const s = this.#scope;
    return s === undefined || s.all || s.allAgents || this.#ids.has(self);
  }
}
