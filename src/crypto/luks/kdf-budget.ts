/**
 * The KDF work one unlock attempt may spend, summed over every keyslot it
 * tries and every digest check (LuksLimits.maxUnlock*). Each KDF is charged
 * BEFORE it runs, so a header asking for too much is refused without doing
 * the work: the error names the keyslot (or digest), what it asks and the
 * limit, and says how to raise it.
 */
import { LuksError } from './errors.js';
import type { LuksLimits } from './limits.js';
import type { Kdf, VolumeDigest } from './model.js';

export class KdfBudget {
  private pbkdf2Left: number;
  private argon2Left: number;

  constructor(
    private readonly limits: LuksLimits,
    private readonly where: string,
  ) {
    this.pbkdf2Left = limits.maxUnlockPbkdf2Iterations;
    this.argon2Left = limits.maxUnlockArgon2Work;
  }

  private refuse(what: string, asks: string, limit: string): never {
    throw new LuksError(
      'ENOTSUP',
      `${this.where}: ${what} needs ${asks}, which exceeds what one unlock may spend (${limit}); refusing before running it (raise the KDF limits only for images you trust)`,
    );
  }

  /** Charge a keyslot's KDF; throws if the attempt's budget cannot cover it. */
  chargeKeyslot(id: string, kdf: Kdf): void {
    if (kdf.type === 'pbkdf2') {
      this.chargePbkdf2(`keyslot ${id}`, kdf.iterations);
      return;
    }
    if (kdf.memoryKiB > this.limits.maxArgon2MemoryKiB) {
      this.refuse(`keyslot ${id}`, `${kdf.memoryKiB} KiB of ${kdf.type} memory`, `limit ${this.limits.maxArgon2MemoryKiB} KiB per keyslot`);
    }
    const work = kdf.memoryKiB * kdf.time;
    if (work > this.argon2Left) {
      this.refuse(
        `keyslot ${id}`,
        `${kdf.type} work ${kdf.time} x ${kdf.memoryKiB} KiB`,
        `${this.argon2Left} of ${this.limits.maxUnlockArgon2Work} KiB-passes left of the argon2 budget per unlock`,
      );
    }
    this.argon2Left -= work;
  }

  /** Charge a volume-key digest check. */
  chargeDigest(d: VolumeDigest, index: number): void {
    this.chargePbkdf2(`the volume key digest ${index}`, d.iterations);
  }

  private chargePbkdf2(what: string, iterations: number): void {
    if (iterations > this.pbkdf2Left) {
      this.refuse(
        what,
        `${iterations} PBKDF2 iterations`,
        `${this.pbkdf2Left} of ${this.limits.maxUnlockPbkdf2Iterations} iterations left of the PBKDF2 budget per unlock`,
      );
    }
    this.pbkdf2Left -= iterations;
  }
}
