import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@airlock/common/errors';
import { canonicalSerial } from '@airlock/common/spiffe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureAdminToken } from '../../attestation/admin-token.ts';
import { newAdminKeyAndCsr } from '../../ca/admin-csr.ts';
import { CertificateAuthority } from '../../ca/ca.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import { certificatePrincipal, tokenPrincipal } from './admin-auth.ts';

const TD = 'airlock.test';

describe('certificatePrincipal', () => {
  let dir: string;
  let store: SqliteStore;
  let ours: CertificateAuthority;
  let foreign: CertificateAuthority;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-admin-auth-'));
    store = SqliteStore.open(join(dir, 'data'));
    ours = CertificateAuthority.loadOrCreate(join(dir, 'data'), TD);
    foreign = CertificateAuthority.loadOrCreate(join(dir, 'foreign'), TD);
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** An admin certificate of `ca` for `name`, its serial recorded with role editor (as if we had issued it). */
  async function recorded(ca: CertificateAuthority, name: string): Promise<Buffer> {
    const issued = ca.issueAdminCertificate(newAdminKeyAndCsr().csrPem, name, 600_000);
    await store.addAdminCertificate({ serial: canonicalSerial(issued.serial), name, role: 'editor', createdAt: Date.now(), notAfter: issued.notAfter.getTime() });
    return new X509Certificate(issued.certPem).raw;
  }

  it('names the holder of an admin certificate we issued, with its recorded role', async () => {
    expect(await certificatePrincipal(store, await recorded(ours, 'alice'), [ours], TD)).toEqual({ name: 'cert:alice', role: 'editor' });
  });

  it('refuses an admin certificate once its name is revoked, and every other one of that name', async () => {
    const first = await recorded(ours, 'carol');
    const second = await recorded(ours, 'carol');
    expect(await certificatePrincipal(store, first, [ours], TD)).toEqual({ name: 'cert:carol', role: 'editor' });
    expect(await store.revokeAdminCertificates('carol', Date.now())).toBe(2);
    for (const der of [first, second]) {
      await expect(certificatePrincipal(store, der, [ours], TD)).rejects.toThrow(expect.objectContaining({ code: ErrorCode.Unauthenticated, message: 'this admin certificate was revoked' }) as Error);
    }
    expect(await certificatePrincipal(store, await recorded(ours, 'alice'), [ours], TD)).toEqual({ name: 'cert:alice', role: 'editor' });
  });

  // A serial is no secret: another CA's certificate carrying a recorded serial and name must be
  // refused by its signature alone (over gRPC the TLS handshake refuses it first, hiding this check).
  it('refuses an admin certificate of another CA even when its serial and name are on record', async () => {
    await expect(certificatePrincipal(store, await recorded(foreign, 'bob'), [ours], TD)).rejects.toThrow(
      expect.objectContaining({ code: ErrorCode.Unauthenticated, message: expect.stringContaining('not issued by this control plane') as unknown }) as Error,
    );
  });
});

describe('tokenPrincipal', () => {
  let dir: string;
  let store: SqliteStore;
  let token: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-admin-token-'));
    store = SqliteStore.open(dir);
    token = await ensureAdminToken(dir, store);
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // RFC 9110 §11.1: the auth scheme is case-insensitive; clients send `bearer` and `BEARER`.
  it.each(['Bearer', 'bearer', 'BEARER', 'bEaReR'])('accepts the scheme spelled %s', async (scheme) => {
    expect(await tokenPrincipal(store, `${scheme} ${token}`)).toEqual({ name: 'admin-token', role: 'admin' });
  });

  it('accepts more than one space after the scheme (1*SP)', async () => {
    expect((await tokenPrincipal(store, `Bearer   ${token}`)).role).toBe('admin');
  });

  it.each([
    ['another scheme', (t: string) => `Basic ${t}`],
    ['a scheme with a suffix', (t: string) => `Bearerx ${t}`],
    ['no space', (t: string) => `Bearer${t}`],
    ['a tab instead of a space', (t: string) => `Bearer\t${t}`],
    ['the token alone', (t: string) => t],
    ['a token with a comma', (t: string) => `Bearer ${t},x`],
  ])('refuses %s', async (_what, header) => {
    await expect(tokenPrincipal(store, header(token))).rejects.toThrow(expect.objectContaining({ code: ErrorCode.Unauthenticated }) as Error);
  });
});
