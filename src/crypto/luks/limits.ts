/**
 * Upper bounds on what a header may ask of us. A hostile image must not make
 * the daemon allocate gigabytes or spin a KDF for hours; the defaults cover
 * everything cryptsetup 2.6 creates (its argon2 maximum is 4 GiB, its
 * benchmarked PBKDF2 counts stay in the low millions). The fuzz target
 * passes tighter limits.
 */
export interface LuksLimits {
  maxArgon2MemoryKiB: number;
  maxArgon2Time: number;
  maxArgon2Cpus: number;
  maxPbkdf2Iterations: number;
}

export const DEFAULT_LIMITS: LuksLimits = {
  maxArgon2MemoryKiB: 4 * 1024 * 1024,
  maxArgon2Time: 1000,
  maxArgon2Cpus: 16,
  maxPbkdf2Iterations: 100_000_000,
};

/** LUKS1 and LUKS2 data and keyslot areas are counted in 512-byte units. */
export const SECTOR = 512;
/** At most this many AF stripes (cryptsetup always writes 4000). */
export const MAX_STRIPES = 4000;
