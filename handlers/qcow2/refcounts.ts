/**
 * Refcount table + refcount blocks, and the cluster allocator.
 *
 * Ordering rules owned here:
 * - a new refcount block is written (describing itself) before the table
 *   entry that points to it; a grown table is written before the header
 *   points to it: a crash in between only leaks;
 * - increments go to the block cache and reach the file before any L2/L1
 *   entry referencing the cluster (the L2 cache's beforeWrite hook);
 * - decrements are QUEUED and applied only after the metadata that dropped
 *   the reference is durable (`applyFrees` after fdatasync). Until then the
 *   cluster cannot be reallocated, so an on-disk L2 entry that still points
 *   at it can never end up sharing it with new data.
 *
 * The allocator scans forward from a free-cluster hint (lowered when a
 * cluster is freed), never from cluster 0 on every call.
 */
import type { FileHandle } from 'node:fs/promises';
import { StorageError } from '../../src/backstore/errors.js';
import { readFull, writeFull } from './file-io.js';
import { HDR_OFF, MAX_HOST_OFFSET } from './format.js';
import { MetadataCache } from './metadata-cache.js';
import type { MetadataMap } from './overlap.js';

/** How the owner refuses a write that would destroy metadata (marks the image corrupt). */
export type Refuse = (reason: string) => Error;

const CACHE_BYTES = 8 << 20;

export class Refcounts {
  readonly cache: MetadataCache;
  readonly entriesPerBlock: number;
  private readonly bits: number;
  readonly maxRefcount: number;
  private hint = 1;
  /**
   * End of everything ever allocated or written since open (starts at the
   * file size). A cluster allocated at or above it has never held data, so
   * it reads as zeros without being written (sparse file tail).
   */
  private highWater: number;
  private queued: number[] = [];
  /** During repair: clusters that are referenced even though their refcount says free. */
  reserved?: (cluster: number) => boolean;
  /** Refcount table entries that were unusable at load (treated as absent; the image must not be written). */
  readonly damaged: string[] = [];

  private constructor(
    private readonly fh: FileHandle,
    private readonly clusterSize: number,
    refcountOrder: number,
    public tableOffset: number,
    public tableClusters: number,
    /** Refcount block offsets by block index (0 = no block yet). */
    readonly table: number[],
    private readonly onFreed: (hostOffset: number) => void,
    fileSize: number,
    private readonly meta: MetadataMap,
    private readonly refuse: Refuse,
  ) {
    this.bits = 2 ** refcountOrder;
    this.entriesPerBlock = (clusterSize * 8) / this.bits;
    this.maxRefcount = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.cache = new MetadataCache(fh, clusterSize, Math.max(4, Math.floor(CACHE_BYTES / clusterSize)), undefined, (offset) =>
      this.guard(offset, clusterSize, 'refcount-block'),
    );
    this.highWater = fileSize;
  }

  /** Refuse (and mark the image corrupt) if writing `bytes` at `offset` as `kind` would overwrite other metadata. */
  private guard(offset: number, bytes: number, kind?: 'refcount-block' | 'refcount-table'): void {
    const clash = this.meta.conflict(offset, bytes, kind);
    if (clash) throw this.refuse(clash);
  }

  /** Allocate one data cluster; `pristine` means it is known to read as zeros already. */
  async allocateData(): Promise<{ offset: number; pristine: boolean }> {
    const before = this.highWater;
    const offset = await this.allocate(1);
    return { offset, pristine: offset >= before };
  }

  /** Bytes the file must span for every allocated cluster to lie inside it. */
  get allocatedEnd(): number {
    return this.highWater;
  }

  private noteUsed(endOffset: number): void {
    if (endOffset > this.highWater) this.highWater = endOffset;
  }

