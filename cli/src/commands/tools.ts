import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock tools list [--mcp-server S] [-o table|json|yaml]
       airlock tools accept SERVER TOOL [--hash H] [-o table|json|yaml]

MCP tool pinning (README "Tool pinning"). The control plane pins, per MCP server (a SPIFFE ID, or
host:port for an external server), the SHA-256 of each tool's name, description and input schema
when a tools/list answer first lists it. A later answer with another hash (a rug pull), or a tool
a poisoning detector flags, follows the policy's onToolChange: alert, deny (the tool is left out
of tools/list and its calls are denied with reason tool_changed / tool_flagged) or quarantine.

  list     the pinned tools and their state (role viewer): pinned, changed or flagged (denied or
           alert), the version awaiting acceptance and the detectors (id@version) that flagged it;
           --mcp-server S only those of one MCP server (--server is the control plane's URL)
  accept   pins the version awaiting acceptance (role responder; audited): calls to the tool are
           decided by policy again. --hash H accepts only that version (refused if the server
           changed it again since you looked), or pins H ahead for a tool not yet seen.
           It does not release a quarantine: \`airlock release ID\` does.

${ADMIN_COMMAND_HELP}`;

interface Pin {
  server: string;
  tool: string;
  state: string;
  hash: string;
  pinnedAt: string;
  pinnedBy: string;
  pending?: { hash: string; seenAt: string; detectors: string[]; action: string };
}

const short = (hash: string): string => (hash === '' ? '-' : hash.slice(0, 12));

export async function runTools(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { 'mcp-server': { type: 'string' }, hash: { type: 'string' } });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [sub, ...rest] = positionals;
  if (sub === 'list') {
    if (rest.length > 0 || values.hash !== undefined) throw new UsageError('expected `airlock tools list [--mcp-server S]`');
    const mcpServer = values['mcp-server'];
    const query = typeof mcpServer === 'string' ? `?server=${encodeURIComponent(mcpServer)}` : '';
    const { items, truncated } = (await adminGet(credentialsOf(values), `/v1/mcp/tools${query}`)) as { items: Pin[]; truncated: boolean };
    print(output, { items, truncated }, () => {
      if (items.length === 0) return 'no MCP tool is pinned';
      const table = formatTable(
        ['SERVER', 'TOOL', 'STATE', 'PINNED', 'BY', 'SEEN', 'DETECTORS'],
        items.map((p) => [p.server, p.tool, p.state, short(p.hash), p.pinnedBy === '' ? '-' : p.pinnedBy, p.pending === undefined ? '-' : short(p.pending.hash), p.pending?.detectors.join(',') || '-']),
      );
      return truncated ? `${table}\n(more not shown: narrow with --mcp-server)` : table;
    });
    return 0;
  }
  if (sub === 'accept') {
    const [server, tool, ...extra] = rest;
    if (server === undefined || tool === undefined || extra.length > 0 || values['mcp-server'] !== undefined) throw new UsageError('expected `airlock tools accept SERVER TOOL [--hash H]`');
    if (typeof values.hash === 'string' && !/^[0-9a-f]{64}$/.test(values.hash)) throw new UsageError('--hash must be the full lowercase hex SHA-256 (64 characters; `airlock tools list -o json` shows it)');
    const pin = (await adminPost(credentialsOf(values), '/v1/mcp/tools/accept', { server, tool, ...(typeof values.hash === 'string' ? { hash: values.hash } : {}) })) as Pin;
    print(output, pin, () => `${pin.tool} on ${pin.server} pinned at ${pin.hash}: its calls are decided by policy again`);
    return 0;
  }
  throw new UsageError('expected `airlock tools list` or `airlock tools accept SERVER TOOL` (see airlock tools --help)');
}
