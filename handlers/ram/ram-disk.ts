/**
 * A volatile RAM disk: every method is synchronous, so the ring completes
 * ram commands in the same batch without a promise (this is the handler
 * the benchmark measures). Unwritten chunks are never allocated: a read of
 * one fills zeros into the caller's buffer instead. Copies go through the
 * addon's copyBytes: Buffer.prototype.copy would make a view of the chunk
 * for every one (a partial source), one allocation per command.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { native } from '../../src/native.js';
import type { Backstore, Extent, WriteOptions, WriteZeroesOptions } from '../../src/backstore/types.js';
import { CHUNK_SIZE, ChunkTable } from './chunk-table.js';

const { copyBytes } = native();

/** GET LBA STATUS returns at most a page of descriptors; more extents would only be thrown away. */
const MAX_EXTENTS = 1024;

export class RamDisk implements Backstore {
  size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  // No flush: there is nothing durable to flush to, so no write cache to report.
  private readonly chunks = new ChunkTable();

  constructor(size: number, blockSize: number, readOnly: boolean) {
    this.size = size;
    this.blockSize = blockSize;
    this.readOnly = readOnly;
  }

  read(offset: number, iov: readonly Buffer[]): void {
    let position = offset;
    for (let i = 0; i < iov.length; i++) {
      const target = iov[i]!;
      this.copyOut(position, target);
      position += target.length;
    }
  }

  write(offset: number, iov: readonly Buffer[], _opts: WriteOptions): void {
    let position = offset;
    for (let i = 0; i < iov.length; i++) {
      const source = iov[i]!;
      this.copyIn(position, source);
      position += source.length;
    }
  }

  discard(offset: number, length: number): void {
    this.zeroRange(offset, length, true);
  }

  /**
   * With `unmap`, fully covered chunks are freed; without it they are kept
   * and cleared. Unwritten chunks already read as zeros and stay unallocated
   * either way (allocating memory just to hold zeros helps nobody).
   */
  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions): void {
    this.zeroRange(offset, length, opts.unmap);
  }

  blockStatus(offset: number, length: number): Extent[] {
    const end = offset + length;
    const extents: Extent[] = [];
    let position = offset;
    while (position < end && extents.length < MAX_EXTENTS) {
      const index = Math.floor(position / CHUNK_SIZE);
      let runEnd: number;
      let state: Extent['state'];
      if (this.chunks.get(index)) {
        state = 'mapped';
        let next = index + 1;
        while (next * CHUNK_SIZE < end && this.chunks.get(next)) next++;
        runEnd = next * CHUNK_SIZE;
      } else {
        state = 'deallocated';
        let next = this.chunks.nextCandidate(index + 1);
        while (next * CHUNK_SIZE < end && !this.chunks.get(next)) next = this.chunks.nextCandidate(next + 1);
        runEnd = next * CHUNK_SIZE;
      }
      const stop = Math.min(runEnd, end);
      extents.push({ offset: position, length: stop - position, state });
      position = stop;
    }
    return extents;
  }

  resize(newSize: number): void {
    if (!Number.isSafeInteger(newSize) || newSize < 0 || newSize % this.blockSize !== 0) {
      throw new StorageError('EINVAL', `ram: new size ${newSize} is not a non-negative multiple of the block size ${this.blockSize}`);
    }
    // Drop what lies beyond a shrink so that growing again reads zeros there.
    if (newSize < this.size) this.zeroRange(newSize, this.size - newSize, true);
    this.size = newSize;
  }

  close(): void {}

  /** Allocated chunks (for tests). */
  allocatedChunks(): number {
    return this.chunks.count();
  }

  private copyOut(position: number, target: Buffer): void {
    const length = target.length;
    let done = 0;
    while (done < length) {
      const index = Math.floor(position / CHUNK_SIZE);
      const within = position - index * CHUNK_SIZE;
      const step = Math.min(CHUNK_SIZE - within, length - done);
      const chunk = this.chunks.get(index);
      if (chunk === undefined) target.fill(0, done, done + step);
      else copyBytes(target, done, chunk, within, step);
      done += step;
      position += step;
    }
  }

  private copyIn(position: number, source: Buffer): void {
    const length = source.length;
    let done = 0;
    while (done < length) {
      const index = Math.floor(position / CHUNK_SIZE);
      const within = position - index * CHUNK_SIZE;
      const step = Math.min(CHUNK_SIZE - within, length - done);
      copyBytes(this.chunks.getOrCreate(index), within, source, done, step);
      done += step;
      position += step;
    }
  }

  private zeroRange(offset: number, length: number, release: boolean): void {
    const end = offset + length;
    let position = offset;
    while (position < end) {
      const index = Math.floor(position / CHUNK_SIZE);
      const chunkStart = index * CHUNK_SIZE;
      const within = position - chunkStart;
      const step = Math.min(CHUNK_SIZE - within, end - position);
      const chunk = this.chunks.get(index);
      if (chunk !== undefined) {
        if (release && step === CHUNK_SIZE) this.chunks.delete(index);
        else chunk.fill(0, within, within + step);
        position += step;
      } else {
        // Skip untouched pages wholesale: discarding a huge empty range must be cheap.
        position = Math.max(position + step, Math.min(end, this.chunks.nextCandidate(index + 1) * CHUNK_SIZE));
      }
    }
  }
}
