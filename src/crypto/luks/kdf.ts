/**
 * Key derivation for keyslots and the volume-key digest, always off the
 * event loop: Node's async pbkdf2 and the argon2 package's async hash both
 * run on libuv's thread pool, so other LUNs keep serving while one LUN's
 * KDF (seconds, up to a GiB of memory) runs.
 */
import { pbkdf2 } from 'node:crypto';
import type { HashName, Kdf } from './model.js';

export function pbkdf2Async(password: Buffer, salt: Buffer, iterations: number, length: number, hash: HashName): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, length, hash, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Derive `length` bytes from `passphrase` with a keyslot's KDF. The caller wipes the result. */
export async function deriveKey(kdf: Kdf, passphrase: Buffer, length: number): Promise<Buffer> {
  if (kdf.type === 'pbkdf2') return pbkdf2Async(passphrase, kdf.salt, kdf.iterations, length, kdf.hash);
  // Loaded on first use: every CLI command and daemon start would pay for it otherwise.
  const { default: argon2 } = await import('argon2');
  return argon2.hash(passphrase, {
    raw: true,
    type: kdf.type === 'argon2id' ? argon2.argon2id : argon2.argon2i,
    version: 0x13,
    salt: kdf.salt,
    timeCost: kdf.time,
    memoryCost: kdf.memoryKiB,
    parallelism: kdf.cpus,
    hashLength: length,
  });
}
