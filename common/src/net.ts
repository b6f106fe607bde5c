import type { Server } from 'node:net';
import type { ListenAddress } from './config.ts';
import { AirlockError, ErrorCode } from './errors.ts';

/** Listens and resolves once bound; a taken port becomes a clear error rather than a crash. */
export function listen(server: Server, address: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new AirlockError(ErrorCode.Config, `cannot listen on ${address.host}:${address.port}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}

export function boundPort(server: Server): number {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new AirlockError(ErrorCode.Internal, 'server is not listening on a TCP port');
  return a.port;
}
