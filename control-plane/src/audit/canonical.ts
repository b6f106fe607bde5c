import { hash } from 'node:crypto';
import { canonicalJson } from '@airlock/common/canonical-json';

/** The JCS form audit events are hashed in (shared with MCP tool pinning: one implementation). */
export { canonicalJson };

/** SHA-256 of an event's canonical form, hex: what the next event names as `prevHash`. */
export function hashEvent(event: object): string {
  return hash('sha256', canonicalJson(event));
}

/** The `prevHash` of a chain's first event. */
export const GENESIS_PREV_HASH = '0'.repeat(64);
