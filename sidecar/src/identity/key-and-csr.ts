import { generateKeyPair, sign } from 'node:crypto';
import { promisify } from 'node:util';

const generateKeyPairAsync = promisify(generateKeyPair);

/** The key a sidecar makes: ECDSA P-256 as go-spiffe and SPIRE do (cheaper handshakes), or RSA 2048 for peers that need it. */
export type KeyType = 'ecdsa-p256' | 'rsa-2048';
export const KEY_TYPES: readonly KeyType[] = ['ecdsa-p256', 'rsa-2048'];

export interface KeyAndCsr {
  readonly keyPem: string;
  readonly csrPem: string;
}

/**
 * A fresh key of `keyType` (off the event loop) and a CSR for it. The CSR's subject is a placeholder:
 * the control plane decides the SVID's contents from the attested identity.
 *
 * The PKCS#10 request is written here in DER (a fixed shape, a few bytes of framing around the
 * public key Node exports and the signature Node makes) rather than with node-forge: a sidecar
 * would otherwise hold forge's ~0.9 MB of code in its heap for its whole life for this one call.
 */
export async function newKeyAndCsr(keyType: KeyType = 'ecdsa-p256'): Promise<KeyAndCsr> {
  const { privateKey, publicKey } =
    keyType === 'rsa-2048' ? await generateKeyPairAsync('rsa', { modulusLength: 2048 }) : await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const info = der(0x30, [
    Buffer.from([0x02, 0x01, 0x00]), // version 0
    der(0x30, [der(0x31, [der(0x30, [OID_COMMON_NAME, der(0x0c, [Buffer.from('airlock-sidecar', 'utf8')])])])]), // subject CN
    publicKey.export({ type: 'spki', format: 'der' }),
    Buffer.from([0xa0, 0x00]), // attributes: none
  ]);
  // RSASSA-PKCS1-v1_5, or ECDSA with its DER (r, s): what PKCS#10 expects of each.
  const signature = sign('sha256', info, privateKey);
  // RFC 5758: ecdsa-with-SHA256 has no parameters; sha256WithRSAEncryption has NULL ones.
  const algorithm = keyType === 'rsa-2048' ? der(0x30, [OID_SHA256_WITH_RSA, Buffer.from([0x05, 0x00])]) : der(0x30, [OID_ECDSA_WITH_SHA256]);
  const csr = der(0x30, [info, algorithm, der(0x03, [Buffer.from([0x00]), signature])]);
  const lines = csr.toString('base64').match(/.{1,64}/g) ?? [];
  return { keyPem, csrPem: `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n` };
}

const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]); // 2.5.4.3
const OID_SHA256_WITH_RSA = Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]); // 1.2.840.113549.1.1.11
const OID_ECDSA_WITH_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]); // 1.2.840.10045.4.3.2

/** One DER tag-length-value with definite length. */
function der(tag: number, parts: readonly Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  if (n > 0xffff) throw new Error(`DER value of ${n} bytes: longer than this CSR's fixed shape allows`);
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}
