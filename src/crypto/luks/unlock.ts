/**
 * Unlock a LUKS volume key with a passphrase (the bytes of a key file):
 * for each keyslot (preferred priority first, "ignore" priority never),
 * derive the area key with the keyslot's KDF, decrypt the key material
 * (aes-xts-plain64, 512-byte sectors counted from the area start), AF-merge
 * it and check the result against the digest. Every intermediate key is
 * wiped; only the matching volume key is returned (the caller wipes it).
 * The whole attempt is bounded by a KDF budget (kdf-budget.ts): every KDF
 * is charged before it runs.
 */
import { timingSafeEqual } from 'node:crypto';
import { afMerge } from './af.js';
import { LuksError } from './errors.js';
import { pbkdf2Async } from './kdf.js';
import { KdfBudget } from './kdf-budget.js';
import { cryptKeyslotArea } from './keyslot-area.js';
import { DEFAULT_LIMITS, SECTOR, type LuksLimits } from './limits.js';
import type { Keyslot, LuksHeader, VolumeDigest } from './model.js';
import type { ReadAt } from './read-header.js';

export async function digestMatches(d: VolumeDigest, key: Buffer): Promise<boolean> {
  const got = await pbkdf2Async(key, d.salt, d.iterations, d.digest.length, d.hash);
  return timingSafeEqual(got, d.digest);
}

/** Try one keyslot; the volume key, or null when the passphrase does not open it. */
export async function tryKeyslot(header: LuksHeader, slot: Keyslot, passphrase: Buffer, read: ReadAt, budget?: KdfBudget): Promise<Buffer | null> {
  budget?.chargeKeyslot(slot.id, slot.kdf);
  const materialLen = Math.ceil((slot.keySize * slot.stripes) / SECTOR) * SECTOR;
  const material = await read(slot.areaOffset, materialLen);
  await cryptKeyslotArea(false, slot.kdf, passphrase, slot.areaKeySize, material);
  const candidate = await afMerge(material, slot.keySize, slot.stripes, slot.afHash);
  material.fill(0);
  for (const [i, d] of header.digests.entries()) {
    if (!d.keyslots.includes(slot.id) || candidate.length !== header.keySize) continue;
    try {
      budget?.chargeDigest(d, i);
    } catch (err) {
      candidate.fill(0);
      throw err;
    }
    if (await digestMatches(d, candidate)) return candidate;
  }
  candidate.fill(0);
  return null;
}

/** The keyslots tried automatically, in cryptsetup's order: priority 2 first, then 1; priority 0 never. */
export function unlockOrder(header: LuksHeader): Keyslot[] {
  const byId = (a: Keyslot, b: Keyslot) => Number(a.id) - Number(b.id);
  return [...header.keyslots.filter((k) => k.priority === 2).sort(byId), ...header.keyslots.filter((k) => k.priority === 1).sort(byId)];
}

export interface Unlocked {
  volumeKey: Buffer;
  keyslot: string;
}

/**
 * Find the keyslot the passphrase opens, or throw EKEYREJECTED ("no keyslot
 * matches") naming `where`; ENOTSUP naming the keyslot when the attempt's
 * KDF budget (`limits`) runs out first.
 */
export async function unlockVolumeKey(header: LuksHeader, passphrase: Buffer, read: ReadAt, where: string, limits: LuksLimits = DEFAULT_LIMITS): Promise<Unlocked> {
  const budget = new KdfBudget(limits, where);
  for (const slot of unlockOrder(header)) {
    const key = await tryKeyslot(header, slot, passphrase, read, budget);
    if (key) return { volumeKey: key, keyslot: slot.id };
  }
  const tokenNote = header.tokens.length
    ? ` (keyslots bound to tokens ${header.tokens.map((t) => `${t.id} (${JSON.stringify(t.type)})`).join(', ')} need those tools' passphrase)`
    : '';
  throw new LuksError('EKEYREJECTED', `${where}: no keyslot matches the key${tokenNote}`);
}
