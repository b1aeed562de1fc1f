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
 */
import type { FileHandle } from 'node:fs/promises';
import { readFull, writeFull } from './file-io.js';

interface Slot {
  buf: Buffer;
  dirty: boolean;
}

export class MetadataCache {
  private readonly slots = new Map<number, Slot>();
  private readonly loading = new Map<number, Promise<Buffer>>();

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
      this.slots.set(offset, { buf, dirty: false });
      this.evictClean(offset);
      return buf;
    } finally {
      this.loading.delete(offset);
    }
  }

  /** Put a new table (fresh allocation or copy) into the cache, dirty. */
  install(offset: number, buf: Buffer): void {
    this.slots.set(offset, { buf, dirty: true });
  }

  /** Put a table that is already on disk into the cache, clean. */
  installClean(offset: number, buf: Buffer): void {
    this.slots.set(offset, { buf, dirty: false });
  }

  markDirty(offset: number): void {
    const slot = this.slots.get(offset);
    if (!slot) throw new Error(`qcow2 cache: marking uncached table 0x${offset.toString(16)} dirty`);
    slot.dirty = true;
  }

  /** Forget a table whose cluster was freed; its contents must never be written. */
  drop(offset: number): void {
    this.slots.delete(offset);
  }

  get dirtyCount(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.dirty) n++;
    return n;
  }

  get overCapacity(): boolean {
    return this.slots.size > this.capacity;
  }

  /**
   * Write every dirty table (after `beforeWrite`), in offset order. A table
   * changed while its write is in flight stays dirty: we write a snapshot, so
   * a half-updated 8-byte entry can never be torn on disk.
   */
  async writeDirty(): Promise<void> {
    const dirty = [...this.slots.entries()].filter(([, s]) => s.dirty).sort((a, b) => a[0] - b[0]);
    if (dirty.length === 0) return;
    await this.beforeWrite();
    for (const [offset, slot] of dirty) {
      this.guard(offset);
      slot.dirty = false;
      const copy = Buffer.from(slot.buf);
      try {
        await writeFull(this.fh, copy, offset);
      } catch (err) {
        slot.dirty = true;
        throw err;
      }
    }
    this.evictClean();
  }

  /** Drop least recently used clean tables until under capacity. */
  evictClean(keep?: number): void {
    if (this.slots.size <= this.capacity) return;
    for (const [offset, slot] of this.slots) {
      if (this.slots.size <= this.capacity) break;
      // `keep` was just handed to a caller that will modify it synchronously.
      if (!slot.dirty && offset !== keep) this.slots.delete(offset);
    }
  }
}
