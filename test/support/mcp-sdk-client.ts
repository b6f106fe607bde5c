// The real MCP TypeScript SDK as an agent uses it, for the MCP end-to-end tests: a client whose
// requests go through a given undici dispatcher (the agent's proxy, or an mTLS peer's connection).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Headers, fetch as undiciFetch, type Dispatcher } from 'undici7';

type Fetch = NonNullable<ConstructorParameters<typeof StreamableHTTPClientTransport>[1]>['fetch'];

export interface SdkClientOptions {
  /**
   * Add the MCP 2026-07-28 Mcp-Method / Mcp-Name headers from each POST body (SDK 1.32 does not send
   * them yet), with `lie` replacing the name where a test lies.
   */
  readonly specHeaders?: { readonly lie?: (name: string) => string };
  /** Ignore transport errors (a GET stream or a notification refused on the way). */
  readonly quiet?: boolean;
}

/** An SDK client connected to `url`, its requests sent through `dispatcher`. */
export async function sdkClient(url: string, dispatcher: Dispatcher, o: SdkClientOptions = {}): Promise<Client> {
  const fetch = ((u: string | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers as ConstructorParameters<typeof Headers>[0]);
    if (o.specHeaders !== undefined && typeof init?.body === 'string') {
      const m = JSON.parse(init.body) as { method?: string; params?: { name?: string } };
      if (m.method !== undefined) headers.set('mcp-method', m.method);
      const name = m.params?.name;
      if (name !== undefined) headers.set('mcp-name', o.specHeaders.lie?.(name) ?? name);
    }
    return undiciFetch(u, { ...(init as object), headers, dispatcher });
  }) as unknown as Fetch;
  const client = new Client({ name: 'planner', version: '1.0.0' });
  if (o.quiet === true) client.onerror = () => undefined;
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch }));
  return client;
}

/** The McpError a call was refused with; fails when it was not refused (or failed otherwise). */
export async function refusal(call: Promise<unknown>): Promise<McpError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof McpError) return err;
    throw err;
  }
  throw new Error('the call was not refused');
}
