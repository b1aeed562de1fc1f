/**
 * An opened qcow2 image: geometry, the active L1 table, the L2 and refcount
 * caches, cluster lookup, L2 allocation / copy-on-write, and flush. The data
 * paths (read, write, zero) live in their own files and use this object.
 *
 * Durability model: data goes to the file immediately; metadata changes go
 * to the caches and reach the file in dependency order (file extended,
 * refcount blocks, L2 tables, L1) BEFORE the command that made or relied on
 * them is acknowledged (`persistMetadata`): a killed daemon loses nothing it
 * acknowledged, because the page cache keeps every completed pwrite (the
 * `file` handler's guarantee). Those write-backs are grouped: commands whose
 * changes are in the cache when a write-back takes the metadata lock share
 * it, and only dirty spans of tables are written (metadata-cache.ts). No
 * fdatasync there: power-loss durability is what SYNCHRONIZE CACHE / FUA
 * (`flush`) are for, with ONE fdatasync per flush. Frees are applied only
 * after that fdatasync (see refcounts.ts), so a kill or power loss between
 * a discard and the next flush can only leak the freed clusters. Power loss
 * can reorder the unsynced metadata writes: v3 images carry the dirty bit
 * meanwhile, so the next open rebuilds refcounts (`markDirtyOnDisk`).
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
import { ReadGrace } from './read-grace.js';
import { DEFAULT_INFLATED_CACHE_BYTES, InflatedClusterCache } from './inflated-cache.js';
import { MetadataMap, type MetadataKind } from './overlap.js';
import { iovLength } from '../../src/iov.js';
import { readRange } from './read-path.js';
import { Refcounts } from './refcounts.js';
import { readSnapshotTable, type SnapshotEntry } from './snapshot-table.js';
import { type CryptoRegion, cryptoRegion, cryptoRegionBytes, type ImageKeys, type Qcow2Encryption, unlockImage } from './encryption.js';

const L2_CACHE_BYTES = 32 << 20;
/** Largest first-cluster read: the header and its extensions must fit in one cluster. */
const HEADER_PROBE = 2 << 20;
/**
 * Deepest backing chain we open (images, the top one included). QEMU sets no
 * fixed limit; ours bounds file descriptors and memory a crafted chain can take.
 */
export const MAX_BACKING_DEPTH = 32;

export interface OpenImageOptions {
  readOnly: boolean;
  log?: Pick<Logger, 'warn' | 'error' | 'debug'>;
  /** Called on a dirty image opened writable; check.ts provides it (avoids an import cycle). */
  repairDirty?: (img: Qcow2Image) => Promise<void>;
  /** Opens the image and its backing chain, confined to the allowed directories (default: unconfined). */
  files?: FileOpener;
  /**
   * Keys for an encrypted image and its encrypted backing files
   * (encryption.ts). Absent: an encrypted image opens locked (metadata
   * operations only; guest data reads and writes fail).
   */
  keys?: ImageKeys;
  /** Internal: identities (dev:ino) of the images above this one in a backing chain (loop detection). */
  chain?: readonly string[];
}

/**
 * Every open failure names the image: a StorageError with the path in front,
 * fs errno errors keep their code. Anything else is a parser bug; it still
 * leaves as a clean ECORRUPT naming the image (the cause keeps the original
 * for logs and the fuzz target, which reports it).
 */
