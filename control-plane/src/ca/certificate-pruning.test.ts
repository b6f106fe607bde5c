import { createRootLogger } from '@airlock/common/logging';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../store/sqlite-store.ts';
import { CERTIFICATE_RECORD_RETENTION_MS, startCertificatePruning } from './certificate-pruning.ts';

const ID = 'spiffe://airlock.test/ns/demo/sa/planner';

describe('certificate record pruning', () => {
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const s of stops.splice(0)) s();
  });

  it('forgets, on its timer, the records of certificates expired for longer than the retention, and keeps the rest', async () => {
    const store = new SqliteStore(':memory:');
    const now = 10 * CERTIFICATE_RECORD_RETENTION_MS;
    await store.recordCertificate({ serial: 'aa', spiffeId: ID, notAfter: now - CERTIFICATE_RECORD_RETENTION_MS - 1, issuedAt: 0, issuer: 'r' });
    await store.recordCertificate({ serial: 'bb', spiffeId: ID, notAfter: now - CERTIFICATE_RECORD_RETENTION_MS + 1, issuedAt: 0, issuer: 'r' });
    await store.recordCertificate({ serial: 'cc', spiffeId: ID, notAfter: now + 1, issuedAt: 0, issuer: 'r' });
    const pruning = startCertificatePruning({ store, logger: createRootLogger({ process: 'test', level: 'silent' }), now: () => now, everyMs: 5 });
    stops.push(() => pruning.stop());
    await expect.poll(async () => (await store.listCertificates(ID)).map((c) => c.serial)).toEqual(['bb', 'cc']);
  });
});
