/**
 * The simulated kernel's data-area allocator: fixed-size blocks handed out
 * scattered (seeded random order) or LIFO, turned into iovecs the way
 * target_core_user does (consecutive blocks merged into one iovec).
 */

export interface SimIov {
  /** Offset from the start of the map. */
  offset: number;
  length: number;
}

export class DataBlocks {
  private readonly free: number[] = [];
  private rng: number;

  constructor(
    readonly dataOffset: number,
    readonly blockSize: number,
    blockCount: number,
    private readonly scatter: boolean,
    seed: number,
  ) {
    // Descending, so LIFO pops hand out ascending (contiguous) blocks.
    for (let b = blockCount - 1; b >= 0; b--) this.free.push(b);
    this.rng = seed >>> 0 || 1;
  }

  get freeBlocks(): number {
    return this.free.length;
  }

  blocksFor(length: number): number {
    return Math.ceil(length / this.blockSize);
  }

  /**
   * Allocate blocks for `pieces` (byte lengths) and build iovecs: each piece
   * gets its own blocks and never shares an iovec with another piece.
   * Returns null if not enough blocks are free (the caller waits).
   */
  allocate(pieces: readonly number[]): { blocks: number[]; iovs: SimIov[] } | null {
    let needed = 0;
    for (const piece of pieces) needed += this.blocksFor(piece);
    if (needed > this.free.length) return null;
    const blocks: number[] = [];
    const iovs: SimIov[] = [];
    for (const piece of pieces) {
      let remaining = piece;
      let previous = -2;
      while (remaining > 0) {
        const block = this.take();
        blocks.push(block);
        const length = Math.min(remaining, this.blockSize);
        const offset = this.dataOffset + block * this.blockSize;
        const last = iovs[iovs.length - 1];
        if (block === previous + 1 && last !== undefined) last.length += length;
        else iovs.push({ offset, length });
        previous = block;
        remaining -= length;
      }
    }
    return { blocks, iovs };
  }

  release(blocks: readonly number[]): void {
    for (const block of blocks) this.free.push(block);
  }

  private take(): number {
    if (!this.scatter) return this.free.pop()!;
    const i = this.next() % this.free.length;
    const block = this.free[i]!;
    this.free[i] = this.free[this.free.length - 1]!;
    this.free.pop();
    return block;
  }

  /** xorshift32: deterministic scatter for reproducible tests. */
  private next(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }
}
