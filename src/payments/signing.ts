// Ed25519 signatures for the payment provider's messages (node:crypto only). Two kinds:
// - a notification: a signature over exactly `${timestamp}\n${nonce}\n${body}`, sent in headers
//   (the shape of WeChat Pay v3's signed callbacks);
// - a signed payload (the synchronous return): base64url(JSON) + "." + base64url(signature over
//   the first part's ASCII), self-contained so the app can forward it as one opaque string.
// The two signed messages can never be mistaken for one another: a notification's message always
// holds a "\n", a payload's first part (base64url) never does.
// Every verify answers false (or a reason) for garbage of any type and never throws: what it
// checks came from the network.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export interface SigningKeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/** An Ed25519 signature is always this long. */
const SIGNATURE_BYTES = 64;
/** Bounds what a verifier will even look at, so a huge header or payload costs nothing. */
export const SIGNED_PAYLOAD_CHARS_MAX = 16 * 1024;

export function generateSigningKeyPair(): SigningKeyPair {
  return generateKeyPairSync('ed25519');
}

/** base64 of the SPKI DER: how the public key is pinned, printed and served. */
export function exportPublicKey(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/** base64 of the PKCS8 DER: how the private key is stored and passed in (SANDBOX_PRIVATE_KEY). */
export function exportPrivateKey(key: KeyObject): string {
  return key.export({ format: 'der', type: 'pkcs8' }).toString('base64');
}

/** Throws an Error naming the problem when the text is not an Ed25519 public key. */
export function importPublicKey(base64: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: strictBase64(base64, 'public key'), format: 'der', type: 'spki' });
  } catch (error) {
    throw new Error(`not a base64 SPKI DER public key: ${(error as Error).message}`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`public key must be ed25519, got ${key.asymmetricKeyType}`);
  return key;
}

/** Throws an Error naming the problem when the text is not an Ed25519 private key. */
export function importPrivateKey(base64: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: strictBase64(base64, 'private key'), format: 'der', type: 'pkcs8' });
  } catch (error) {
    // The key itself is never echoed: it is a secret.
    throw new Error(`not a base64 PKCS8 DER private key: ${(error as Error).message}`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`private key must be ed25519, got ${key.asymmetricKeyType}`);
  return key;
}

/** The exact bytes a notification's signature covers. */
export function notificationMessage(timestamp: string, nonce: string, body: string): Buffer {
  return Buffer.from(`${timestamp}\n${nonce}\n${body}`, 'utf8');
}

/** base64 Ed25519 signature over `${timestamp}\n${nonce}\n${body}`. */
export function signNotification(privateKey: KeyObject, timestamp: string, nonce: string, body: string): string {
  return sign(null, notificationMessage(timestamp, nonce, body), privateKey).toString('base64');
}

/** True only for a well-formed signature by this key over exactly these three strings. */
export function verifyNotificationSignature(
  publicKey: KeyObject,
  timestamp: unknown,
  nonce: unknown,
  body: unknown,
  signature: unknown,
): boolean {
  try {
    if (typeof timestamp !== 'string' || typeof nonce !== 'string' || typeof body !== 'string' || typeof signature !== 'string') return false;
    const signatureBytes = decodeSignature(signature, 'base64');
    if (signatureBytes === undefined) return false;
    return verify(null, notificationMessage(timestamp, nonce, body), publicKey, signatureBytes);
  } catch {
    return false;
  }
}

/** The synchronous return: base64url(JSON of content) + "." + base64url(signature over the first part). */
export function signReturnPayload(privateKey: KeyObject, content: unknown): string {
  const encoded = Buffer.from(JSON.stringify(content), 'utf8').toString('base64url');
  return `${encoded}.${sign(null, Buffer.from(encoded, 'ascii'), privateKey).toString('base64url')}`;
}

export type OpenedPayload = { readonly ok: true; readonly content: unknown } | { readonly ok: false; readonly reason: string };

/** Checks a signed payload and gives back its JSON content, unvalidated (the caller checks the shape). */
export function verifyReturnPayload(publicKey: KeyObject, payload: unknown): OpenedPayload {
  try {
    if (typeof payload !== 'string') return { ok: false, reason: 'the payload must be a string' };
    if (payload.length > SIGNED_PAYLOAD_CHARS_MAX) return { ok: false, reason: `the payload is longer than ${SIGNED_PAYLOAD_CHARS_MAX} characters` };
    const parts = payload.split('.');
    if (parts.length !== 2 || !BASE64URL.test(parts[0]!)) return { ok: false, reason: 'the payload must be <base64url JSON>.<base64url signature>' };
    const signature = decodeSignature(parts[1]!, 'base64url');
    if (signature === undefined) return { ok: false, reason: 'the payload signature is not a base64url Ed25519 signature' };
    if (!verify(null, Buffer.from(parts[0]!, 'ascii'), publicKey, signature)) return { ok: false, reason: 'the payload signature does not verify' };
    return { ok: true, content: JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) };
  } catch (error) {
    return { ok: false, reason: `the payload cannot be read: ${(error as Error).message}` };
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Only the one canonical encoding of 64 bytes: Buffer.from skips junk characters silently, and a
 * signature header that decodes the same from many spellings is nobody's friend.
 */
function decodeSignature(text: string, encoding: 'base64' | 'base64url'): Buffer | undefined {
  if (!(encoding === 'base64' ? BASE64 : BASE64URL).test(text)) return undefined;
  const bytes = Buffer.from(text, encoding);
  if (bytes.length !== SIGNATURE_BYTES || bytes.toString(encoding) !== text) return undefined;
  return bytes;
}

function strictBase64(text: string, what: string): Buffer {
  if (typeof text !== 'string' || text.length === 0 || !BASE64.test(text)) throw new Error(`${what} is not base64`);
  return Buffer.from(text, 'base64');
}
