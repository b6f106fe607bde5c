import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { assertHostMatches, parseAbsoluteTarget } from './proxy-target.ts';

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
