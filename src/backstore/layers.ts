/**
 * The Backstore a multi-layer stack presents: the top layer's own methods
 * (bound once, so stacking adds no per-command wrapper) plus a close() that
 * closes every layer, top first. Layers never close their `lower` — the
 * stack owns them all, so a failed open or an orderly stop releases each
 * exactly once.
 */
import type { Backstore } from './types.js';

type OptionalMethod = 'write' | 'flush' | 'discard' | 'writeZeroes' | 'blockStatus' | 'resize';
const OPTIONAL_METHODS: readonly OptionalMethod[] = ['write', 'flush', 'discard', 'writeZeroes', 'blockStatus', 'resize'];

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
  return composed as unknown as Backstore;
}
