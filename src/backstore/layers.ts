/**
 * The Backstore a multi-layer stack presents: the top layer's own methods
 * (bound once, so stacking adds no per-command wrapper) plus a close() that
 * closes every layer, top first. Layers never close their `lower` — the
 * stack owns them all, so a failed open or an orderly stop releases each
 * exactly once.
 */
import { ConfigError } from './config-error.js';
import { layerName } from './dev-config.js';
import { StorageError } from './errors.js';
import type { Backstore } from './types.js';
import { OPTIONAL_METHODS, type OptionalMethod } from './validate-backstore.js';

function bindIfPresent<K extends OptionalMethod>(store: Backstore, key: K): Backstore[K] {
  const method = store[key];
  return typeof method === 'function' ? ((method as (...args: unknown[]) => unknown).bind(store) as Backstore[K]) : undefined;
}

/** `bottomUp[0]` is the bottom layer, the last entry the top. */
export function composeLayers(bottomUp: readonly Backstore[]): Backstore {
  const top = bottomUp[bottomUp.length - 1]!;
  const composed: Record<string, unknown> = {
    // Read through: a resize changes the top layer's size.
    get size() {
      return top.size;
    },
    blockSize: top.blockSize,
    readOnly: top.readOnly,
    writeCache: top.writeCache,
    fua: top.fua,
    thin: top.thin,
    discardZeroes: top.discardZeroes,
    compareAndWriteLimit: top.compareAndWriteLimit,
    read: top.read.bind(top),
    async close() {
      let firstError: unknown;
      for (const store of [...bottomUp].reverse()) {
        try {
          await store.close();
        } catch (err) {
          firstError ??= err;
        }
      }
      if (firstError !== undefined) throw firstError;
    },
  };
  for (const key of OPTIONAL_METHODS) composed[key] = bindIfPresent(top, key);
  // A property of the medium, not of the data path: the layer that talks to
  // the shared medium (the bottom, usually) answers it.
  const lockOwnerLayer = [...bottomUp].reverse().find((store) => typeof store.exclusiveLockHolder === 'function');
  composed.exclusiveLockHolder = lockOwnerLayer ? bindIfPresent(lockOwnerLayer, 'exclusiveLockHolder') : undefined;
  return composed as unknown as Backstore;
}

/**
 * An error from resolving or opening layer `bottomUpIndex` of a stack of
 * `count`, re-made to name the layer the way the dev_config counts it (from
 * the top: `layer 2 of 2 (bottom), handler "file": ...`). Class and code are
 * kept (the daemon answers the kernel with the errno of `code`); a single
 * handler's errors are returned as they are.
 */
export function errorInLayer(err: unknown, bottomUpIndex: number, count: number, handler: string): unknown {
  if (count === 1 || !(err instanceof Error)) return err;
  const message = `${layerName(count - 1 - bottomUpIndex, count, handler)}: ${err.message}`;
  if (err instanceof ConfigError) return new ConfigError(message, { cause: err });
  if (err instanceof StorageError) return new StorageError(err.code, message, { cause: err });
  const code = (err as NodeJS.ErrnoException).code;
  return Object.assign(new Error(message, { cause: err }), code === undefined ? {} : { code });
}
