/**
 * The Backstore the core talks to: thin glue from the handler contract to
 * the image's data paths. FUA is write + flush (our flush is the only way
 * to make metadata durable).
 */
import type { Backstore, Extent, WriteOptions, WriteZeroesOptions } from '../../src/backstore/types.js';
import type { Qcow2Image } from './image.js';
import { iovLength } from '../../src/iov.js';
import { growImage } from './resize.js';
import { writeRange } from './write-path.js';
import { blockStatus, zeroRange } from './zero-path.js';
import type { AutoCompactor } from './auto-compact.js';

export class Qcow2Backstore implements Backstore {
  readonly writeCache = true;
  private currentSize: number;
  /** Set on a LUN served with compress= (auto-compact.ts); told of every command so it can wait for a quiet LUN. */
  autoCompact?: AutoCompactor;

  constructor(
    readonly image: Qcow2Image,
    readonly blockSize: number,
  ) {
    this.currentSize = Math.floor(image.size / blockSize) * blockSize;
  }

  get size(): number {
    return this.currentSize;
  }

  /** A discard frees whole clusters only (a partial one is zeroed in place). */
  get discardGranularity(): number {
    return Math.max(4096, this.image.clusterSize);
  }

  get readOnly(): boolean {
    return this.image.readOnly;
  }

  read(offset: number, iov: readonly Buffer[]): Promise<void> {
    this.autoCompact?.noteActivity();
    return this.image.read(offset, iov);
  }

  async write(offset: number, iov: readonly Buffer[], opts: WriteOptions): Promise<void> {
    this.autoCompact?.noteActivity();
    await writeRange(this.image, offset, iov, iovLength(iov));
    if (opts.fua) await this.image.flush();
  }

  flush(): Promise<void> {
    return this.image.flush();
  }

  discard(offset: number, length: number): Promise<void> {
    this.autoCompact?.noteActivity();
    return zeroRange(this.image, offset, length, true);
  }

  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions): Promise<void> {
    this.autoCompact?.noteActivity();
    return zeroRange(this.image, offset, length, opts.unmap);
  }

  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return blockStatus(this.image, offset, length);
  }

  async resize(newSize: number): Promise<void> {
    await growImage(this.image, newSize);
    this.currentSize = Math.floor(this.image.size / this.blockSize) * this.blockSize;
  }

  async close(): Promise<void> {
    await this.autoCompact?.close(); // aborts a running compaction first: it uses the image
    return this.image.close();
  }
}
