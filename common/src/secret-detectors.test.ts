import { describe, expect, it } from 'vitest';
import { detectorOf, luhnValid, MAX_SECRET_FINDINGS, scanRequest, SECRET_DETECTORS, SECRET_SCAN_BODY_BYTES } from './secret-detectors.ts';

// Test tokens are assembled here so that no whole token sits in the source (secret scanners).
const AWS = 'AKIA' + 'IOSFODNN7EXAMPLE';
const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const JWT = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: '1234567890', name: 'x' })}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`;
/** Identity: keeps a token's parts apart in the source. */
const s = (part: string): string => part;
const A36 = 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';

function detects(id: string, text: string): boolean {
  const d = SECRET_DETECTORS.find((x) => x.id === id);
  if (d === undefined) throw new Error(`no detector ${id}`);
  return d.matches(text);
}

describe('secret detectors', () => {
  const cases: { id: string; hits: string[]; misses: string[] }[] = [
    {
      id: 'private-key',
      hits: ['-----BEGIN RSA PRIVATE KEY-----\nMIIE', 'x-----BEGIN PRIVATE KEY-----', '"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Bl', '-----BEGIN ENCRYPTED PRIVATE KEY-----', '-----BEGIN PGP PRIVATE KEY BLOCK-----', '-----BEGIN EC PRIVATE KEY-----'],
      misses: ['-----BEGIN PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----', 'BEGIN RSA PRIVATE KEY', '-----BEGIN rsa private key-----'],
    },
    {
      id: 'aws-access-key',
      hits: [AWS, `key=${AWS}&x=1`, `"ASIA${s('Y34FZKBOKMUTVV7A')}"`],
      misses: [AWS.slice(0, -1), `${AWS}X`, `X${AWS}`, AWS.toLowerCase(), `AKIB${AWS.slice(4)}`],
    },
    {
      id: 'github-token',
      hits: [`ghp_${A36}`, `token ghs_${A36}`, `github_pat_${s('11ABCDEFG0123456789abc')}_${'x'.repeat(59)}`],
      misses: [`ghp_${A36.slice(1)}`, `ghx_${A36}`, `ghp_${A36}z`, 'github_pat_short'],
    },
    {
      id: 'slack-token',
      hits: ['xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp', 'Bearer xoxp-123456789012-123456789012-abcdef0123456789'],
      misses: ['xoxz-1234567890-AbCdEfGhIjKl', 'xoxb-12-AbCdEfGhIjKl', 'axoxb-1234567890-AbCdEfGhIjKl'],
    },
    {
      id: 'google-api-key',
      hits: [`AIza${s('SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY')}`, `?key=AIza${s('SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY')}&q=1`],
      misses: [`AIza${s('SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBW')}`, `AIza${s('SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWYZ')}`, `aiza${s('SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY')}`],
    },
    {
      id: 'openai-api-key',
      hits: [`sk-${'a'.repeat(48)}`, `Bearer sk-proj-${'Ab1_'.repeat(20)}`, `sk-svcacct-${'Z'.repeat(40)}`],
      misses: ['sk-short', `task-${'a'.repeat(48)}`, `sk-ant-api03-${'a'.repeat(90)}`, `sk_${'a'.repeat(48)}`],
    },
    {
      id: 'anthropic-api-key',
      hits: [`sk-ant-api03-${'Ab1-'.repeat(24)}`, `x-api-key: sk-ant-${'a'.repeat(40)}`],
      misses: ['sk-ant-short', `sk-anthropic-${'a'.repeat(10)}`, `risk-ant-${'a'.repeat(40)}`],
    },
    {
      id: 'stripe-secret-key',
      hits: [`sk_live_${s('4eC39HqLyjWDarjtT1zdp7dc')}`, `rk_live_${'a'.repeat(30)}`],
      misses: [`sk_test_${s('4eC39HqLyjWDarjtT1zdp7dc')}`, `pk_live_${s('4eC39HqLyjWDarjtT1zdp7dc')}`, 'sk_live_short'],
    },
    {
      id: 'jwt',
      hits: [JWT, `Bearer ${JWT}`, `${b64url({ alg: 'none' })}.${b64url({ sub: 'a' })}.`],
      misses: [`${b64url({ typ: 'JWT' })}.${b64url({ sub: 'a' })}.sig`, 'eyJhbGciOi.notjson', b64url({ alg: 'HS256' }), `eyJ!!!!.${b64url({ a: 1 })}.x`],
    },
    {
      id: 'email',
      hits: ['alice@example.com', 'to: <bob.smith+tag@mail.example.co.uk>', '{"email":"x_y@z.io"}'],
      misses: ['alice@localhost', 'not an @ sign', 'user@example.c0m', '@example.com'],
    },
    {
      id: 'credit-card',
      hits: ['4111111111111111', '4111 1111 1111 1111', 'card=5555-5555-5555-4444;', '378282246310005'],
      misses: ['4111111111111112' /* Luhn-invalid */, '1733318400000' /* a ms timestamp */, '41111111111111111111111', '4111  1111 1111 1111', '0000000000000000'],
    },
    {
      id: 'us-ssn',
      hits: ['123-45-6789', 'ssn: 078-05-1120.'],
      misses: ['000-12-3456', '666-12-3456', '912-34-5678', '123-00-4567', '123-45-0000', '123456789', '1123-45-6789', '123-45-67890'],
    },
  ];
  for (const c of cases) {
    it(`${c.id} finds its tokens and not their near misses`, () => {
      for (const hit of c.hits) expect(detects(c.id, hit), hit).toBe(true);
      for (const miss of c.misses) expect(detects(c.id, miss), miss).toBe(false);
    });
  }

  it('the card check is Luhn', () => {
    expect(luhnValid('79927398713')).toBe(true);
    expect(luhnValid('79927398710')).toBe(false);
  });

  it('every detector is named id@version, once', () => {
    const refs = SECRET_DETECTORS.map((d) => `${d.id}@${d.version}`);
    expect(new Set(refs).size).toBe(refs.length);
    expect(detectorOf('aws-access-key@1')?.id).toBe('aws-access-key');
    expect(detectorOf('aws-access-key@2')).toBeUndefined();
  });
});

describe('scanRequest', () => {
  it('reports detector and field (path, header:<name>, body), never the matched text', () => {
    const findings = scanRequest({ path: `/v1?key=${AWS}`, rawHeaders: ['Host', 'x', 'X-Api-Key', AWS, 'Authorization', `Bearer ${JWT}`], body: Buffer.from('-----BEGIN RSA PRIVATE KEY-----\nMII') });
    expect(findings).toEqual([
      { detector: 'aws-access-key@1', field: 'path' },
      { detector: 'aws-access-key@1', field: 'header:x-api-key' },
      { detector: 'jwt@1', field: 'header:authorization' },
      { detector: 'private-key@1', field: 'body' },
    ]);
    expect(JSON.stringify(findings)).not.toContain(AWS);
  });

  it('finds nothing in a clean request', () => {
    expect(scanRequest({ path: '/v1/items?id=42', rawHeaders: ['Host', 'api.example', 'Content-Type', 'application/json'], body: Buffer.from('{"q":"hello"}') })).toEqual([]);
  });

  it('scans only the bounded body prefix', () => {
    const pad = Buffer.alloc(SECRET_SCAN_BODY_BYTES, 'a'.charCodeAt(0));
    expect(scanRequest({ path: '/', rawHeaders: [], body: Buffer.concat([pad.subarray(1), Buffer.from(` ${AWS}`)]) })).toEqual([]);
    expect(scanRequest({ path: '/', rawHeaders: [], body: Buffer.concat([pad.subarray(30), Buffer.from(` ${AWS}`)]) })).toEqual([{ detector: 'aws-access-key@1', field: 'body' }]);
  });

  it('reports a detector once per field, and at most MAX_SECRET_FINDINGS', () => {
    const raw = Array.from({ length: 100 }, (_, i) => [`x-k${i}`, AWS]).flat();
    expect(scanRequest({ path: '/', rawHeaders: raw, body: Buffer.from(`${AWS} ${AWS}`) })).toHaveLength(MAX_SECRET_FINDINGS);
    expect(scanRequest({ path: '/', rawHeaders: [], body: Buffer.from(`${AWS} ${AWS}`) })).toHaveLength(1);
  });

  it('stays linear on hostile text (runs of token characters, many starts)', () => {
    const hostile = ['eyJ'.repeat(6000), `${'a'.repeat(8000)}@${'b.'.repeat(4000)}`, '4 '.repeat(8000), 'xoxb-'.repeat(3000), '-----BEGIN '.repeat(1500), 'AKIA'.repeat(4000)];
    for (const text of hostile) {
      // Backtracking gone quadratic on 16 KiB would run past the test's timeout; nothing is timed here.
      expect(scanRequest({ path: '/', rawHeaders: [], body: Buffer.from(text.slice(0, SECRET_SCAN_BODY_BYTES)) })).toEqual([]);
    }
  });
});
