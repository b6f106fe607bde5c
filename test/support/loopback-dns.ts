import { createSocket, type Socket } from 'node:dgram';

/**
 * A DNS server on 127.0.0.1 (UDP, port 0) for the sidecar's `--egress-dns-servers`: it answers an
 * A query for a name `answers` lists with that IPv4 address, anything else with no records. Test
 * host names (`api.example.test`) thus resolve, for the sidecar only, where the test says: on
 * loopback; nothing is asked of a real resolver.
 */
export async function startLoopbackDns(answers: ReadonlyMap<string, string>): Promise<{ port: number; close(): void }> {
  const socket: Socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    const answer = respond(query, answers);
    if (answer !== undefined) socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, close: () => socket.close() };
}

function respond(query: Buffer, answers: ReadonlyMap<string, string>): Buffer | undefined {
  if (query.length < 17) return undefined;
  // The question: labels from byte 12, then QTYPE and QCLASS.
  const labels: string[] = [];
  let at = 12;
  while (at < query.length && query[at] !== 0) {
    const n = query[at] ?? 0;
    labels.push(query.subarray(at + 1, at + 1 + n).toString('latin1'));
    at += 1 + n;
  }
  const end = at + 5;
  if (end > query.length) return undefined;
  const qtype = query.readUInt16BE(at + 1);
  const address = qtype === 1 ? answers.get(labels.join('.').toLowerCase()) : undefined;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // the query's id
  header.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, NOERROR
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(address === undefined ? 0 : 1, 6);
  const question = query.subarray(12, end);
  if (address === undefined) return Buffer.concat([header, question]);
  const record = Buffer.alloc(16);
  record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
  record.writeUInt16BE(1, 2); // A
  record.writeUInt16BE(1, 4); // IN
  record.writeUInt32BE(0, 6); // TTL
  record.writeUInt16BE(4, 10);
  Buffer.from(address.split('.').map(Number)).copy(record, 12);
  return Buffer.concat([header, question, record]);
}
