import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { assertHostMatches, parseAbsoluteTarget, parseAuthorityTarget } from './proxy-target.ts';

const badRequest = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe(ErrorCode.BadRequest);
    return (err as AirlockError).message;
  }
  throw new Error('expected a bad request');
};

describe('parseAbsoluteTarget', () => {
  it('keeps the path exactly as sent, so the control plane judges (and refuses) what the app would get', () => {
    for (const path of ['/v1/search/../admin', '//admin', '/%2e%2e/admin', '/v1%2Fadmin', '/v1/%5Cadmin', '/a/./b', '/%00']) {
      expect(parseAbsoluteTarget(`http://researcher.demo${path}`).path).toBe(path);
    }
    expect(parseAbsoluteTarget('http://researcher.demo/v1/search?q=a/../b').path).toBe('/v1/search?q=a/../b');
  });

  it('reads host, port and authority', () => {
    expect(parseAbsoluteTarget('http://Researcher.Demo:8080/x')).toEqual({ host: 'researcher.demo', port: 8080, authority: 'researcher.demo:8080', path: '/x' });
    expect(parseAbsoluteTarget('http://researcher.demo:80')).toEqual({ host: 'researcher.demo', port: 80, authority: 'researcher.demo', path: '/' });
    expect(parseAbsoluteTarget('http://researcher.demo?q=1').path).toBe('/?q=1');
    expect(parseAbsoluteTarget('http://[::1]:9/x')).toMatchObject({ host: '::1', port: 9 });
  });

  it('refuses backslashes, fragments, credentials, other schemes and origin-form', () => {
    expect(badRequest(() => parseAbsoluteTarget('http://researcher.demo/v1\\admin'))).toMatch(/backslash/);
    expect(badRequest(() => parseAbsoluteTarget('http://researcher.demo\\@evil.example/'))).toMatch(/backslash/);
    expect(badRequest(() => parseAbsoluteTarget('http://researcher.demo/x#y'))).toMatch(/fragment/);
    expect(badRequest(() => parseAbsoluteTarget('http://u:p@researcher.demo/'))).toMatch(/credentials/);
    expect(badRequest(() => parseAbsoluteTarget('https://researcher.demo/'))).toMatch(/only http/);
    expect(badRequest(() => parseAbsoluteTarget('/v1/search'))).toMatch(/absolute URL/);
    // Found by proxy-target.fuzz.test.ts: the origin and CONNECT forms refused port 0, this one did not.
    expect(badRequest(() => parseAbsoluteTarget('http://researcher.demo:0/'))).toMatch(/port 0/);
    expect(badRequest(() => parseAbsoluteTarget('http://[::1]:00'))).toMatch(/port 0/);
  });
});

describe('assertHostMatches', () => {
  const target = parseAbsoluteTarget('http://researcher.demo/v1/search');
  it('accepts the same authority, in any case and with the default port written out', () => {
    assertHostMatches(target, 'researcher.demo');
    assertHostMatches(target, 'RESEARCHER.demo:80');
    assertHostMatches(target, undefined);
  });
  it('refuses a Host naming another host or port', () => {
    expect(badRequest(() => assertHostMatches(target, 'payments.demo'))).toMatch(/another authority/);
    expect(badRequest(() => assertHostMatches(target, 'researcher.demo:8080'))).toMatch(/another authority/);
    expect(badRequest(() => assertHostMatches(target, 'researcher.demo/x'))).toMatch(/Host|authority/);
  });
});

/** Spellings of 169.254.169.254 (the cloud metadata address) that dialling reads as that address. */
const METADATA_SPELLINGS = [
  '169.254.169.254',
  '2852039166',
  '0xA9FEA9FE',
  '0XA9FEA9FE',
  '0xa9fea9fe',
  '0251.0376.0251.0376',
  '0xa9.0xfe.0xa9.0xfe',
  '169.254.43518',
  '169.16689662',
  '169.254.169.254.',
  '2852039166.',
  '169%2e254%2e169%2e254',
  '[::ffff:169.254.169.254]',
  '[::ffff:a9fe:a9fe]',
  '[::FFFF:A9FE:A9FE]',
  '[0:0:0:0:0:ffff:a9fe:a9fe]',
];

describe('parseAuthorityTarget (CONNECT)', () => {
  it.each(METADATA_SPELLINGS)('reads %s:80 as 169.254.169.254, the address that is dialled', (host) => {
    expect(parseAuthorityTarget(`${host}:80`)).toEqual({ host: '169.254.169.254', port: 80, authority: '169.254.169.254:80', path: '' });
  });

  it('reads names in lower case and IPv6 literals without brackets', () => {
    expect(parseAuthorityTarget('API.Example.com:443')).toEqual({ host: 'api.example.com', port: 443, authority: 'api.example.com:443', path: '' });
    expect(parseAuthorityTarget('[::1]:8443')).toEqual({ host: '::1', port: 8443, authority: '[::1]:8443', path: '' });
    expect(parseAuthorityTarget('[0:0::1]:443').host).toBe('::1');
  });

  it.each([
    ['api.example.com', /no port/],
    ['api.example.com:', /no port/],
    ['api.example.com:0', /port 0/],
    ['api.example.com:65536', /not a valid host:port/],
    ['user@169.254.169.254:80', /not a valid host:port/],
    ['api.example.com@169.254.169.254:80', /not a valid host:port/],
    ['169.254.169.254/x:80', /not a valid host:port/],
    ['169.254.169.254\\x:80', /not a valid host:port/],
    ['169.254.169.254#:80', /not a valid host:port/],
    ['999999999999:80', /not a valid host:port/],
    ['[::ffff:169.254.169.254:80', /not a valid host:port/],
    [':80', /not a valid host:port/],
  ])('refuses %s', (target, why) => {
    expect(badRequest(() => parseAuthorityTarget(target))).toMatch(why);
  });
});

describe('parseAbsoluteTarget canonicalizes IP literals the same way', () => {
  it.each(METADATA_SPELLINGS)('reads http://%s/ as 169.254.169.254', (host) => {
    expect(parseAbsoluteTarget(`http://${host}/x`)).toMatchObject({ host: '169.254.169.254', port: 80, authority: '169.254.169.254' });
  });
  it('keeps a non-default port in the authority of a mapped address', () => {
    expect(parseAbsoluteTarget('http://[::ffff:127.0.0.1]:8080/x')).toMatchObject({ host: '127.0.0.1', port: 8080, authority: '127.0.0.1:8080' });
  });
});
