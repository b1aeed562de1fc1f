/**
 * Upper bounds on what a header may ask of us. A hostile image must not make
 * the daemon allocate gigabytes or spin a KDF for hours.
 *
 * Two kinds of bound:
 *  - per keyslot, checked while parsing (memory, passes, threads,
 *    iterations of any one KDF);
 *  - per unlock attempt, across every keyslot tried and every digest check
 *    (kdf-budget.ts): a header with 32 keyslots each just under the
 *    per-keyslot bounds would otherwise cost 32 times as much.
 *
 * The defaults cover what cryptsetup 2.6 creates with its default
 * parameters on any machine: argon2 memory at most 1 GiB (its default
 * maximum; --pbkdf-memory can ask up to 4 GiB, which needs a higher
 * maxArgon2MemoryKiB), passes and PBKDF2 counts benchmarked for ~2 s each.
 * On this project's 2-core test machine cryptsetup 2.6.1 chose argon2id
 * time 4 / 137825 KiB / 2 threads (LUKS2) and 1576806 PBKDF2-sha256
 * iterations + 92827 for the digest (LUKS1). The fuzz target passes
 * tighter limits.
 */
export interface LuksLimits {
  /** argon2 memory of one keyslot, KiB. */
  maxArgon2MemoryKiB: number;
  /** argon2 passes of one keyslot. */
  maxArgon2Time: number;
  maxArgon2Cpus: number;
  /** PBKDF2 iterations of one keyslot or digest. */
  maxPbkdf2Iterations: number;
  /** One unlock attempt: PBKDF2 iterations summed over keyslots tried and digest checks. */
  maxUnlockPbkdf2Iterations: number;
  /** One unlock attempt: argon2 work summed over keyslots tried, in KiB x passes (memoryKiB * time). */
  maxUnlockArgon2Work: number;
}

const GiB_IN_KiB = 1024 * 1024;

export const DEFAULT_LIMITS: LuksLimits = {
  maxArgon2MemoryKiB: GiB_IN_KiB,
  maxArgon2Time: 1000,
  maxArgon2Cpus: 16,
  maxPbkdf2Iterations: 100_000_000,
  // ~30 s of PBKDF2-sha256 on one core of the test machine (1.64 M/s)
  maxUnlockPbkdf2Iterations: 50_000_000,
  // 32 passes over 1 GiB: several default cryptsetup keyslots, ~2 min at worst on the test machine
  maxUnlockArgon2Work: 32 * GiB_IN_KiB,
};

/** The hard ceiling on argon2 memory an admin may allow (cryptsetup's own maximum, 4 GiB). */
export const ARGON2_MEMORY_CEILING_KiB = 4 * GiB_IN_KiB;

/** LUKS1 and LUKS2 data and keyslot areas are counted in 512-byte units. */
export const SECTOR = 512;
/** At most this many AF stripes (cryptsetup always writes 4000). */
export const MAX_STRIPES = 4000;
