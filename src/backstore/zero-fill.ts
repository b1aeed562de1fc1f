/**
 * Writing zeros with ordinary writes, for stores that cannot zero a range
 * natively (no writeZeroes, or the filesystem refused fallocate). Every
 * call shares ONE preallocated zero buffer and walks the range in bounded
 * chunks, so a WRITE SAME over a whole LUN allocates nothing big.
 */
import { isPromiseLike } from './maybe.js';
import { residentZeros } from './resident-zeros.js';
import type { CallOptions, MaybePromise, WriteOptions } from './types.js';

/** Chunk size of emulated zero writes: big enough to be efficient, small enough to keep I/O latency bounded. */
export const ZERO_CHUNK_SIZE = 1 << 20;

/**
 * Shared, read-only by convention: handlers receive it as write input and
 * must never modify their input buffers (a layer that transforms data, like
 * encryption, must transform into its own buffer, never in place).
 * Resident, so that a write of it cut short by a kill ends on a sector
 * boundary (resident-zeros.ts).
 */
const zeroChunk = residentZeros(ZERO_CHUNK_SIZE);
const fullChunkIov: readonly Buffer[] = [zeroChunk];
const plainWrite: WriteOptions = Object.freeze({ fua: false });

export type WriteFn = (offset: number, iov: readonly Buffer[], opts: WriteOptions) => MaybePromise<void>;

/**
 * Write zeros over [offset, offset + length) with `write`, one chunk at a
 * time. Stays synchronous while `write` does; after the first promise the
 * remaining chunks follow it in order (never in parallel, to bound memory
 * and keep the store's queue fair to other commands). With `opts.signal`,
 * each chunk's write gets it, and an abort between chunks stops the walk
 * (the caller reports TASK ABORTED; zeroing is idempotent).
 */
export function writeZeroesWithWrites(write: WriteFn, offset: number, length: number, opts?: CallOptions): MaybePromise<void> {
  const signal = opts?.signal;
  const writeOpts: WriteOptions = signal ? { fua: false, signal } : plainWrite;
  const end = offset + length;
  let position = offset;
  while (position < end) {
    signal?.throwIfAborted();
    const chunk = Math.min(ZERO_CHUNK_SIZE, end - position);
    const iov = chunk === ZERO_CHUNK_SIZE ? fullChunkIov : [zeroChunk.subarray(0, chunk)];
    const result = write(position, iov, writeOpts);
    position += chunk;
    if (isPromiseLike(result)) {
      const resumeAt = position;
      return result.then(() => writeZeroesWithWrites(write, resumeAt, end - resumeAt, opts));
    }
  }
  return undefined;
}
