import { describe, expect, it } from 'vitest';
import { MAX_AUTHZ_HEADER_BYTES, MAX_AUTHZ_HEADERS } from '@airlock/common/headers';
import { authzHeaders } from './authz-headers.ts';

const raw = (pairs: [string, string][]): string[] => pairs.flat();

describe('headers sent with an Authorize request', () => {
  it.each<[string, [string, string][], [string, string][]]>([
    ['lower-cases names, keeps values as sent', [['X-Tenant', 'A b']], [['x-tenant', 'A b']]],
    ['keeps every occurrence of a repeated header', [['x-t', 'a'], ['X-T', 'b']], [['x-t', 'a'], ['x-t', 'b']]],
    ['never sends secrets', [['Authorization', 'Bearer s'], ['cookie', 'c=1'], ['Proxy-Authorization', 'Basic x'], ['x-ok', '1']], [['x-ok', '1']]],
    ['never sends hop-by-hop headers, Host or XFCC', [['host', 'a.b'], ['connection', 'close'], ['te', 'trailers'], ['x-forwarded-client-cert', 'By=x'], ['x-ok', '1']], [['x-ok', '1']]],
    ['never sends an airlock-ticket header, in any case (only a sidecar sets one, for its peer)', [['Airlock-Ticket', 'AAAA'], ['airlock-ticket', 'BBBB'], ['x-ok', '1']], [['x-ok', '1']]],
    ['never sends headers the Connection header names', [['connection', 'X-Secret'], ['x-secret', 's'], ['x-ok', '1']], [['x-ok', '1']]],
    ['never sends names with an underscore (dropped, as nginx does)', [['x_forwarded_client_cert', 'By=x'], ['X_Tenant', 'a'], ['x-tenant_', 'b'], ['x-ok', '1']], [['x-ok', '1']]],
  ])('%s', (_why, input, sent) => {
    const h = authzHeaders(raw(input));
    expect(h.entries.map((e) => [e.name, e.value])).toEqual(sent);
    expect(h.incomplete).toBe(false);
  });

  it(`sends at most ${MAX_AUTHZ_HEADERS} occurrences, and says when it left some out`, () => {
    const many = Array.from({ length: MAX_AUTHZ_HEADERS + 5 }, (_, i): [string, string] => [`x-h${i}`, 'v']);
    const h = authzHeaders(raw(many));
    expect(h.entries).toHaveLength(MAX_AUTHZ_HEADERS);
    expect(h.incomplete).toBe(true);
  });

  it(`sends at most ${MAX_AUTHZ_HEADER_BYTES} bytes, skipping a header too large but keeping smaller ones`, () => {
    const h = authzHeaders(raw([['x-a', '1'], ['x-big', 'v'.repeat(MAX_AUTHZ_HEADER_BYTES)], ['x-b', '2']]));
    expect(h.entries.map((e) => e.name)).toEqual(['x-a', 'x-b']);
    expect(h.incomplete).toBe(true);
  });

  it('sends a name with all its occurrences or not at all (padding cannot hide a second value)', () => {
    const filler = Array.from({ length: MAX_AUTHZ_HEADERS - 2 }, (_, i): [string, string] => [`x-f${i}`, 'v']);
    const h = authzHeaders(raw([['x-tenant', 'a'], ...filler, ['x-tenant', 'z'], ['x-late', '1']]));
    // x-tenant (2) + fillers (30) fill the budget: x-late is left out, both x-tenant values are in.
    expect(h.entries.filter((e) => e.name === 'x-tenant').map((e) => e.value)).toEqual(['a', 'z']);
    expect(h.entries.some((e) => e.name === 'x-late')).toBe(false);
    expect(h.incomplete).toBe(true);
    const over = authzHeaders(raw([...filler, ['x-x', '1'], ['x-tenant', 'a'], ['x-tenant', 'z']]));
    expect(over.entries.some((e) => e.name === 'x-tenant')).toBe(false);
    expect(over.incomplete).toBe(true);
  });
});
