import { describe, expect, it } from 'vitest';
import { requestHeadersToForward, responseHeadersToForward } from './headers.ts';

describe('hop-by-hop headers', () => {
  it.each([
    ['connection', 'keep-alive'],
    ['keep-alive', 'timeout=5'],
    ['proxy-authorization', 'Basic x'],
    ['proxy-connection', 'close'],
    ['te', 'trailers'],
    ['trailer', 'x-t'],
    ['transfer-encoding', 'chunked'],
    ['upgrade', 'websocket'],
    ['x-forwarded-client-cert', 'By=a;URI=b'],
  ])('drops %s from requests', (name, value) => {
    expect(requestHeadersToForward({ [name]: value, 'x-keep': '1' })).toEqual({ 'x-keep': '1' });
  });

  it('drops request headers whose name has an underscore (CGI/WSGI read x_forwarded_client_cert as XFCC)', () => {
    expect(requestHeadersToForward({ x_forwarded_client_cert: 'By=a', 'x-forwarded_client-cert': 'By=b', x_tenant: 'a', 'x-keep': '1' })).toEqual({ 'x-keep': '1' });
  });

  it('drops headers named in Connection, in requests and responses', () => {
    const headers = { connection: 'close, X-Secret ,x-other', 'x-secret': 's', 'x-other': 'o', host: 'a.b' };
    expect(requestHeadersToForward(headers)).toEqual({ host: 'a.b' });
    expect(responseHeadersToForward({ ...headers, 'set-cookie': ['a=1', 'b=2'] })).toEqual({ host: 'a.b', 'set-cookie': ['a=1', 'b=2'] });
  });
});
