import { createSecureContext } from 'node:tls';
import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import type { TlsMinVersion } from '@airlock/common/config';
import { formatSpiffeId } from '@airlock/common/spiffe';
import { expectSpiffeId } from '../tls/peer-identity.ts';

/** The SPIFFE ID the control plane must present: config `controlPlaneId`, else the well-known one. */
export function controlPlaneId(config: { readonly trustDomain: string; readonly controlPlaneId: string | undefined }): string {
  return config.controlPlaneId ?? formatSpiffeId(config.trustDomain, 'airlock-system', 'airlock-control-plane');
}

export interface ClientIdentity {
  readonly certChainPem: string;
  readonly keyPem: string;
}

/**
 * TLS to the control plane, verified by its SPIFFE ID rather than its host name. Without a client
 * identity this is server-authenticated TLS (first SignCertificate); with one it is mTLS. Built as
 * grpc-js's createSsl builds it, from a secure context of our own: createSsl has no TLS version
 * option, createFromSecureContext is grpc-js's way to set one.
 */
export function controlPlaneCredentials(caPem: string, expectedId: string, minVersion: TlsMinVersion, client?: ClientIdentity): ChannelCredentials {
  const context = createSecureContext({ ca: caPem, minVersion, ...(client === undefined ? {} : { key: client.keyPem, cert: client.certChainPem }) });
  return credentials.createFromSecureContext(context, { checkServerIdentity: expectSpiffeId(expectedId) });
}

/**
 * Reconnect quickly after a control-plane restart: calls fail closed meanwhile, so downtime is
 * visible. HTTP/2 keepalive pings find a replica that vanished without closing its connections
 * (a node lost, a partition), which then fails the long-lived streams so they move to another
 * endpoint; the per-check deadline covers the seconds before. The control plane is verified by
 * SPIFFE ID, not name, so SNI carries a fixed name (an IP address as SNI is not allowed by
 * RFC 6066 and Node warns about it).
 */
export const CONTROL_PLANE_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.ssl_target_name_override': 'airlock-control-plane',
};
