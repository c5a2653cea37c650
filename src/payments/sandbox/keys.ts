// The sandbox's signing key. It must outlive a restart: an engine pins the public key, and a new
// key on every start would make every pinned engine reject every notification. So: the key given
// (SANDBOX_PRIVATE_KEY), else the one in <dataDir>/sandbox/keys.json, else a new one written there.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { z } from 'zod';
import { exportPrivateKey, exportPublicKey, generateSigningKeyPair, importPrivateKey, type SigningKeyPair } from '../signing.js';
import { writeFileAtomicSync } from './files.js';

const keysFile = z.object({ algorithm: z.literal('ed25519'), privateKey: z.string(), publicKey: z.string() });

function pairOf(privateKey: KeyObject): SigningKeyPair {
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** `folder` undefined: memory only (a fresh key unless one is given). */
export function loadSigningKey(folder: string | undefined, privateKeyBase64: string | undefined): SigningKeyPair {
  if (privateKeyBase64 !== undefined) return pairOf(importPrivateKey(privateKeyBase64));
  if (folder === undefined) return generateSigningKeyPair();
  const path = join(folder, 'keys.json');
  if (existsSync(path)) {
    let privateKey: KeyObject;
    try {
      privateKey = importPrivateKey(keysFile.parse(JSON.parse(readFileSync(path, 'utf8'))).privateKey);
    } catch (error) {
      throw new Error(`the sandbox key file ${path} cannot be read (${(error as Error).message}); restore it, or delete it to make a new key (pinned engines must then fetch the new public key)`, { cause: error });
    }
    return pairOf(privateKey);
  }
  const pair = generateSigningKeyPair();
  const text = JSON.stringify({ algorithm: 'ed25519', privateKey: exportPrivateKey(pair.privateKey), publicKey: exportPublicKey(pair.publicKey) }, null, 2);
  writeFileAtomicSync(path, `${text}\n`, 0o600);
  return pair;
}
