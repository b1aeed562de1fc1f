/**
 * An opened qcow2 image: geometry, the active L1 table, the L2 and refcount
 * caches, cluster lookup, L2 allocation / copy-on-write, and flush. The data
 * paths (read, write, zero) live in their own files and use this object.
 *
 * Durability model: data goes to the file immediately; metadata lives in the
 * caches and reaches the file in dependency order (refcount blocks, L2
 * tables, L1) on flush or cache pressure, then ONE fdatasync. Frees are
 * applied only after that fdatasync (see refcounts.ts). Write order is what
 * makes a killed process safe (the page cache keeps completed pwrites in
 * order); for power loss the single barrier per flush is a documented
 * trade-off: flushed data is durable, a crash between flushes may leak.
 */
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { StorageError } from '../../src/backstore/errors.js';
import { type FileOpener, openerOf } from '../../src/backstore/confine.js';
import { type BackingStore, openBacking } from './backing.js';
import { readFull, writeFull } from './file-io.js';
import {
  AUTOCLEAR_BITMAPS,
  EXT_BITMAPS,
  HDR_OFF,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  parseHeader,
  type Qcow2Header,
} from './format.js';
import { type ClusterEntry, readL1Copied, readL1Offset, readL2, writeL1, setCopiedBit } from './l2-entry.js';
import { MetadataCache } from './metadata-cache.js';
import { Mutex } from './mutex.js';
import { iovLength } from '../../src/iov.js';
import { readRange } from './read-path.js';
import { Refcounts } from './refcounts.js';
import { readSnapshotTable, type SnapshotEntry } from './snapshot-table.js';

const L2_CACHE_BYTES = 32 << 20;
/** Largest first-cluster read: the header and its extensions must fit in one cluster. */
const HEADER_PROBE = 2 << 20;

export interface OpenImageOptions {
  readOnly: boolean;
  log?: Pick<Logger, 'warn' | 'error' | 'debug'>;
  /** Called on a dirty image opened writable; check.ts provides it (avoids an import cycle). */
  repairDirty?: (img: Qcow2Image) => Promise<void>;
  /** Opens the image and its backing chain, confined to the allowed directories (default: unconfined). */
  files?: FileOpener;
}

const silentLog = { warn: () => {}, error: () => {}, debug: () => {} };

export class Qcow2Image {
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly l2Entries: number;
  readonly l2Cache: MetadataCache;
  readonly lock = new Mutex();
  private readonly flushLock = new Mutex();
  /** Guest clusters whose allocation is in progress (data being written outside the lock). */
  readonly pendingAlloc = new Map<number, Promise<void>>();
  /** In-place data writes in flight; frees wait for them so a cluster is never reused under a writer. */
  readonly inflightWrites = new Set<Promise<unknown>>();
  l1: Buffer;
  l1Dirty = false;
  readOnly: boolean;
  refcounts!: Refcounts;
  snapshots: SnapshotEntry[] = [];
  backing?: BackingStore;
  /** How this image (and so its backing files) was opened. */
  files: FileOpener = openerOf({});
  readonly log: Pick<Logger, 'warn' | 'error' | 'debug'>;

  private constructor(
    readonly path: string,
    readonly fh: FileHandle,
    readonly header: Qcow2Header,
    readOnly: boolean,
    log: Pick<Logger, 'warn' | 'error' | 'debug'>,
  ) {
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.l2Entries = this.clusterSize / 8;
    this.readOnly = readOnly;
    this.log = log;
    this.l1 = Buffer.alloc(header.l1Size * 8);
    this.l2Cache = new MetadataCache(fh, this.clusterSize, Math.max(16, Math.floor(L2_CACHE_BYTES / this.clusterSize)), () =>
      this.refcounts.cache.writeDirty(),
    );
  }

  get size(): number {
    return this.header.size;
  }

  get version(): 2 | 3 {
    return this.header.version;
  }

