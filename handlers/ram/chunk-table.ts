/**
 * Sparse storage for the RAM disk: fixed-size chunks allocated on first
 * write, found through a two-level table. Two levels because a flat array
 * for a 1 PiB LUN would need 2^30 slots up front, while a directory of
 * 1 GiB pages needs 2^20 and only the touched pages hold chunk arrays.
 */

/** Allocation unit: big enough to keep the table small, small enough that a sparse write wastes little. */
export const CHUNK_SIZE = 1 << 20;
const CHUNKS_PER_PAGE = 1024;

type Page = Array<Buffer | undefined>;

export class ChunkTable {
  private readonly pages: Array<Page | undefined> = [];

  /** The chunk at `index`, or undefined if never written (reads as zeros). */
  get(index: number): Buffer | undefined {
    const page = this.pages[Math.floor(index / CHUNKS_PER_PAGE)];
    return page === undefined ? undefined : page[index % CHUNKS_PER_PAGE];
  }

  /** The chunk at `index`, allocating a zeroed one on first use. */
  getOrCreate(index: number): Buffer {
    const pageIndex = Math.floor(index / CHUNKS_PER_PAGE);
    let page = this.pages[pageIndex];
    if (page === undefined) {
      page = new Array<Buffer | undefined>(CHUNKS_PER_PAGE);
      this.pages[pageIndex] = page;
    }
    const slot = index % CHUNKS_PER_PAGE;
    let chunk = page[slot];
    if (chunk === undefined) {
      // Buffer.alloc zero-fills via calloc: large blocks come as untouched
      // zero pages, so memory is only committed where data is written.
      chunk = Buffer.alloc(CHUNK_SIZE);
      page[slot] = chunk;
    }
    return chunk;
  }

  /** Release the chunk at `index` (it reads as zeros again). */
  delete(index: number): void {
    const page = this.pages[Math.floor(index / CHUNKS_PER_PAGE)];
    if (page !== undefined) page[index % CHUNKS_PER_PAGE] = undefined;
  }

  /**
   * The first index >= `index` that may hold a chunk: skips whole pages that
   * were never touched, so walking a huge empty range is cheap.
   */
  nextCandidate(index: number): number {
    let pageIndex = Math.floor(index / CHUNKS_PER_PAGE);
    if (this.pages[pageIndex] !== undefined) return index;
    while (pageIndex < this.pages.length && this.pages[pageIndex] === undefined) pageIndex++;
    return pageIndex >= this.pages.length ? Infinity : pageIndex * CHUNKS_PER_PAGE;
  }

  /** Number of allocated chunks (for tests and stats; walks the table). */
  count(): number {
    let total = 0;
    for (const page of this.pages) {
      if (page) for (const chunk of page) if (chunk) total++;
    }
    return total;
  }
}
