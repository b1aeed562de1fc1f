/**
 * A FIFO async mutex. Metadata changes (allocation, L2/L1 updates, flush of
 * the caches) run under it so the "refcount before reference" order can not
 * be interleaved by another command; plain reads and in-place writes never
 * take it.
 *
 * Why not `maxInFlight: 1` (the core's queue, src/backstore/serialize.ts):
 * that would serialise every call of the image, reads and in-place writes
 * of allocated clusters included, which are most of the I/O and touch no
 * metadata. This lock covers only the metadata state, and it is also taken
 * outside the LUN's calls (the group-commit write-back, offline check and
 * snapshot operations), which no per-call queue can see.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = next;
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
