/**
 * Staged partial writes on a LUN served with `compress=` (option
 * `partial_writes=stage|recompress`).
 *
 * A guest write that covers part of a compressed (or not yet allocated)
 * cluster needs the whole cluster's contents. "recompress" inflates the old
 * payload, overlays the guest data and deflates the whole cluster again, on
 * every such write: a 4 KiB writer filling a 64 KiB cluster pays 16 inflates
 * and 16 deflates. "stage" stores the merged cluster UNCOMPRESSED (one
 * inflate, no deflate; none at all over an unallocated cluster); later
 * partial writes to it go in place like any owned normal cluster. The
 * cluster is remembered here, and compaction (the automatic one on a quiet
 * LUN, or `tcmu-ts image compact LUN`) deflates it once, through the same
 * claimed, crash-safe path that moves compressed payloads
 * (compressed-write.ts recompressClusters). So every cluster is compressed
 * once per burst of small writes instead of once per write.
 *
 * What it costs, and what bounds it:
 * - space: a staged cluster occupies a whole host cluster until compaction
 *   runs; at most STAGE_LIMIT_BYTES of clusters are staged per image (past
 *   that, partial writes recompress as before); the automatic compaction
 *   (auto-compact.ts) compresses them after a quiet period, or on a busy
 *   LUN once they add up to four times its trigger;
 * - durability: unchanged. A staged cluster is an ordinary normal cluster, written
 *   by the allocating path with its ordering (write-path.ts); `qemu-img`
 *   reads it like any other;
 * - memory: the set of staged guest clusters (bounded by the limit). It is
 *   not on disk: after an unclean stop, clusters staged then stay
 *   uncompressed until rewritten or `tcmu-ts image compact PATH --recompress`.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { noteStagedCluster } from './auto-compact.js';
import type { Qcow2Image } from './image.js';

export type PartialWritePolicy = 'stage' | 'recompress';

/** Most bytes of staged (uncompressed) clusters per image before partial writes recompress again. */
export const STAGE_LIMIT_BYTES = 64 << 20;

const staged = new WeakMap<Qcow2Image, Set<number>>();

/** Parse the option (undefined: the default that goes with automatic compaction on or off). */
export function parsePartialWrites(value: string | undefined, autoCompaction: boolean): PartialWritePolicy {
  if (value === undefined) return autoCompaction ? 'stage' : 'recompress';
  if (value === 'stage' || value === 'recompress') return value;
  throw new StorageError('EINVAL', `qcow2: partial_writes=${value}: expected stage or recompress`);
}

/** Turn staging on for an image served with compress=. */
export function enableStaging(img: Qcow2Image): void {
  if (!staged.has(img)) staged.set(img, new Set());
}

/** True if a partial write may store its cluster uncompressed now. */
export function mayStage(img: Qcow2Image): boolean {
  const set = staged.get(img);
  return set !== undefined && set.size * img.clusterSize < STAGE_LIMIT_BYTES;
}

/** Guest cluster `gc` now maps to a staged (uncompressed) cluster. */
export function noteStaged(img: Qcow2Image, gc: number): void {
  const set = staged.get(img);
  if (!set || set.has(gc)) return;
  set.add(gc);
  noteStagedCluster(img);
}

/** Guest cluster `gc` got a new place (compressed, dropped, recompressed): no longer staged. */
export function forgetStaged(img: Qcow2Image, gc: number): void {
  staged.get(img)?.delete(gc);
}

/** The staged guest clusters, ascending (compaction recompresses them). */
export function stagedClusters(img: Qcow2Image): number[] {
  return [...(staged.get(img) ?? [])].sort((a, b) => a - b);
}

/** How many clusters are staged (for `status --space`), undefined if staging is off. */
export function stagedCount(img: Qcow2Image): number | undefined {
  return staged.get(img)?.size;
}
