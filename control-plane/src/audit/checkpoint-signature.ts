import { X509Certificate, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { isControlPlaneId, parseSpiffeId } from '@airlock/common/spiffe';
import { errorMessage } from '@airlock/common/errors';
import { canonicalJson } from './canonical.ts';
import type { CheckpointSignature } from './event.ts';

/**
 * Checkpoints are signed with the control plane's serving key: its certificate (URI SAN the
 * control plane's SPIFFE ID) chains to the trust bundle, so a verifier needs only the public
 * bundle. A sidecar's SVID chains there too, hence the SPIFFE ID check: no agent can sign one.
 */
export interface CheckpointSigner {
  /** PEM private key (RSA or ECDSA P-256). */
  readonly keyPem: string;
  /** PEM certificate of that key, then intermediates up to (not including) the root. */
  readonly chainPem: string;
}

function derOfPem(pem: string): string[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b).raw.toString('base64'));
}

function algOf(key: KeyObject): CheckpointSignature['alg'] | undefined {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

/** What is signed: the checkpoint with its signature's algorithm and certificates, not its value. */
function signedBytes(unsigned: object, alg: string, certificates: readonly string[]): Buffer {
  return Buffer.from(canonicalJson({ ...unsigned, signature: { alg, certificates } }));
}

/** The last signer's key and certificates, read once (the serving key changes twice a day). */
let prepared: { readonly signer: CheckpointSigner; readonly key: KeyObject; readonly alg: CheckpointSignature['alg']; readonly certificates: readonly string[] } | undefined;

function prepare(signer: CheckpointSigner): NonNullable<typeof prepared> {
  if (prepared?.signer !== signer) {
    const key = createPrivateKey(signer.keyPem);
    const alg = algOf(key);
    if (alg === undefined) throw new Error(`cannot sign audit checkpoints with a ${key.asymmetricKeyType ?? 'unknown'} key`);
    prepared = { signer, key, alg, certificates: derOfPem(signer.chainPem) };
  }
  return prepared;
}

/** Signs a checkpoint event (all its fields but `signature`). */
export function signCheckpoint(unsigned: object, signer: CheckpointSigner): CheckpointSignature {
  const { key, alg, certificates } = prepare(signer);
  const value = sign('sha256', signedBytes(unsigned, alg, certificates), key).toString('base64');
  return { alg, certificates, value };
}

/** The same, the signature made on libuv's thread pool (an RSA signature is ~0.8 ms off the event loop). */
export function signCheckpointAsync(unsigned: object, signer: CheckpointSigner): Promise<CheckpointSignature> {
  return new Promise((resolve, reject) => {
    const { key, alg, certificates } = prepare(signer);
    sign('sha256', signedBytes(unsigned, alg, certificates), key, (err, value) => {
      if (err !== null) reject(err);
      else resolve({ alg, certificates, value: value.toString('base64') });
    });
  });
}

function validAt(cert: X509Certificate, at: number): boolean {
  return cert.validFromDate.getTime() <= at && at <= cert.validToDate.getTime();
}

/**
 * Why a checkpoint's signature does not hold, or undefined when it does: signed by a certificate
 * of the control plane's SPIFFE ID, valid at the checkpoint's time, chaining to one of `roots`.
 */
export function checkpointSignatureProblem(event: { readonly time: string; readonly signature: CheckpointSignature }, roots: readonly X509Certificate[]): string | undefined {
  const { signature, ...unsigned } = event;
  let chain: X509Certificate[];
  try {
    chain = signature.certificates.map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
  } catch (err) {
    return `its signer certificate cannot be read: ${errorMessage(err)}`;
  }
  const leaf = chain[0];
  if (leaf === undefined) return 'it names no signer certificate';
  if (algOf(leaf.publicKey) !== signature.alg) return `its algorithm ${signature.alg} is not the signer key's`;
  let ok: boolean;
  try {
    ok = verify('sha256', signedBytes(unsigned, signature.alg, signature.certificates), leaf.publicKey, Buffer.from(signature.value, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) return 'its signature does not verify (the checkpoint or an event it covers was altered, or it was forged)';
  const uri = /(?:^|, )URI:([^,]+)/.exec(leaf.subjectAltName ?? '')?.[1];
  let isControlPlane: boolean;
  try {
    isControlPlane = uri !== undefined && isControlPlaneId(parseSpiffeId(uri));
  } catch {
    isControlPlane = false;
  }
  if (!isControlPlane) return `it is signed by ${uri ?? 'a certificate without a SPIFFE ID'}, not by a control plane`;
  const at = Date.parse(event.time);
  let current = leaf;
  for (let i = 1; ; i++) {
    if (!validAt(current, at)) return `its signer chain holds a certificate not valid at ${event.time} (${current.subject.replace(/\n/g, ', ')})`;
    const root = roots.find((r) => current.checkIssued(r) && current.verify(r.publicKey));
    if (root !== undefined) return validAt(root, at) ? undefined : `the root it chains to is not valid at ${event.time}`;
    const next = chain[i];
    if (next === undefined || !next.ca || !current.checkIssued(next) || !current.verify(next.publicKey)) return 'its signer certificate does not chain to the trust bundle given';
    current = next;
  }
}