  static async load(
    fh: FileHandle,
    clusterSize: number,
    refcountOrder: number,
    tableOffset: number,
    tableClusters: number,
    onFreed: (hostOffset: number) => void,
    meta: MetadataMap,
    refuse: Refuse,
  ): Promise<Refcounts> {
    const fileSize = (await fh.stat()).size;
    // The header parser capped tableClusters (8 MiB of table at most).
    const raw = Buffer.alloc(tableClusters * clusterSize);
    await readFull(fh, raw, tableOffset);
    const table: number[] = [];
    const damaged: string[] = [];
    for (let i = 0; i < raw.length / 8; i++) {
      // Up to 1 Mi entries (8 MiB table): let other LUNs run in between.
      if ((i & 0xffff) === 0xffff) await new Promise<void>((r) => setImmediate(r));
      if (raw.readUInt32BE(i * 8) === 0 && raw.readUInt32BE(i * 8 + 4) < 0x200) {
        table.push(0); // no block (the low 9 bits are reserved)
        continue;
      }
      const big = raw.readBigUInt64BE(i * 8) & ~0x1ffn;
      const v = big >= BigInt(MAX_HOST_OFFSET) ? -1 : Number(big);
      if (v < 0 || v % clusterSize !== 0 || v >= fileSize) {
        // Unusable: kept out of the table so nothing is read or written there.
        damaged.push(`refcount table entry ${i} (refcount block offset 0x${big.toString(16)}) is ${v % clusterSize !== 0 && v >= 0 ? 'not cluster aligned' : 'beyond the end of the file'}`);
        table.push(0);
      } else {
        table.push(v);
      }
    }
    const rc = new Refcounts(fh, clusterSize, refcountOrder, tableOffset, tableClusters, table, onFreed, fileSize, meta, refuse);
    rc.damaged.push(...damaged);
    return rc;
  }

  /** The refcount block with index `b`, or undefined if there is none (for whole-block scans). */
  async block(b: number): Promise<Buffer | undefined> {
    const blockOffset = this.table[b];
    if (!blockOffset) return undefined;
    return this.cache.peek(blockOffset) ?? (await this.cache.get(blockOffset));
  }

  /** Entry `i` of a refcount block buffer (synchronous: scans read whole blocks once). */
  entryOf(block: Buffer, i: number): number {
    return this.readEntry(block, i);
  }

  /** The refcount if known without I/O (its block is cached or absent), else undefined. */
  getCached(cluster: number): number | undefined {
    const b = Math.floor(cluster / this.entriesPerBlock);
    const blockOffset = this.table[b];
    if (!blockOffset) return 0;
    const block = this.cache.peek(blockOffset);
    return block ? this.readEntry(block, cluster % this.entriesPerBlock) : undefined;
  }

  private readEntry(block: Buffer, i: number): number {
    switch (this.bits) {
      case 8: return block.readUInt8(i);
      case 16: return block.readUInt16BE(i * 2);
      case 32: return block.readUInt32BE(i * 4);
      case 64: return Number(block.readBigUInt64BE(i * 8));
      default: {
        const bit = i * this.bits;
        return (block[bit >> 3]! >> (bit & 7)) & ((1 << this.bits) - 1);
      }
    }
  }

  private writeEntry(block: Buffer, i: number, v: number): void {
    switch (this.bits) {
      case 8: block.writeUInt8(v, i); return;
      case 16: block.writeUInt16BE(v, i * 2); return;
      case 32: block.writeUInt32BE(v, i * 4); return;
      case 64: block.writeBigUInt64BE(BigInt(v), i * 8); return;
      default: {
        const bit = i * this.bits;
        const mask = ((1 << this.bits) - 1) << (bit & 7);
        block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((v << (bit & 7)) & mask);
      }
    }
  }

  /** Clusters described by the current table (refcounts beyond are 0 by definition). */
  get coveredClusters(): number {
    return this.table.length * this.entriesPerBlock;
  }

  async get(cluster: number): Promise<number> {
    const b = Math.floor(cluster / this.entriesPerBlock);
    const blockOffset = this.table[b];
    if (!blockOffset) return 0;
    const block = this.cache.peek(blockOffset) ?? (await this.cache.get(blockOffset));
    return this.readEntry(block, cluster % this.entriesPerBlock);
  }

