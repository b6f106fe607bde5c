import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The ports freePort hands out: below the kernel's ephemeral range. A port from listen(0) is in
 * that range, and between freePort's close and the real bind any outgoing connection of any test
 * may take it as its local port (etcd once failed to start so: "bind: address already in use").
 * Below the range only explicit binds land, and they are random here.
 */
function portsBelowTheEphemeralRange(): { low: number; high: number } | undefined {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low === undefined || !Number.isInteger(low) || low <= 12_000) return undefined;
    return { low: 10_000, high: low - 1 };
  } catch {
    return undefined;
  }
}

const RANGE = portsBelowTheEphemeralRange();

async function listensOn(port: number, host: string): Promise<number | undefined> {
  const server = createServer();
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (!bound) return undefined;
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address === null || typeof address === 'string' ? undefined : address.port;
}

/** A port free on `host` (default 127.0.0.1) a moment ago, for a server started next that must be told its port. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  if (RANGE !== undefined) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = await listensOn(RANGE.low + Math.floor(Math.random() * (RANGE.high - RANGE.low + 1)), host);
      if (port !== undefined) return port;
    }
  }
  const port = await listensOn(0, host);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
