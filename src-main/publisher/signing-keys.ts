// Ed25519 signing keys for the four TUF top-level roles, kept as one JSON file per role in the
// publisher's key directory (private key in PKCS#8 PEM, file mode 0600). Generated on first use.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Signature } from '@tufjs/models';
import { PublishError } from '../engine/errors.js';

export const ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof ROLES)[number];

export interface SigningKey {
  key: Key;
  sign(data: Buffer): Signature;
}

interface KeyFile {
  keytype: 'ed25519';
  private: string;
}

function publicHex(privateKey: crypto.KeyObject): string {
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('hex'); // raw 32-byte key after the SPKI header
}

function toSigningKey(privateKey: crypto.KeyObject): SigningKey {
  const keyVal = { public: publicHex(privateKey) };
  // TUF spec §4.2: the key ID is the SHA-256 of the canonical JSON of the public key.
  const keyID = crypto
    .createHash('sha256')
    .update(canonicalize({ keytype: 'ed25519', scheme: 'ed25519', keyval: keyVal }))
    .digest('hex');
  const key = new Key({ keyID, keyType: 'ed25519', scheme: 'ed25519', keyVal });
  return {
    key,
    sign: (data) => new Signature({ keyID, sig: crypto.sign(null, data, privateKey).toString('hex') }),
  };
}

/** Load the role keys from `dir`, generating the missing ones. */
export function loadOrCreateKeys(dir: string): Record<RoleName, SigningKey> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keys = {} as Record<RoleName, SigningKey>;
  for (const role of ROLES) {
    const file = path.join(dir, `${role}.json`);
    keys[role] = toSigningKey((!fs.existsSync(file) && createKey(file)) || readKey(file, role));
  }
  return keys;
}

function readKey(file: string, role: RoleName): crypto.KeyObject {
  try {
    const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as KeyFile;
    const privateKey = crypto.createPrivateKey(stored.private);
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
    return privateKey;
  } catch (cause) {
    throw new PublishError(`cannot read the ${role} key in ${file}`, { cause });
  }
}

/**
 * A new key in `file`, written whole beside it and then linked into place, which fails if the file
 * exists: two publishes making one keys directory at once never read a half-written key, and the
 * second uses the first one's (undefined: read it).
 */
function createKey(file: string): crypto.KeyObject | undefined {
  const privateKey = crypto.generateKeyPairSync('ed25519').privateKey;
  const stored: KeyFile = { keytype: 'ed25519', private: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  const part = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.part`;
  try {
    fs.writeFileSync(part, JSON.stringify(stored, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    try {
      fs.linkSync(part, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
      throw error;
    }
    return privateKey;
  } finally {
    fs.rmSync(part, { force: true });
  }
}
