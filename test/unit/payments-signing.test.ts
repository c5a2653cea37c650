// Proves the provider's signatures: a notification signature verifies over exactly
// timestamp\nnonce\nbody and fails when any byte of them changes, or under another key; a signed
// return payload round-trips and fails when tampered; keys survive export and import; and no
// garbage of any type makes a verifier throw.
import { sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  exportPrivateKey,
  exportPublicKey,
  generateSigningKeyPair,
  importPrivateKey,
  importPublicKey,
  signNotification,
  signReturnPayload,
  verifyNotificationSignature,
  verifyReturnPayload,
} from '../../src/payments/signing.js';

const keys = generateSigningKeyPair();
const other = generateSigningKeyPair();
const timestamp = '1767225600';
const nonce = 'a3f1c9d2e4b5a6c7d8e9f0a1b2c3d4e5';
const body = '{"orderId":"o-1","transactionId":"t-1","status":"paid","amount":"20.00","at":"2026-01-01T00:00:00.000Z"}';

/** Every one-character change of a string: each position flipped to another character. */
function mutations(text: string): string[] {
  const changed = [...text].map((char, index) => text.slice(0, index) + (char === 'x' ? 'y' : 'x') + text.slice(index + 1));
  return [...changed, `${text} `, text.slice(1), `\n${text}`];
}

describe('notification signatures', () => {
  const signature = signNotification(keys.privateKey, timestamp, nonce, body);

  it('verify with the public key, over exactly timestamp\\nnonce\\nbody', () => {
    expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, signature)).toBe(true);
    // The separator is part of what is signed: shifting a character across it breaks it.
    expect(verifyNotificationSignature(keys.publicKey, `${timestamp}\n${nonce.slice(0, 1)}`, nonce.slice(1), body, signature)).toBe(false);
  });

  it('fail when any byte of timestamp, nonce or body changes', () => {
    for (const changed of mutations(timestamp)) expect(verifyNotificationSignature(keys.publicKey, changed, nonce, body, signature)).toBe(false);
    for (const changed of mutations(nonce)) expect(verifyNotificationSignature(keys.publicKey, timestamp, changed, body, signature)).toBe(false);
    for (const changed of mutations(body)) expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, changed, signature)).toBe(false);
  });

  it('fail under another key, and for a changed or re-spelled signature', () => {
    expect(verifyNotificationSignature(other.publicKey, timestamp, nonce, body, signature)).toBe(false);
    const bytes = Buffer.from(signature, 'base64');
    for (let index = 0; index < bytes.length; index += 7) {
      const flipped = Buffer.from(bytes);
      flipped[index]! ^= 1;
      expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, flipped.toString('base64'))).toBe(false);
    }
    // Junk around a valid signature is not skipped over.
    expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, ` ${signature}`)).toBe(false);
    expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, `${signature}AA`)).toBe(false);
  });

  it('a fresh signature per attempt: another nonce gives another signature, each valid only with its own', () => {
    const second = signNotification(keys.privateKey, timestamp, 'another-nonce', body);
    expect(second).not.toBe(signature);
    expect(verifyNotificationSignature(keys.publicKey, timestamp, 'another-nonce', body, second)).toBe(true);
    expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, second)).toBe(false);
  });

  it('never throw on garbage: false for every wrong type or shape', () => {
    const garbage: unknown[] = [undefined, null, 0, 1.5, {}, [], '', '=', '!!!', 'A'.repeat(100_000), Symbol('s'), () => 1];
    for (const value of garbage) {
      expect(verifyNotificationSignature(keys.publicKey, value, nonce, body, signature)).toBe(false);
      expect(verifyNotificationSignature(keys.publicKey, timestamp, value, body, signature)).toBe(false);
      expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, value, signature)).toBe(false);
      expect(verifyNotificationSignature(keys.publicKey, timestamp, nonce, body, value)).toBe(false);
      expect(verifyNotificationSignature(value as never, timestamp, nonce, body, signature)).toBe(false);
    }
  });
});

describe('signed return payloads', () => {
  const content = { orderId: 'o-1', outcome: 'success', amount: '20.00', at: '2026-01-01T00:00:00.000Z' };
  const payload = signReturnPayload(keys.privateKey, content);

  it('round-trip: base64url(JSON).base64url(signature), verified back to the same content', () => {
    expect(payload).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(JSON.parse(Buffer.from(payload.split('.')[0]!, 'base64url').toString('utf8'))).toEqual(content);
    expect(verifyReturnPayload(keys.publicKey, payload)).toEqual({ ok: true, content });
  });

  it('fail with a reason when tampered, re-signed by another key or malformed', () => {
    expect(verifyReturnPayload(other.publicKey, payload).ok).toBe(false);
    const [encoded, signature] = payload.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...content, amount: '2000.00' })).toString('base64url');
    expect(verifyReturnPayload(keys.publicKey, `${forged}.${signature}`)).toEqual({ ok: false, reason: 'the payload signature does not verify' });
    for (const changed of mutations(encoded)) expect(verifyReturnPayload(keys.publicKey, `${changed}.${signature}`).ok).toBe(false);
    expect(verifyReturnPayload(keys.publicKey, signReturnPayload(other.privateKey, content)).ok).toBe(false);
    for (const value of [undefined, null, 42, {}, '', '.', 'a.b.c', `${encoded}.`, `.${signature}`, `${payload}.x`, 'x'.repeat(20_000)]) {
      const verdict = verifyReturnPayload(keys.publicKey, value);
      expect(verdict.ok).toBe(false);
      if (!verdict.ok) expect(verdict.reason).toEqual(expect.any(String));
    }
  });

  it('a signed payload whose content is not JSON is refused, not thrown', () => {
    const encoded = Buffer.from('not json', 'utf8').toString('base64url');
    const signature = sign(null, Buffer.from(encoded, 'ascii'), keys.privateKey).toString('base64url');
    expect(verifyReturnPayload(keys.publicKey, `${encoded}.${signature}`).ok).toBe(false);
  });
});

describe('keys', () => {
  it('export and import as base64 SPKI / PKCS8 DER, and still sign and verify', () => {
    const publicKey = importPublicKey(exportPublicKey(keys.publicKey));
    const privateKey = importPrivateKey(exportPrivateKey(keys.privateKey));
    expect(exportPublicKey(publicKey)).toBe(exportPublicKey(keys.publicKey));
    expect(verifyNotificationSignature(publicKey, timestamp, nonce, body, signNotification(privateKey, timestamp, nonce, body))).toBe(true);
  });

  it('import refuses what is not an Ed25519 key of the right kind, naming the problem', () => {
    expect(() => importPublicKey('not base64!')).toThrow(/public key/);
    expect(() => importPublicKey('')).toThrow(/public key/);
    expect(() => importPublicKey(exportPrivateKey(keys.privateKey))).toThrow(/SPKI/);
    expect(() => importPrivateKey(exportPublicKey(keys.publicKey))).toThrow(/PKCS8/);
  });
});