  /** Set a refcount, creating the refcount block (and growing the table) if needed. */
  async set(cluster: number, value: number): Promise<void> {
    if (value > this.maxRefcount || value < 0) {
      throw new StorageError('ENOSPC', `qcow2: refcount ${value} of cluster ${cluster} does not fit in ${this.bits} bits`);
    }
    const b = Math.floor(cluster / this.entriesPerBlock);
    if (!this.table[b]) await this.createBlockFor(cluster);
    const blockOffset = this.table[b]!;
    const block = await this.cache.get(blockOffset);
    const i = cluster % this.entriesPerBlock;
    this.writeEntry(block, i, value);
    // Only the bytes holding this entry (the cache writes back dirty spans).
    this.cache.markDirty(blockOffset, Math.floor((i * this.bits) / 8), Math.ceil(((i + 1) * this.bits) / 8));
  }

  async add(cluster: number, delta: number): Promise<number> {
    const v = (await this.get(cluster)) + delta;
    await this.set(cluster, v);
    return v;
  }

  private async isFree(cluster: number): Promise<boolean> {
    if (cluster === 0 || this.reserved?.(cluster)) return false;
    return (await this.get(cluster)) === 0;
  }

  /**
   * Allocate `count` contiguous clusters with refcount 1; returns the host
   * offset of the first. Refcount blocks needed on the way are created at
   * the first free cluster they cover (a block describing itself).
   */
  async allocate(count: number): Promise<number> {
    let start = -1;
    // First free cluster seen: with count > 1 a short free run may be skipped,
    // and the hint must not jump over it. Invariant: all clusters below the hint are in use.
    let firstFree = -1;
    let c = this.hint;
    let run = 0;
    while (run < count) {
      const b = Math.floor(c / this.entriesPerBlock);
      if (b >= this.table.length) {
        c = await this.growTable(c, b);
        run = 0;
        continue;
      }
      if (!this.table[b] && !(c === 0 || this.reserved?.(c))) {
        await this.placeBlockAt(c, b);
        c++;
        run = 0;
        continue;
      }
      // Cached blocks answer synchronously: a scan over a long used run costs no await per cluster.
      const known = c === 0 || this.reserved?.(c) ? 1 : this.getCached(c);
      if (known === undefined ? await this.isFree(c) : known === 0) {
        if (run === 0) start = c;
        if (firstFree < 0) firstFree = c;
        run++;
      } else {
        run = 0;
      }
      c++;
    }
    // A cluster that still holds metadata reads as free only if refcounts are damaged.
    const clash = this.meta.conflict(start * this.clusterSize, count * this.clusterSize);
    if (clash) throw this.refuse(`allocator found a cluster in use marked free: ${clash}`);
    for (let i = start; i < start + count; i++) await this.set(i, 1);
    this.noteUsed((start + count) * this.clusterSize);
    this.hint = firstFree === start ? start + count : firstFree;
    return start * this.clusterSize;
  }

  private async createBlockFor(cluster: number): Promise<void> {
    // Only reached when a referenced cluster has no block (repair): put the
    // block in a free cluster found by the allocator, which creates blocks
    // for its own range as needed.
    const b = Math.floor(cluster / this.entriesPerBlock);
    const at = await this.allocate(1);
    if (this.table[b]) {
      // The allocation created block b itself on the way; give the cluster back.
      await this.set(at / this.clusterSize, 0);
      return;
    }
    const block = Buffer.alloc(this.clusterSize);
    this.register(at, this.clusterSize, 'refcount-block');
    await writeFull(this.fh, block, at);
    await this.setTableEntry(b, at);
    this.cache.installClean(at, block);
  }

  private register(offset: number, bytes: number, kind: 'refcount-block' | 'refcount-table'): void {
    const clash = this.meta.add(offset, bytes, kind);
    if (clash) throw this.refuse(clash);
  }

  /** A new refcount block for block index b, stored in cluster c (inside its own range) and counting itself. */
  private async placeBlockAt(c: number, b: number): Promise<void> {
    const block = Buffer.alloc(this.clusterSize);
    this.writeEntry(block, c % this.entriesPerBlock, 1);
    this.guard(c * this.clusterSize, this.clusterSize);
    this.register(c * this.clusterSize, this.clusterSize, 'refcount-block');
    this.noteUsed((c + 1) * this.clusterSize);
    await writeFull(this.fh, block, c * this.clusterSize);
    await this.setTableEntry(b, c * this.clusterSize);
    this.cache.installClean(c * this.clusterSize, block);
  }

