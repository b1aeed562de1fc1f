/**
 * Which key unlocks which image of an encrypted qcow2 chain, from the
 * handler options:
 *
 *   key=NAME           the image the LUN serves (depth 0), and by default
 *                      every encrypted backing file below it too (QEMU
 *                      users mostly give a chain one secret);
 *   backing_key=A:B:C  keys for the backing files instead: the image's
 *                      direct backing file (depth 1) uses A, depth 2 uses
 *                      B, depth 3 and deeper use C (the last one repeats).
 *
 *   kdf_max_iterations=N  the PBKDF2 iterations one unlock of one image may
 *                      spend over its keyslots and digest (default
 *                      src/crypto/luks/limits.ts: 50,000,000); raise it for
 *                      trusted images made with a long --iter-time.
 *
 * Unencrypted members of the chain need no key and ignore theirs. Names
 * are looked up like the crypt layer's (key directory file, or a memory key
 * from `tcmu-ts key add`); a missing option or key file refuses the LUN
 * with a message naming the image and the option, never the key bytes.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { KeyRing, type KeySource } from '../../src/config/keyring.js';
import { DEFAULT_LIMITS, type LuksLimits } from '../../src/crypto/luks/limits.js';
import type { ImageKeys } from './encryption.js';

export interface KeyOptions {
  key?: string;
  backing_key?: string;
  kdf_max_iterations?: string;
}

/** The KDF limits an admin may set per LUN (kdf_max_iterations=N), else the defaults. */
export function kdfLimits(options: KeyOptions): LuksLimits | undefined {
  const v = options.kdf_max_iterations;
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]{0,9}$/.test(v)) throw new ConfigError(`qcow2: option kdf_max_iterations="${v.slice(0, 40)}" must be a positive integer`);
  return { ...DEFAULT_LIMITS, maxUnlockPbkdf2Iterations: Number(v), maxPbkdf2Iterations: Math.max(DEFAULT_LIMITS.maxPbkdf2Iterations, Number(v)) };
}

/** The key names of a chain, or undefined when no key option is given. */
export function keyNames(options: KeyOptions): { top?: string; backing?: string[] } {
  const top = options.key === '' ? undefined : options.key;
  const backing = options.backing_key === undefined || options.backing_key === '' ? undefined : options.backing_key.split(':');
  if (backing?.some((n) => n === '')) throw new ConfigError(`qcow2: option backing_key="${options.backing_key!.slice(0, 80)}" has an empty key name`);
  return { top, backing };
}

/** The key name for depth `depth`, or undefined. */
export function keyNameFor(names: { top?: string; backing?: string[] }, depth: number): string | undefined {
  if (depth === 0) return names.top;
  if (names.backing) return names.backing[Math.min(depth - 1, names.backing.length - 1)];
  return names.top;
}

export function imageKeys(options: KeyOptions, source: KeySource | undefined, where: string, limits = kdfLimits(options)): ImageKeys {
  const names = keyNames(options);
  return {
    where,
    limits,
    passphrase(depth: number, path: string): Buffer {
      const name = keyNameFor(names, depth);
      if (name === undefined) {
        const option = depth === 0 ? 'key=NAME' : 'backing_key=NAME (or key=NAME for the whole chain)';
        throw new ConfigError(`qcow2: ${path}: ${where}: the image is encrypted (LUKS); option ${option} is required`);
      }
      try {
        return (source ?? new KeyRing()).get(name);
      } catch (err) {
        throw new ConfigError(`qcow2: ${path}: ${where}: key "${name}": ${(err as Error).message}`);
      }
    },
  };
}
