/**
 * A FIFO async mutex. Metadata changes (allocation, L2/L1 updates, flush of
 * the caches) run under it so the "refcount before reference" order can not
 * be interleaved by another command; plain reads and in-place writes never
 * take it.
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
