/**
 * The shape of a Backstore, said once: which methods are optional and which
 * flags exist (composeLayers binds the same list), and the check of what a
 * handler's open() returned before the core trusts it. The core validates
 * every command against `size` and `blockSize` once, so a wrong value here
 * would let commands through that the handler cannot serve.
 */
import type { Backstore } from './types.js';

/** Every optional method of Backstore; the type below fails to compile if one is missing. */
export const OPTIONAL_METHODS = ['write', 'flush', 'compareAndWrite', 'discard', 'writeZeroes', 'blockStatus', 'resize', 'exclusiveLockHolder'] as const;
export type OptionalMethod = (typeof OPTIONAL_METHODS)[number];

/** Every optional boolean flag of Backstore. */
export const BACKSTORE_FLAGS = ['readOnly', 'writeCache', 'fua', 'thin', 'discardZeroes'] as const;

// Compile-time completeness: an optional method added to Backstore but not
// to OPTIONAL_METHODS would be silently dropped by composeLayers.
type OptionalFunctionKeys = {
  [K in keyof Backstore]-?: undefined extends Backstore[K] ? (NonNullable<Backstore[K]> extends (...args: never[]) => unknown ? K : never) : never;
}[keyof Backstore];
type Missing = Exclude<OptionalFunctionKeys, OptionalMethod>;
const everyOptionalMethodListed: [Missing] extends [never] ? true : Missing = true;
void everyOptionalMethodListed;

export function validateBackstore(store: unknown, handlerName: string): Backstore {
  const bad = (what: string): never => {
    throw new TypeError(`handler "${handlerName}" returned an invalid backstore: ${what}`);
  };
  if (store === null || typeof store !== 'object') return bad(`expected an object, got ${store === null ? 'null' : typeof store}`);
  const candidate = store as Record<string, unknown>;
  const { size, blockSize } = candidate;
  if (typeof blockSize !== 'number' || !Number.isInteger(blockSize) || blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
    bad(`blockSize ${String(blockSize)} is not a power of two >= 512`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) bad(`size ${String(size)} is not a non-negative integer`);
  if ((size as number) % (blockSize as number) !== 0) bad(`size ${String(size)} is not a multiple of blockSize ${String(blockSize)}`);
  for (const method of ['read', 'close']) {
    if (typeof candidate[method] !== 'function') bad(`"${method}" is required and must be a function`);
  }
  for (const method of OPTIONAL_METHODS) {
    const value = candidate[method];
    if (value !== undefined && typeof value !== 'function') bad(`"${method}" must be a function or absent, got ${typeof value}`);
  }
  for (const flag of BACKSTORE_FLAGS) {
    const value = candidate[flag];
    if (value !== undefined && typeof value !== 'boolean') bad(`"${flag}" must be a boolean or absent, got ${typeof value}`);
  }
  // The concurrency and abort declarations (see "Concurrency" in ./types.ts),
  // checked here so a wrong one names its handler before serialize.ts sees it.
  const { abortable, maxInFlight, compareAndWriteLimit } = candidate;
  if (
    compareAndWriteLimit !== undefined &&
    !(typeof compareAndWriteLimit === 'number' && Number.isSafeInteger(compareAndWriteLimit) && compareAndWriteLimit >= (blockSize as number) && compareAndWriteLimit % (blockSize as number) === 0)
  ) {
    bad(`"compareAndWriteLimit" must be a multiple of blockSize (at least one block) or absent, got ${String(compareAndWriteLimit)}`);
  }
  if (abortable !== undefined && typeof abortable !== 'boolean') bad(`"abortable" must be a boolean or absent, got ${typeof abortable}`);
  if (maxInFlight !== undefined && !(typeof maxInFlight === 'number' && Number.isSafeInteger(maxInFlight) && maxInFlight >= 1)) {
    bad(`"maxInFlight" must be a positive integer or absent, got ${String(maxInFlight)}`);
  }
  const { discardGranularity: g } = candidate;
  if (g !== undefined && !(typeof g === 'number' && Number.isInteger(g) && g >= 4096 && g <= 1 << 30 && (g & (g - 1)) === 0)) {
    bad(`"discardGranularity" must be a power of two from 4096 to 1 GiB or absent, got ${String(g)}`);
  }
  return store as Backstore;
}
