// Proves the packet id scheme (domain/packet-id.ts): ids it issues verify with their key and no
// other; changing any character of one makes it forged; the old untagged format is recognised as
// legacy (to be looked up), and anything else is forged.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkPacketId, newPacketId, PACKET_ID_RANDOM_BYTES, packetIdKeyFrom } from '../../src/domain/packet-id.js';

const KEY = packetIdKeyFrom('test-seed-secret');
const OTHER_KEY = packetIdKeyFrom('another-seed-secret');
const fresh = (key = KEY) => newPacketId(key, randomBytes(PACKET_ID_RANDOM_BYTES));
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('packet ids', () => {
  it('are p_ + 32 URL-safe characters, distinct, and verify with their key only', () => {
    const ids = Array.from({ length: 1_000 }, () => fresh());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^p_[A-Za-z0-9_-]{32}$/);
      expect(checkPacketId(KEY, id)).toBe('signed');
      expect(checkPacketId(OTHER_KEY, id)).toBe('forged');
    }
  });

  it('are a pure function of the key and the random bytes', () => {
    const random = Buffer.alloc(PACKET_ID_RANDOM_BYTES, 7);
    expect(newPacketId(KEY, random)).toBe(newPacketId(KEY, random));
    expect(newPacketId(KEY, random)).not.toBe(newPacketId(OTHER_KEY, random));
    expect(() => newPacketId(KEY, Buffer.alloc(3))).toThrow(RangeError);
  });

  it('any one character changed makes an id forged', () => {
    const id = fresh();
    for (let at = 2; at < id.length; at += 1) {
      for (const replacement of ALPHABET) {
        if (replacement === id[at]) continue;
        const changed = id.slice(0, at) + replacement + id.slice(at + 1);
        expect(checkPacketId(KEY, changed), changed).toBe('forged');
      }
    }
  });

  it('the old format (p_ + 16 base64url characters) is legacy; every other shape is forged', () => {
    expect(checkPacketId(KEY, `p_${randomBytes(12).toString('base64url')}`)).toBe('legacy');
    for (const id of ['', 'p_', 'p_doesnotexist', 'x'.repeat(34), `q_${fresh().slice(2)}`, `${fresh()}A`, fresh().slice(0, -1), 'p_AAAAAAAAAAAAAAA=', `p_${'A'.repeat(17)}`]) {
      expect(checkPacketId(KEY, id), id).toBe('forged');
    }
  });
});
