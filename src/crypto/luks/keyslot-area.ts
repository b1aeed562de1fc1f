/**
 * A keyslot's key material area is aes-xts-plain64 with 512-byte sectors
 * counted from the area start, under a key derived from the passphrase by
 * the keyslot's KDF. Formatting encrypts it and unlocking decrypts it; both
 * go through here so the area key is wiped the same way on every path.
 */
import { deriveKey } from './kdf.js';
import { SECTOR } from './limits.js';
import type { Kdf } from './model.js';
import { xtsEngine } from '../xts.js';

/** Encrypt (true) or decrypt (false) `material` in place with the area key `kdf` derives from `passphrase`. */
export async function cryptKeyslotArea(encrypt: boolean, kdf: Kdf, passphrase: Buffer, areaKeySize: number, material: Buffer): Promise<void> {
  const areaKey = await deriveKey(kdf, passphrase, areaKeySize);
  let engine;
  try {
    engine = xtsEngine(areaKey);
  } finally {
    areaKey.fill(0);
  }
  try {
    engine.crypt(encrypt, material, SECTOR, 0, 1);
  } finally {
    engine.wipe();
  }
}
