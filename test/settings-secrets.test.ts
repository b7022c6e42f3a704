// The proxy password at rest: encrypted through the host's codec (Electron's safeStorage in the
// desktop app; here an AES-GCM stand-in, since safeStorage is an Electron API).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Settings, type SecretCodec } from '../src-main/engine/settings.js';
import { tempDir } from './helpers/fixtures.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function aesCodec(key = crypto.randomBytes(32)): SecretCodec {
  return {
    encrypt(plain) {
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
    },
    decrypt(stored) {
      const raw = Buffer.from(stored, 'base64');
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}

const proxy = { enabled: true, host: 'proxy.example', port: 3128, username: 'ops', password: 'correct horse' };

it('stores the proxy password encrypted and reads it back decrypted', () => {
  const dir = tempDir();
  dirs.push(dir);
  const codec = aesCodec();
  Settings.open(dir, codec).set('proxy', proxy);
  const onDisk = fs.readFileSync(path.join(dir, 'settings.json'), 'utf8');
  expect(onDisk).not.toContain('correct horse');
  expect(onDisk).toMatch(/"password": "enc:v1:/);
  expect(Settings.open(dir, codec).data.proxy).toEqual(proxy);
  // The settings file is readable by its owner only.
  expect(fs.statSync(path.join(dir, 'settings.json')).mode & 0o077).toBe(0);
});

it('treats a password encrypted elsewhere (another key) as not set, keeping the rest', () => {
  const dir = tempDir();
  dirs.push(dir);
  Settings.open(dir, aesCodec()).set('proxy', proxy);
  const elsewhere = Settings.open(dir, aesCodec());
  expect(elsewhere.data.proxy).toEqual({ ...proxy, password: '' });
});

it('stores the password as is when no codec is available', () => {
  const dir = tempDir();
  dirs.push(dir);
  Settings.open(dir).set('proxy', proxy);
  expect(Settings.open(dir).data.proxy.password).toBe('correct horse');
});
