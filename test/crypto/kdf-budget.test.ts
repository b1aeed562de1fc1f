/**
 * The KDF budget per unlock attempt (src/crypto/luks/kdf-budget.ts): a
 * header whose keyslots together ask for more PBKDF2 iterations or argon2
 * work than one unlock may spend is refused before the KDF that would
 * overrun runs, naming the keyslot and the limit; headers that cryptsetup
 * 2.6 makes with its DEFAULT parameters on this machine still unlock with
 * the default limits.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatLuks } from '../../src/crypto/luks/format.js';
import { DEFAULT_LIMITS, type LuksLimits } from '../../src/crypto/luks/limits.js';
import { readLuksHeader } from '../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../src/crypto/luks/unlock.js';
import { fileReader, fileWriter, haveTool, luksFormat, run, workDir } from '../handlers/crypt/tools.js';

const w = workDir();
afterAll(() => run('rm', ['-rf', w.dir]));
const KEY = Buffer.from('budget key');
const MiB = 1 << 20;

const limits = (over: Partial<LuksLimits>): LuksLimits => ({ ...DEFAULT_LIMITS, ...over });

/** A LUKS1 container with keyslot 0 from formatLuks and keyslots 1..extra as active copies with other salts (they never match). */
async function luks1WithSlots(name: string, iterations: number, extra: number): Promise<string> {
  const img = join(w.dir, name);
  const f = fileWriter(img, 4 * MiB);
  await formatLuks(f.write, 4 * MiB, { version: 1, passphrase: KEY, kdf: { type: 'pbkdf2', iterations }, digestIterations: 1000 });
  const r = fileReader(img);
  const hdr = await r.read(0, 592);
  r.close();
  for (let i = 1; i <= extra; i++) {
    const at = 208 + i * 48;
    hdr.writeUInt32BE(0x00ac71f3, at);
    hdr.writeUInt32BE(iterations, at + 4);
    randomBytes(32).copy(hdr, at + 8);
  }
  await f.write(0, hdr);
  f.close();
  return img;
}

async function unlock(img: string, passphrase: Buffer, lim: LuksLimits) {
  const f = fileReader(img);
  try {
    const { header } = await readLuksHeader({ read: f.read, size: f.size, where: img, limits: lim });
    const r = await unlockVolumeKey(header, passphrase, f.read, 'LUN t', lim);
    r.volumeKey.fill(0);
    return r.keyslot;
  } finally {
    f.close();
  }
}

describe('KDF budget per unlock attempt', () => {
  it('PBKDF2: the keyslot that would overrun the total is named with the limit, before its KDF runs', async () => {
    const img = await luks1WithSlots('four-slots.img', 5000, 3);
    // the wrong key tries slots 0,1,2,3, each 5000 iterations plus a 1000-iteration digest check: 24000 > 20000
    await expect(unlock(img, Buffer.from('wrong'), limits({ maxUnlockPbkdf2Iterations: 20_000 }))).rejects.toThrow(
      /^LUN t: keyslot 3 needs 5000 PBKDF2 iterations, which exceeds what one unlock may spend \(2000 of 20000 iterations left of the PBKDF2 budget per unlock\)/,
    );
    // the same header within budget: a wrong key is "no keyslot matches", the right one opens slot 0
    await expect(unlock(img, Buffer.from('wrong'), limits({ maxUnlockPbkdf2Iterations: 24_000 }))).rejects.toThrow(/no keyslot matches/);
    expect(await unlock(img, KEY, limits({ maxUnlockPbkdf2Iterations: 6000 }))).toBe('0');
    // the digest check is charged too: 5000 for the keyslot + 1000 for the digest > 5500
    await expect(unlock(img, KEY, limits({ maxUnlockPbkdf2Iterations: 5500 }))).rejects.toThrow(/the volume key digest 0 needs 1000 PBKDF2 iterations/);
  });

  it('argon2: memory per keyslot and memory x passes per unlock are both capped', async () => {
    const img = join(w.dir, 'argon.img');
    const f = fileWriter(img, 20 * MiB);
    await formatLuks(f.write, 20 * MiB, { version: 2, passphrase: KEY, kdf: { type: 'argon2id', time: 3, memoryKiB: 16384, cpus: 1 }, digestIterations: 1000 });
    f.close();
    await expect(unlock(img, KEY, limits({ maxUnlockArgon2Work: 3 * 16384 - 1 }))).rejects.toThrow(
      /keyslot 0 needs argon2id work 3 x 16384 KiB, which exceeds what one unlock may spend \(49151 of 49151 KiB-passes left/,
    );
    expect(await unlock(img, KEY, limits({ maxUnlockArgon2Work: 3 * 16384 }))).toBe('0');
    // a header asking more memory than the cap is refused while parsing (never allocated)
    await expect(unlock(img, KEY, limits({ maxArgon2MemoryKiB: 8192 }))).rejects.toThrow(/16384 KiB.*limits .*8192 KiB/);
  });

  it('the defaults: at most 1 GiB argon2 memory per keyslot, budgets above one default cryptsetup keyslot', () => {
    expect(DEFAULT_LIMITS.maxArgon2MemoryKiB).toBe(1024 * 1024);
    expect(DEFAULT_LIMITS.maxUnlockArgon2Work).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    expect(DEFAULT_LIMITS.maxUnlockPbkdf2Iterations).toBeGreaterThan(DEFAULT_LIMITS.maxPbkdf2Iterations / 4);
  });
});

const hasCryptsetup = haveTool('cryptsetup');

describe.skipIf(!hasCryptsetup)('cryptsetup 2.6 default parameters still unlock under the default limits', () => {
  const keyFile = w.writeKey('default', KEY);
  it.each([
    ['LUKS2 (argon2id, benchmarked)', ['--type', 'luks2']],
    ['LUKS1 (pbkdf2-sha256, benchmarked)', ['--type', 'luks1']],
  ])('%s', async (name, flags) => {
    const img = join(w.dir, `${name.replace(/\W+/g, '-')}.img`);
    luksFormat(img, keyFile, flags);
    expect(await unlock(img, KEY, DEFAULT_LIMITS)).toBe('0');
  }, 180_000);
});
