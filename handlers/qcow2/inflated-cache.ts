/**
 * Recently inflated compressed clusters, so a guest that reads one
 * compressed cluster in several small requests (4 KiB sequential reads, a
 * filesystem's small files packed in one cluster, readahead that straddles
 * clusters) pays one inflate instead of one per request. QEMU keeps the
 * last inflated cluster for the same reason; this keeps a small LRU.
 *
 * Key: the payload's host byte offset. Payloads are packed append-only
 * (packing.ts), so the bytes at one offset belong to one payload until the
 * host cluster holding its first byte drops to refcount 0; that is the one
 * event that may give the offset new contents, and `forgetHostCluster` (the
 * image's refcount release hook) drops every entry starting there. Frees
 * already wait for the reads that started before them (read-grace.ts), so
 * an inflate in flight cannot outlive the free of its payload; it is still
 * dropped, not inserted, if a free came first. The payload's length is
 * compared too: a hostile image may point two entries at one offset with
 * different lengths, and each must inflate (or fail) as it would uncached.
 *
 * Concurrent reads of one payload share one inflate (a qd16 sequential 4 KiB
 * reader asks for the same cluster 16 times at once). Cached buffers are
 * shared: callers copy out of them and never write into them.
 */

interface Entry {
  readonly length: number;
  readonly data: Buffer;
}

interface Pending {
  readonly length: number;
  readonly done: Promise<Buffer>;
}

/** The default budget per image, in bytes of inflated clusters. */
export const DEFAULT_INFLATED_CACHE_BYTES = 4 << 20;
/** At most this many entries whatever the cluster size: a free scans them all (small clusters inflate cheaply anyway). */
const MAX_ENTRIES = 1024;

export class InflatedClusterCache {
  private readonly entries = new Map<number, Entry>();
  private readonly pending = new Map<number, Pending>();
  private readonly capacity: number;
  /** Reads answered without an inflate of their own (a cached cluster, or one being inflated). */
  hits = 0;
  /** Inflates run. */
  misses = 0;

  /** `budgetBytes` of inflated clusters of `clusterSize` bytes; 0 turns caching off (concurrent reads still share). */
  constructor(
    budgetBytes: number,
    private readonly clusterSize: number,
  ) {
    this.capacity = Math.min(MAX_ENTRIES, Math.floor(budgetBytes / clusterSize));
  }

  /**
   * The inflated cluster of the payload at `host` (`length` bytes on disk):
   * from the cache, from an inflate already running, or from `inflate()`.
   * With `keep` false a miss is inflated on its own, neither inserted nor
   * joined to a guest read's inflate: reads of a whole cluster (streaming,
   * not coming back), and compaction and partial writes (they replace the
   * cluster next, and must never wait on a guest read).
   */
  async get(host: number, length: number, inflate: () => Promise<Buffer>, keep = true): Promise<Buffer> {
    const hit = this.entries.get(host);
    if (hit && hit.length === length) {
      this.hits++;
      this.entries.delete(host); // re-insert: Map order is the LRU order
      this.entries.set(host, hit);
      return hit.data;
    }
    const running = keep ? this.pending.get(host) : undefined;
    if (running && running.length === length) {
      this.hits++;
      return running.done;
    }
    this.misses++;
    if (!keep) return inflate();
    const mine: Pending = { length, done: inflate() };
    this.pending.set(host, mine);
    try {
      const data = await mine.done;
      // Still ours: no free of this host cluster and no other length came in between.
      if (this.pending.get(host) === mine) this.insert(host, length, data);
      return data;
    } finally {
      if (this.pending.get(host) === mine) this.pending.delete(host);
    }
  }

  /** The host cluster at byte offset `hostOffset` was freed: payloads starting in it may change. */
  forgetHostCluster(hostOffset: number): void {
    const first = hostOffset - (hostOffset % this.clusterSize);
    const end = first + this.clusterSize;
    for (const map of [this.entries, this.pending] as Map<number, unknown>[]) {
      if (map.size === 0) continue;
      for (const host of map.keys()) if (host >= first && host < end) map.delete(host);
    }
  }

  /** Entries held now. */
  get size(): number {
    return this.entries.size;
  }

  private insert(host: number, length: number, data: Buffer): void {
    if (this.capacity === 0) return;
    this.entries.delete(host);
    this.entries.set(host, { length, data: ownedCopy(data) });
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }
}

/**
 * A buffer that holds only its own bytes: an inflate result may be a slice
 * of a larger allocation (the worker pool's batch buffer, Node's 8 KiB pool
 * for small clusters), which the cache would otherwise keep alive whole.
 */
function ownedCopy(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return copy;
}