function namedOpenError(path: string, err: unknown, separator = ': '): Error {
  const prefix = `qcow2: ${path}${separator}`;
  const code = (err as { code?: unknown })?.code;
  if (err instanceof Error && typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) {
    if (err.message.startsWith(prefix)) return err;
    const message = prefix + err.message.replace(/^qcow2: /, '');
    if (err instanceof StorageError) return new StorageError(err.code, message, { cause: err.cause });
    return Object.assign(new Error(message, { cause: err }), { code });
  }
  return new StorageError('ECORRUPT', `${prefix}image metadata could not be parsed`, { cause: err });
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
  /** Guest reads in progress; frees wait for those that started before them (read-grace.ts). */
  readonly readGrace = new ReadGrace();
  /** Recently inflated compressed clusters (inflated-cache.ts); told of every freed host cluster. */
  readonly inflated: InflatedClusterCache;
  l1: Buffer;
  l1Dirty = false;
  /** Changes to the in-memory L1 (see `metadataGeneration`). */
  private l1Changes = 0;
  /** `metadataGeneration` as of the last complete write-back of all metadata. */
  private committedGeneration = 0;
  /** A write-back scheduled but not yet holding the lock: later changes still make it. */
  private pendingCommit?: Promise<void>;
  /** The write-back holding the lock now, and the generation it writes. */
  private runningCommit?: { done: Promise<void>; generation: number };
  /** File size known to be at least this (saves a stat per write-back). */
  private knownFileEnd = 0;
  readOnly: boolean;
  refcounts!: Refcounts;
  snapshots: SnapshotEntry[] = [];
  /**
   * Bytes the snapshot table takes on disk. Kept as read (QEMU's entries may
   * be shorter than ours: v2 has no required extra data), so the clusters
   * counted, guarded and freed are exactly the table's.
   */
  snapshotTableBytes = 0;
  backing?: BackingStore;
  /** How this image (and so its backing files) was opened. */
  files: FileOpener = openerOf({});
  /** Where the LUKS header lives, for an encrypted image (encryption.ts). */
  cryptoRegion?: CryptoRegion;
  /** The data cipher, once unlocked; wiped at close. */
  encryption?: Qcow2Encryption;
  /** Passed on to the backing chain. */
  private keys?: ImageKeys;
  /** Clusters holding metadata, by kind: the overlap check before every write (overlap.ts). */
  readonly meta: MetadataMap;
  readonly log: Pick<Logger, 'warn' | 'error' | 'debug'>;
  /** Told when a host cluster's refcount drops to 0 (the compressed-write packer forgets it). */
  onClusterFreed?: (hostOffset: number) => void;

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
    this.meta = new MetadataMap(this.clusterSize);
    this.inflated = new InflatedClusterCache(DEFAULT_INFLATED_CACHE_BYTES, this.clusterSize);
    this.l2Cache = new MetadataCache(
      fh,
      this.clusterSize,
      Math.max(16, Math.floor(L2_CACHE_BYTES / this.clusterSize)),
      () => this.refcounts.cache.writeDirty(),
      (offset) => this.guardWrite(offset, this.clusterSize, 'l2'),
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
    let fh: FileHandle;
    try {
      fh = await files.openHandle(path, { write: !opts.readOnly });
    } catch (err) {
      throw namedOpenError(path, err);
    }
    try {
      const st = await fh.stat();
      const fileSize = st.size;
      const identity = `${st.dev}:${st.ino}`;
      const chain = [...(opts.chain ?? []), identity];
      if (opts.chain?.includes(identity)) throw new StorageError('ECORRUPT', 'backing chain loops back to this image');
      if (chain.length > MAX_BACKING_DEPTH) {
        throw new StorageError('ENOTSUP', `backing chain deeper than ${MAX_BACKING_DEPTH} images`);
      }
      const first = Buffer.alloc(Math.min(HEADER_PROBE, Math.max(fileSize, 512)));
      await readFull(fh, first, 0);
      const header = parseHeader(first, fileSize);
      // Unlock before anything can be written: a wrong key leaves the file untouched.
      const region = cryptoRegion(header, fileSize);
      const encryption = region && opts.keys ? await unlockImage(fh, region, opts.keys, chain.length - 1, path) : undefined;
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
      img.cryptoRegion = region;
      img.encryption = encryption;
      img.keys = opts.keys;
      try {
        await img.load(chain);
      } catch (err) {
        encryption?.wipe();
        if (img.fh !== fh) await img.fh.close().catch(() => {});
        throw err;
      }
      if (header.incompatible & INCOMPAT_DIRTY) {
        if (img.readOnly) {
          log.warn({ path }, 'qcow2: image is dirty (lazy refcounts); refcounts not repaired in read-only mode');
        } else {
          if (!opts.repairDirty) throw new StorageError('ECORRUPT', 'qcow2: image is dirty and no repair is available');
          log.warn({ path }, 'qcow2: image is dirty (lazy refcounts); repairing refcounts before use');
          await opts.repairDirty(img);
          await img.patchHeaderBits(HDR_OFF.incompatible, (header.incompatible &= ~INCOMPAT_DIRTY));
          await fh.datasync();
        }
      }
      if (!img.readOnly && header.autoclear !== 0n) {
        // Unknown (to us: all) auto-clear features must be cleared before the first write.
        header.autoclear = 0n;
        await img.patchHeaderBits(HDR_OFF.autoclear, 0n);
      }
      return img;
    } catch (err) {
      await fh.close().catch(() => {});
      throw namedOpenError(path, err);
    }
  }

  private async load(chain: readonly string[]): Promise<void> {
    const h = this.header;
    if (h.l1Size > 0) await readFull(this.fh, this.l1, h.l1TableOffset);
    this.refcounts = await Refcounts.load(
      this.fh,
      this.clusterSize,
      h.refcountOrder,
      h.refcountTableOffset,
      h.refcountTableClusters,
      (off) => {
        this.l2Cache.drop(off);
        this.meta.removeCluster(off / this.clusterSize);
        this.inflated.forgetHostCluster(off);
        this.onClusterFreed?.(off);
      },
      this.meta,
      (reason) => this.corrupt(reason),
    );
    const fileSize = (await this.fh.stat()).size;
    const table = await readSnapshotTable(this.fh, h.snapshotsOffset, h.nbSnapshots, { clusterSize: this.clusterSize, fileSize });
    this.snapshots = table.entries;
    this.snapshotTableBytes = table.bytes;
    const damage = [...this.refcounts.damaged, ...this.rebuildMetadataMap()];
    if (damage.length > 0) {
      if (this.readOnly) this.log.error({ path: this.path, damage: damage.slice(0, 8) }, 'qcow2: image metadata is damaged; it must not be written');
      else this.corrupt(damage[0]!);
      await this.corruptMarked;
    }
    if (h.backingFile) {
      // Relative names are relative to this image's directory; the opener confines the result.
      const base = { path: h.backingFile, relativeTo: dirname(this.path) };
      const files = this.files;
      try {
        this.backing = await openBacking(base, h.backingFormat, files, (p) => Qcow2Image.open(p, { readOnly: true, log: this.log, files, chain, keys: this.keys }));
      } catch (err) {
        // The backing image's error already names it: "qcow2: <top>: backing file qcow2: <base>: reason" reads badly.
        throw namedOpenError('backing file', err, ' ');
      }
    }
  }

  /**
   * (Re)build the map of metadata clusters from the in-memory structures:
   * at open and after rare whole-structure changes (snapshots, resize).
   * Returns the overlaps found (each one is corruption).
   */
  rebuildMetadataMap(): string[] {
    const h = this.header;
    const cs = this.clusterSize;
    const rc = this.refcounts;
    this.meta.clear();
    const problems: string[] = [];
    const add = (offset: number, bytes: number, kind: MetadataKind) => {
      if (bytes <= 0) return;
      const clash = this.meta.add(offset, bytes, kind);
      if (clash) problems.push(clash);
    };
    add(0, cs, 'header');
    if (this.cryptoRegion) add(this.cryptoRegion.offset, cryptoRegionBytes(this.cryptoRegion, cs), 'header');
    add(h.l1TableOffset, h.l1Size * 8, 'l1');
    add(rc.tableOffset, rc.tableClusters * cs, 'refcount-table');
    for (const block of rc.table) if (block) add(block, cs, 'refcount-block');
    const limit = rc.allocatedEnd;
    for (let i = 0; i < h.l1Size; i++) {
      const off = readL1Offset(this.l1, i);
      // Bad entries are reported when used (l2OffsetFor); only sane ones can be registered.
      if (off !== 0 && off % cs === 0 && off < limit) add(off, cs, 'l2');
    }
    if (h.nbSnapshots > 0) add(h.snapshotsOffset, this.snapshotTableBytes, 'snapshot-table');
    for (const s of this.snapshots) add(s.l1Offset, s.l1Size * 8, 'snapshot-l1');
    return problems;
  }

  /**
   * The overlap check (overlap.ts): refuse a write of `bytes` at `offset`
   * (guest data when `kind` is undefined) that would overwrite metadata;
   * the image is marked corrupt and goes read-only.
   */
  guardWrite(offset: number, bytes: number, kind?: MetadataKind): void {
    const clash = this.meta.conflict(offset, bytes, kind);
    if (clash) throw this.corrupt(`refusing write: ${clash}`);
  }

  async patchHeaderBits(at: number, value: bigint): Promise<void> {
    if (this.header.version < 3) return;
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(value);
    await writeFull(this.fh, b, at);
  }

  /** The header write that sets the corrupt bit, once started. */
  private corruptMarked?: Promise<void>;
  private corruptReported = false;

  /** Metadata inconsistency found at run time: go read-only, loudly, and mark the image. */
  corrupt(reason: string): StorageError {
    const err = new StorageError('ECORRUPT', `qcow2: ${this.path}: ${reason}`);
    if (this.readOnly && !this.corruptMarked && !this.corruptReported) {
      // Opened read-only: the file is not touched, but the operator hears of it (once).
      this.corruptReported = true;
      this.log.error({ path: this.path, reason }, 'qcow2: metadata corruption detected (image open read-only; not marked)');
    }
    if (!this.readOnly) {
      this.log.error({ path: this.path, reason }, 'qcow2: metadata corruption detected; image is now READ-ONLY');
      this.readOnly = true;
      this.header.incompatible |= INCOMPAT_CORRUPT;
      // Awaited by whoever can (open, close); a failure to mark is logged, the image is read-only anyway.
      this.corruptMarked = this.patchHeaderBits(HDR_OFF.incompatible, this.header.incompatible).then(
        () => this.fh.datasync(),
      ).catch((err: unknown) => this.log.error({ path: this.path, err }, 'qcow2: could not set the corrupt bit'));
    }
    return err;
  }

  l2OffsetFor(l1Index: number): number {
    if (l1Index >= this.header.l1Size) return 0;
    const off = readL1Offset(this.l1, l1Index);
    if (off % this.clusterSize !== 0) throw this.corrupt(`L2 table offset 0x${off.toString(16)} (L1 index ${l1Index}) not cluster aligned`);
    if (off >= this.refcounts.allocatedEnd) {
      throw this.corrupt(`L2 table offset 0x${off.toString(16)} (L1 index ${l1Index}) lies beyond the end of the image file`);
    }
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
    // Offsets come from disk: beyond what the file holds (or the 2^53 a JS
    // number and io_uring can carry) they are corruption, never an I/O.
    if (e.kind !== 'unallocated' && e.host >= this.refcounts.allocatedEnd) {
      throw this.corrupt(`${e.kind} cluster offset 0x${e.host.toString(16)} (guest cluster ${guestCluster}) lies beyond the end of the image file`);
    }
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
      this.meta.add(offset, this.clusterSize, 'l2');
      const table = Buffer.alloc(this.clusterSize);
      this.l2Cache.install(offset, table);
      writeL1(this.l1, l1Index, offset, true);
      this.markL1Dirty();
      return { table, offset };
    }
    const shared = (await this.refcounts.get(old / this.clusterSize)) > 1;
    const source = await this.l2Cache.get(old);
    if (!shared) {
      // Flag simply missing (e.g. inaccurate after a revert): no copy needed.
      writeL1(this.l1, l1Index, old, true);
      this.markL1Dirty();
      return { table: source, offset: old };
    }
    const offset = await this.refcounts.allocate(1);
    this.meta.add(offset, this.clusterSize, 'l2');
    const table = Buffer.from(source);
    // Data clusters reached through a shared table are shared too.
    for (let i = 0; i < this.l2Entries; i++) setCopiedBit(table, i, false);
    this.l2Cache.install(offset, table);
    writeL1(this.l1, l1Index, offset, true);
    this.markL1Dirty();
    this.refcounts.queueFree(old);
    return { table, offset };
  }

  /**
   * Under cache pressure, write metadata back (no fdatasync) so clean tables
   * can be evicted. Under `lock`. It is the ordinary write-back: same order,
   * and the dirty bit is set before it like before any other unsynced
   * metadata write.
   */
  async relieveCachePressure(): Promise<void> {
    if (this.l2Cache.overCapacity || this.refcounts.cache.overCapacity) {
      await this.writeMetadata();
      this.refcounts.cache.evictClean();
    }
  }

  private markL1Dirty(): void {
    this.l1Dirty = true;
    this.l1Changes++;
  }

  /**
   * A number that grows with every change to the in-memory metadata (L1, L2
   * and refcount caches). All changes happen under `lock`, so a write-back
   * that reads it under the lock knows exactly which changes it carries.
   */
  get metadataGeneration(): number {
    return this.l1Changes + this.l2Cache.changes + this.refcounts.cache.changes;
  }

  /**
   * Resolve once the metadata as of generation `upTo` (default: now) is in
   * the file (page cache). A command calls this before it is acknowledged,
   * with the generation it made or relied on; a command that changed
   * nothing and saw only written-back state returns at once.
   *
   * Group commit: one write-back is scheduled at a time and only starts on
   * the next turn of the event loop (setImmediate) and then behind the
   * metadata lock; every command that calls in before it has taken the lock
   * joins it, because its changes (made under the lock) are then already in
   * the caches. A command arriving while a write-back runs either is
   * covered by it (generation) or schedules the next one.
   */
  persistMetadata(upTo = this.metadataGeneration): Promise<void> {
    if (this.committedGeneration >= upTo) return Promise.resolve();
    if (this.pendingCommit) return this.pendingCommit;
    if (this.runningCommit && this.runningCommit.generation >= upTo) return this.runningCommit.done;
    const commit: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve)).then(() =>
      this.lock.run(async () => {
        if (this.pendingCommit === commit) this.pendingCommit = undefined;
        // Went read-only (corruption found) meanwhile: the change must not be acknowledged.
        if (this.readOnly) throw new StorageError('EROFS', `qcow2: ${this.path} is read-only`);
        this.runningCommit = { done: commit, generation: this.metadataGeneration };
        try {
          await this.writeMetadata();
        } finally {
          this.runningCommit = undefined;
        }
      }),
    );
    this.pendingCommit = commit;
    return commit;
  }

  /** Make the file span every allocated cluster (never shrinks it). */
  private async coverAllocated(): Promise<void> {
    const end = this.refcounts.allocatedEnd;
    if (end <= this.knownFileEnd) return;
    const size = (await this.fh.stat()).size;
    if (size < end) await this.fh.truncate(end);
    this.knownFileEnd = Math.max(size, end);
  }

  /**
   * Power loss between flushes: the kernel writes the page cache back in its
   * own order, so an L2 entry may reach the disk before the refcount that
   * owns its cluster, and after a reboot that cluster would look free and be
   * handed out twice. Before the first metadata write that no fdatasync
   * follows at once, v3 images get the header's dirty bit, durably (one
   * fdatasync per open): on the next open, ours and QEMU's, refcounts are
   * then rebuilt from the L1/L2 tree before anything is allocated. Cleared
   * on a clean close (as QEMU does with lazy refcounts, not at each flush,
   * which would cost a second fdatasync per flush). v2 has no dirty bit.
   */
  private async markDirtyOnDisk(): Promise<void> {
    if (this.version < 3 || this.header.incompatible & INCOMPAT_DIRTY) return;
    const bits = this.header.incompatible | INCOMPAT_DIRTY;
    await this.patchHeaderBits(HDR_OFF.incompatible, bits);
    await this.fh.datasync();
    this.header.incompatible = bits; // only once it is on disk: a failure retries at the next write-back
  }

  /** Write all dirty metadata in dependency order. Under `lock`. */
  async writeMetadata(): Promise<void> {
    const generation = this.metadataGeneration;
    if (generation > this.committedGeneration || this.l1Dirty) await this.markDirtyOnDisk();
    // Clusters allocated past the old end of file and only partly written
    // (see write-path.ts) must lie inside the file; growing never races a
    // write because it never goes below anything allocated. The file never
    // shrinks while open, so a size seen once need not be asked again.
    // Extending the file and writing refcounts are independent (both only
    // have to precede the L2/L1 entries), so they go out together: one
    // thread-pool round trip less per write-back, with the lock held.
    const first = await Promise.allSettled([this.coverAllocated(), this.refcounts.cache.writeDirty()]);
    for (const r of first) if (r.status === 'rejected') throw r.reason;
    await this.l2Cache.writeDirty();
    if (this.l1Dirty) {
      this.guardWrite(this.header.l1TableOffset, this.l1.length, 'l1');
      this.l1Dirty = false;
      try {
        await writeFull(this.fh, Buffer.from(this.l1), this.header.l1TableOffset);
      } catch (err) {
        this.l1Dirty = true;
        throw err;
      }
    }
    if (generation > this.committedGeneration) this.committedGeneration = generation;
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
        // Outside the lock: a read being waited for may need it (L2 loads).
        await this.readGrace.wait();
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
        if (this.header.incompatible & INCOMPAT_DIRTY) {
          // Everything is durable and consistent: no repair needed at the next open.
          await this.patchHeaderBits(HDR_OFF.incompatible, (this.header.incompatible &= ~INCOMPAT_DIRTY));
          await this.fh.datasync();
        }
      }
    } finally {
      this.encryption?.wipe();
      await this.corruptMarked;
      await this.fh.close();
      await this.backing?.close();
    }
  }

  /**
   * Guest read (the backstore's, and this image's as a backing file). It
   * counts in `readGrace`, so no host cluster it may still read is freed.
   */
  async read(offset: number, iov: readonly Buffer[]): Promise<void> {
    const epoch = this.readGrace.enter();
    try {
      await readRange(this, offset, iov, iovLength(iov));
    } finally {
      this.readGrace.leave(epoch);
    }
  }

  async fileSize(): Promise<number> {
    return (await this.fh.stat()).size; // the opened file, not whatever the path names now
  }
}