  static async open(path: string, opts: OpenImageOptions): Promise<Qcow2Image> {
    const log = opts.log ?? silentLog;
    const files = openerOf(opts);
    const fh = await files.openHandle(path, { write: !opts.readOnly });
    try {
      const fileSize = (await fh.stat()).size;
      const first = Buffer.alloc(Math.min(HEADER_PROBE, Math.max(fileSize, 512)));
      await readFull(fh, first, 0);
      const header = parseHeader(first, fileSize);
      let readOnly = opts.readOnly;
      if (header.incompatible & INCOMPAT_CORRUPT) {
        log.error({ path }, 'qcow2: image is marked CORRUPT; opening read-only. Run `qemu-img check -r all` to repair.');
        readOnly = true;
      }
      if (!readOnly && header.extensions.some((e) => e.type === EXT_BITMAPS) && header.autoclear & AUTOCLEAR_BITMAPS) {
        log.warn({ path }, 'qcow2: persistent bitmaps are not maintained; they become inconsistent (autoclear bit cleared)');
      }
      if (readOnly && !opts.readOnly) await fh.close().catch(() => {});
      const img = new Qcow2Image(path, readOnly && !opts.readOnly ? await files.openHandle(path) : fh, header, readOnly, log);
      img.files = files;
      await img.load();
      if (header.incompatible & INCOMPAT_DIRTY) {
        if (readOnly) {
          log.warn({ path }, 'qcow2: image is dirty (lazy refcounts); refcounts not repaired in read-only mode');
        } else {
          if (!opts.repairDirty) throw new StorageError('ECORRUPT', 'qcow2: image is dirty and no repair is available');
          log.warn({ path }, 'qcow2: image is dirty (lazy refcounts); repairing refcounts before use');
          await opts.repairDirty(img);
          await img.patchHeaderBits(HDR_OFF.incompatible, (header.incompatible &= ~INCOMPAT_DIRTY));
          await fh.datasync();
        }
      }
      if (!readOnly && header.autoclear !== 0n) {
        // Unknown (to us: all) auto-clear features must be cleared before the first write.
        header.autoclear = 0n;
        await img.patchHeaderBits(HDR_OFF.autoclear, 0n);
      }
      return img;
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  private async load(): Promise<void> {
    const h = this.header;
    if (h.l1Size > 0) await readFull(this.fh, this.l1, h.l1TableOffset);
    this.refcounts = await Refcounts.load(this.fh, this.clusterSize, h.refcountOrder, h.refcountTableOffset, h.refcountTableClusters, (off) =>
      this.l2Cache.drop(off),
    );
    this.snapshots = await readSnapshotTable(this.fh, h.snapshotsOffset, h.nbSnapshots);
    if (h.backingFile) {
      // Relative names are relative to this image's directory; the opener confines the result.
      const base = { path: h.backingFile, relativeTo: dirname(this.path) };
      this.backing = await openBacking(base, h.backingFormat, this.files, (p) => Qcow2Image.open(p, { readOnly: true, log: this.log, files: this.files }));
    }
  }

  async patchHeaderBits(at: number, value: bigint): Promise<void> {
    if (this.header.version < 3) return;
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(value);
    await writeFull(this.fh, b, at);
  }

  /** Metadata inconsistency found at run time: go read-only, loudly, and mark the image. */
  corrupt(reason: string): StorageError {
    const err = new StorageError('ECORRUPT', `qcow2: ${this.path}: ${reason}`);
    if (!this.readOnly) {
      this.log.error({ path: this.path, reason }, 'qcow2: metadata corruption detected; image is now READ-ONLY');
      this.readOnly = true;
      this.header.incompatible |= INCOMPAT_CORRUPT;
      void this.patchHeaderBits(HDR_OFF.incompatible, this.header.incompatible).catch(() => {});
    }
    return err;
  }

  l2OffsetFor(l1Index: number): number {
    if (l1Index >= this.header.l1Size) return 0;
    const off = readL1Offset(this.l1, l1Index);
    if (off % this.clusterSize !== 0) throw this.corrupt(`L2 table offset 0x${off.toString(16)} (L1 index ${l1Index}) not cluster aligned`);
    return off;
  }

  /** The L2 entry for a guest cluster (no allocation). */
  async entryAt(guestCluster: number): Promise<ClusterEntry> {
    const l2Offset = this.l2OffsetFor(Math.floor(guestCluster / this.l2Entries));
    if (l2Offset === 0) return { kind: 'unallocated', host: 0, copied: false, compressedSize: 0 };
    const table = this.l2Cache.peek(l2Offset) ?? (await this.l2Cache.get(l2Offset));
    const e = readL2(table, guestCluster % this.l2Entries, this.clusterBits);
    if ((e.kind === 'normal' || e.kind === 'zero') && e.host % this.clusterSize !== 0) {
      throw this.corrupt(`data cluster offset 0x${e.host.toString(16)} (guest cluster ${guestCluster}) not cluster aligned`);
    }
    if (e.kind === 'zero' && this.version === 2) throw this.corrupt('zero cluster flag in a version 2 image');
    return e;
  }

  /**
   * The L2 table for guest cluster `gc`, made writable (refcount 1) for the
   * active tree: allocated if absent, copied if shared with a snapshot.
   * Must run under `lock`. Returns the cached table and its offset.
   */
  async writableL2(guestCluster: number): Promise<{ table: Buffer; offset: number }> {
    const l1Index = Math.floor(guestCluster / this.l2Entries);
    if (l1Index >= this.header.l1Size) throw new StorageError('ERANGE', `qcow2: guest cluster ${guestCluster} beyond the L1 table`);
    const old = this.l2OffsetFor(l1Index);
    if (old !== 0 && readL1Copied(this.l1, l1Index)) return { table: await this.l2Cache.get(old), offset: old };
    if (old === 0) {
      const offset = await this.refcounts.allocate(1);
      const table = Buffer.alloc(this.clusterSize);
      this.l2Cache.install(offset, table);
      writeL1(this.l1, l1Index, offset, true);
      this.l1Dirty = true;
      return { table, offset };
    }
    const shared = (await this.refcounts.get(old / this.clusterSize)) > 1;
    const source = await this.l2Cache.get(old);
    if (!shared) {
      // Flag simply missing (e.g. inaccurate after a revert): no copy needed.
      writeL1(this.l1, l1Index, old, true);
      this.l1Dirty = true;
      return { table: source, offset: old };
    }
    const offset = await this.refcounts.allocate(1);
    const table = Buffer.from(source);
    // Data clusters reached through a shared table are shared too.
    for (let i = 0; i < this.l2Entries; i++) setCopiedBit(table, i, false);
    this.l2Cache.install(offset, table);
    writeL1(this.l1, l1Index, offset, true);
    this.l1Dirty = true;
    this.refcounts.queueFree(old);
    return { table, offset };
  }

  /** Under cache pressure, write metadata back in dependency order (no fdatasync). Under `lock`. */
  async relieveCachePressure(): Promise<void> {
    if (this.l2Cache.overCapacity || this.refcounts.cache.overCapacity) {
      await this.refcounts.cache.writeDirty();
      await this.l2Cache.writeDirty();
      this.refcounts.cache.evictClean();
    }
  }

  /** Write all dirty metadata in dependency order. Under `lock`. */
  async writeMetadata(): Promise<void> {
    // Clusters allocated past the old end of file and only partly written
    // (see write-path.ts) must lie inside the file; growing never races a
    // write because it never goes below anything allocated.
    const end = this.refcounts.allocatedEnd;
    if ((await this.fh.stat()).size < end) await this.fh.truncate(end);
    await this.refcounts.cache.writeDirty();
    await this.l2Cache.writeDirty();
    if (this.l1Dirty) {
      this.l1Dirty = false;
      await writeFull(this.fh, Buffer.from(this.l1), this.header.l1TableOffset);
    }
  }

  /** Make every completed write durable: metadata in order, ONE fdatasync, then release queued frees. */
  async flush(): Promise<void> {
    if (this.readOnly) return;
    await this.flushLock.run(async () => {
      let frees: number[] = [];
      await this.lock.run(async () => {
        frees = this.refcounts.takeQueuedFrees();
        await this.writeMetadata();
      });
      await this.fh.datasync();
      if (frees.length > 0) {
        await this.lock.run(async () => {
          await Promise.allSettled([...this.inflightWrites]);
          const bad = await this.refcounts.applyFrees(frees);
          if (bad > 0) this.log.warn({ path: this.path, count: bad }, 'qcow2: freeing clusters whose refcount is already 0');
        });
      }
    });
  }

  /** Flush, write the frees applied by that flush, and close the chain. */
  async close(): Promise<void> {
    try {
      if (!this.readOnly) {
        await this.flush();
        await this.lock.run(() => this.writeMetadata());
        await this.fh.datasync();
      }
    } finally {
      await this.fh.close();
      await this.backing?.close();
    }
  }

  /** Guest read (used directly when this image is a backing file). */
  read(offset: number, iov: readonly Buffer[]): Promise<void> {
    return readRange(this, offset, iov, iovLength(iov));
  }

  async fileSize(): Promise<number> {
    return (await this.fh.stat()).size; // the opened file, not whatever the path names now
  }
}
