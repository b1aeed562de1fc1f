/**
 * A tiny per-LUN lock over LBA ranges, so COMPARE AND WRITE is atomic with
 * respect to other commands touching the same blocks (SBC-4 5.2: no other
 * command may change the blocks between the compare and the write).
 *
 * Only COMPARE AND WRITE takes the lock; plain writes merely wait for a
 * held range they overlap. `held` lets the WRITE fast path skip all of this
 * with one integer compare when no COMPARE AND WRITE is running (the usual
 * case). A write already in flight when the lock is taken is not waited
 * for; initiators that use COMPARE AND WRITE (VMFS ATS, cluster locks) do
 * not race plain writes against the same lock block.
 */
interface HeldRange {
  start: number;
  end: number;
  released: Promise<void>;
  release: () => void;
}

export class LbaRangeLock {
  /** Number of ranges currently held. */
  held = 0;
  private readonly ranges: HeldRange[] = [];

  /** A promise that settles when a held range overlapping [start, start+count) is released, or undefined. */
  overlapping(start: number, count: number): Promise<void> | undefined {
    const end = start + Math.max(count, 1);
    for (const r of this.ranges) {
      if (r.start < end && start < r.end) return r.released;
    }
    return undefined;
  }

  /** Wait until the range is free, take it, and return the function that frees it. */
  async acquire(start: number, count: number): Promise<() => void> {
    for (let busy = this.overlapping(start, count); busy; busy = this.overlapping(start, count)) {
      await busy;
    }
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const range: HeldRange = { start, end: start + Math.max(count, 1), released, release };
    this.ranges.push(range);
    this.held++;
    return () => {
      const i = this.ranges.indexOf(range);
      if (i >= 0) {
        this.ranges.splice(i, 1);
        this.held--;
        range.release();
      }
    };
  }
}