  private async setTableEntry(b: number, blockOffset: number): Promise<void> {
    const e = Buffer.alloc(8);
    e.writeBigUInt64BE(BigInt(blockOffset));
    this.guard(this.tableOffset + b * 8, 8, 'refcount-table');
    await writeFull(this.fh, e, this.tableOffset + b * 8);
    this.table[b] = blockOffset;
  }

  /**
   * Grow the refcount table so block index `neededBlock` exists. The new
   * table and the new blocks describing it go at cluster `first` (beyond
   * everything the old table covers); write order: blocks, table, header.
   * Returns the first cluster after the new metadata.
   */
  private async growTable(first: number, neededBlock: number): Promise<number> {
    const E = this.entriesPerBlock;
    const cs = this.clusterSize;
    let entries = Math.max(neededBlock + 1, this.table.length * 2);
    let tableClusters = 0;
    let firstBlock = 0;
    let lastBlock = 0;
    for (;;) {
      tableClusters = Math.ceil((entries * 8) / cs);
      let nBlocks = 0;
      for (;;) {
        firstBlock = Math.floor(first / E);
        lastBlock = Math.floor((first + tableClusters + nBlocks - 1) / E);
        const need = lastBlock - firstBlock + 1;
        if (need === nBlocks) break;
        nBlocks = need;
      }
      if (lastBlock < entries) break;
      entries = lastBlock + 1;
    }
    const metaEnd = first + tableClusters + (lastBlock - firstBlock + 1);
    this.guard(first * cs, (metaEnd - first) * cs);
    this.noteUsed(metaEnd * cs);
    const newTable = Buffer.alloc(tableClusters * cs);
    this.table.forEach((off, i) => newTable.writeBigUInt64BE(BigInt(off), i * 8));
    const blocks: Array<[number, Buffer]> = [];
    for (let b = firstBlock; b <= lastBlock; b++) {
      const block = Buffer.alloc(cs);
      for (let k = Math.max(first, b * E); k < Math.min(metaEnd, (b + 1) * E); k++) this.writeEntry(block, k % E, 1);
      const at = (first + tableClusters + (b - firstBlock)) * cs;
      blocks.push([at, block]);
      newTable.writeBigUInt64BE(BigInt(at), b * 8);
    }
    for (const [at] of blocks) this.register(at, cs, 'refcount-block');
    this.register(first * cs, tableClusters * cs, 'refcount-table');
    for (const [at, block] of blocks) await writeFull(this.fh, block, at);
    await writeFull(this.fh, newTable, first * cs);
    const hdr = Buffer.alloc(12);
    hdr.writeBigUInt64BE(BigInt(first * cs), 0);
    hdr.writeUInt32BE(tableClusters, 8);
    await writeFull(this.fh, hdr, HDR_OFF.refcountTableOffset);
    for (let i = 0; i < this.tableClusters; i++) this.queueFree(this.tableOffset + i * cs);
    this.tableOffset = first * cs;
    this.tableClusters = tableClusters;
    this.table.length = 0;
    for (let i = 0; i < newTable.length / 8; i++) this.table.push(Number(newTable.readBigUInt64BE(i * 8)));
    for (const [at, block] of blocks) this.cache.installClean(at, block);
    return metaEnd;
  }

  /** Drop one reference to the host cluster at `hostOffset`, once the dropping metadata is durable. */
  queueFree(hostOffset: number): void {
    this.queued.push(Math.floor(hostOffset / this.clusterSize));
  }

  /** Take the frees queued so far (call before writing the metadata that justified them). */
  takeQueuedFrees(): number[] {
    const q = this.queued;
    this.queued = [];
    return q;
  }

  async applyFrees(clusters: number[]): Promise<number> {
    let leaksAvoided = 0;
    for (const c of clusters) {
      const v = await this.get(c);
      if (v === 0) {
        leaksAvoided++; // double free would be corruption; refuse to go negative
        continue;
      }
      await this.set(c, v - 1);
      if (v === 1) {
        if (c < this.hint) this.hint = c;
        this.onFreed(c * this.clusterSize);
      }
    }
    return leaksAvoided;
  }

  /** Reset the allocation hint (after repair changed refcounts wholesale). */
  resetHint(): void {
    this.hint = 1;
  }
}
