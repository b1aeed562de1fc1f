/**
 * Cache of cluster-sized metadata tables (L2 tables, refcount blocks) with
 * dirty tracking. Ordering between caches is the owner's job, expressed as a
 * `beforeWrite` hook: the L2 cache's hook writes the refcount cache first, so
 * an L2 entry never reaches the file before the refcount that owns its
 * cluster (a crash can then only leak, never double-reference).
 *
 * Dirty tables are written only through `writeDirty`, which the image calls
 * under its metadata lock; eviction only drops clean tables, so a reader
 * loading a table can never reorder a write behind the lock holder's back.
 *
 * Each table tracks the byte range changed since it was last written, and
 * `writeDirty` writes only that range widened to 512-byte sectors: the image
 * writes metadata back before every allocating write or discard is
 * acknowledged (see Qcow2Image.persistMetadata), and a 64 KiB table per
 * 8-byte entry would make that cost proportional to the cluster size. One
 * span per table (not a list of runs): a pwrite costs a thread-pool round
 * trip, which is dearer than copying a few more KiB into the page cache.
 * Sectors are the unit because the range is then what a disk writes
 * atomically anyway; a span never splits an entry.
 */
import type { FileHandle } from 'node:fs/promises';
import { readFull, writeFull } from './file-io.js';

/** Write granularity of a dirty range (see above). */
const SECTOR = 512;

interface Slot {
  buf: Buffer;
  /** Changed bytes not yet written: [dirtyFrom, dirtyTo); empty (clean) when dirtyFrom >= dirtyTo. */
  dirtyFrom: number;
  dirtyTo: number;
}

const isDirty = (s: Slot) => s.dirtyFrom < s.dirtyTo;

export class MetadataCache {
  private readonly slots = new Map<number, Slot>();
  private readonly loading = new Map<number, Promise<Buffer>>();
  /** Offsets of the dirty slots, so a write-back does not scan the whole cache. */
  private readonly dirty = new Set<number>();
  /**
   * Counts changes (install / markDirty). The image sums these into a
   * generation number to tell whether the state a command relied on has been
   * written back yet (Qcow2Image.persistMetadata).
   */
  changes = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly tableSize: number,
    /** Soft limit on cached tables; may be exceeded while many are dirty. */
    private readonly capacity: number,
    private readonly beforeWrite: () => Promise<void> = async () => {},
    /** Throws if a table may not be written at `offset` (metadata-overlap check, see overlap.ts). */
    private readonly guard: (offset: number) => void = () => {},
  ) {}

  /** The table at `offset` if cached (no I/O), refreshing its LRU position. */
  peek(offset: number): Buffer | undefined {
    const slot = this.slots.get(offset);
    if (!slot) return undefined;
    this.slots.delete(offset);
    this.slots.set(offset, slot);
    return slot.buf;
  }

  async get(offset: number): Promise<Buffer> {
    const hit = this.peek(offset);
    if (hit) return hit;
    let pending = this.loading.get(offset);
    if (!pending) {
      pending = this.load(offset);
      this.loading.set(offset, pending);
    }
    return pending;
  }

  private async load(offset: number): Promise<Buffer> {
    try {
      const buf = Buffer.alloc(this.tableSize);
      await readFull(this.fh, buf, offset);
      // A table installed (e.g. freshly allocated) while we read wins.
      const raced = this.slots.get(offset);
      if (raced) return raced.buf;
      this.slots.set(offset, { buf, dirtyFrom: 0, dirtyTo: 0 });
      this.evictClean(offset);
      return buf;
    } finally {
      this.loading.delete(offset);
    }
  }

  /** Put a new table (fresh allocation or copy) into the cache, dirty. */
  install(offset: number, buf: Buffer): void {
    this.slots.set(offset, { buf, dirtyFrom: 0, dirtyTo: buf.length });
    this.dirty.add(offset);
    this.changes++;
  }

  /** Put a table that is already on disk into the cache, clean. */
  installClean(offset: number, buf: Buffer): void {
    this.slots.set(offset, { buf, dirtyFrom: 0, dirtyTo: 0 });
    this.dirty.delete(offset);
  }

  /** Bytes [from, to) of the table at `offset` changed (default: all of it). */
  markDirty(offset: number, from = 0, to = this.tableSize): void {
    const slot = this.slots.get(offset);
    if (!slot) throw new Error(`qcow2 cache: marking uncached table 0x${offset.toString(16)} dirty`);
    if (isDirty(slot)) {
      slot.dirtyFrom = Math.min(slot.dirtyFrom, from);
      slot.dirtyTo = Math.max(slot.dirtyTo, to);
    } else {
      slot.dirtyFrom = from;
      slot.dirtyTo = to;
      this.dirty.add(offset);
    }
    this.changes++;
  }

  /** Forget a table whose cluster was freed; its contents must never be written. */
  drop(offset: number): void {
    this.slots.delete(offset);
    this.dirty.delete(offset);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  get overCapacity(): boolean {
    return this.slots.size > this.capacity;
  }

  /**
   * Write the dirty span of every dirty table (after `beforeWrite`). The
   * tables are independent of each other (ordering is between caches, not
   * inside one), so their writes go out together. A table changed while its
   * write is in flight stays dirty: we write a snapshot, so a half-updated
   * 8-byte entry can never be torn on disk. A failed write leaves its span
   * dirty for the next attempt.
   */
  async writeDirty(): Promise<void> {
    if (this.dirty.size === 0) return;
    await this.beforeWrite();
    const offsets = [...this.dirty];
    // Every table is checked before any is written: a refused overlap writes nothing.
    for (const offset of offsets) this.guard(offset);
    this.dirty.clear();
    const results = await Promise.allSettled(
      offsets.map(async (offset) => {
        const slot = this.slots.get(offset)!;
        const from = Math.floor(slot.dirtyFrom / SECTOR) * SECTOR;
        const to = Math.min(slot.buf.length, Math.ceil(slot.dirtyTo / SECTOR) * SECTOR);
        slot.dirtyFrom = slot.dirtyTo = 0;
        const copy = Buffer.from(slot.buf.subarray(from, to));
        try {
          await writeFull(this.fh, copy, offset + from);
        } catch (err) {
          if (this.slots.get(offset) === slot) this.markDirty(offset, from, to);
          throw err;
        }
      }),
    );
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    this.evictClean();
  }

  /** Drop least recently used clean tables until under capacity. */
  evictClean(keep?: number): void {
    if (this.slots.size <= this.capacity) return;
    for (const [offset, slot] of this.slots) {
      if (this.slots.size <= this.capacity) break;
      // `keep` was just handed to a caller that will modify it synchronously.
      if (!isDirty(slot) && offset !== keep) this.slots.delete(offset);
    }
  }
}
