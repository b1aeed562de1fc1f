/**
 * A RAM LunStore for the SCSI tables (the real ram handler lives elsewhere).
 * Records what the emulation asked of it, can answer asynchronously, and
 * can be told to fail the next call of a given method with a given code.
 */
import type { Extent, LunStore, WriteOptions, WriteZeroesOptions } from '../../src/backstore/types.js';

export interface RamStoreOptions {
  blocks?: number;
  blockSize?: number;
  thin?: boolean;
  /** Discarded blocks read as zeros (LBPRZ); default: same as thin. */
  discardZeroes?: boolean;
  writeCache?: boolean;
  readOnly?: boolean;
  /** Return promises instead of values. */
  async?: boolean;
  /** Bytes a discard frees in one piece; default 4096. */
  discardGranularity?: number;
}

type Method = 'read' | 'write' | 'flush' | 'discard' | 'writeZeroes' | 'blockStatus';

export class RamStore implements LunStore {
  size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeCache: boolean;
  readonly thin: boolean;
  readonly discardZeroes: boolean;
  readonly discardGranularity: number;
  readonly hasBlockStatus = true;
  readonly abortable = false;
  data: Buffer;
  /** Per block: true if deallocated (thin). */
  deallocated: boolean[];
  readonly calls: { method: Method; offset?: number; length?: number; fua?: boolean; unmap?: boolean; iovCount?: number }[] = [];
  private failures = new Map<Method, string>();
  private readonly async: boolean;

  constructor(opts: RamStoreOptions = {}) {
    this.blockSize = opts.blockSize ?? 512;
    this.size = (opts.blocks ?? 2048) * this.blockSize;
    this.readOnly = opts.readOnly ?? false;
    this.writeCache = opts.writeCache ?? true;
    this.thin = opts.thin ?? false;
    this.discardZeroes = opts.discardZeroes ?? this.thin;
    this.discardGranularity = opts.discardGranularity ?? 4096;
    this.async = opts.async ?? false;
    this.data = Buffer.alloc(this.size);
    this.deallocated = new Array(this.size / this.blockSize).fill(false);
  }

  /** The next call of `method` throws an error with `code`. */
  failNext(method: Method, code: string): void {
    this.failures.set(method, code);
  }

  private settle<T>(method: Method, fn: () => T): T | Promise<T> {
    const code = this.failures.get(method);
    if (code !== undefined) {
      this.failures.delete(method);
      const err = Object.assign(new Error(`injected ${code}`), { code });
      if (this.async) return Promise.reject(err);
      throw err;
    }
    return this.async ? Promise.resolve().then(fn) : fn();
  }

  read(offset: number, iov: readonly Buffer[]) {
    this.calls.push({ method: 'read', offset, length: iov.reduce((n, b) => n + b.length, 0), iovCount: iov.length });
    return this.settle('read', () => {
      let at = offset;
      for (const b of iov) {
        this.data.copy(b, 0, at, at + b.length);
        at += b.length;
      }
    });
  }

  write(offset: number, iov: readonly Buffer[], opts: WriteOptions) {
    this.calls.push({ method: 'write', offset, length: iov.reduce((n, b) => n + b.length, 0), fua: opts.fua, iovCount: iov.length });
    return this.settle('write', () => {
      if (this.readOnly) throw Object.assign(new Error('ro'), { code: 'EROFS' });
      let at = offset;
      for (const b of iov) {
        b.copy(this.data, at);
        for (let i = at / this.blockSize; i < (at + b.length) / this.blockSize; i++) this.deallocated[i] = false;
        at += b.length;
      }
    });
  }

  flush() {
    this.calls.push({ method: 'flush' });
    return this.settle('flush', () => undefined);
  }

  discard(offset: number, length: number) {
    this.calls.push({ method: 'discard', offset, length });
    return this.settle('discard', () => {
      if (!this.thin) return;
      this.data.fill(0, offset, offset + length);
      for (let i = offset / this.blockSize; i < (offset + length) / this.blockSize; i++) this.deallocated[i] = true;
    });
  }

  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions) {
    this.calls.push({ method: 'writeZeroes', offset, length, unmap: opts.unmap });
    return this.settle('writeZeroes', () => {
      this.data.fill(0, offset, offset + length);
      for (let i = offset / this.blockSize; i < (offset + length) / this.blockSize; i++) {
        this.deallocated[i] = opts.unmap && this.thin;
      }
    });
  }

  blockStatus(offset: number, length: number) {
    this.calls.push({ method: 'blockStatus', offset, length });
    return this.settle('blockStatus', () => {
      const extents: Extent[] = [];
      for (let b = offset / this.blockSize; b < (offset + length) / this.blockSize; b++) {
        const state = this.deallocated[b] ? 'deallocated' : 'mapped';
        const last = extents[extents.length - 1];
        if (last && last.state === state) last.length += this.blockSize;
        else extents.push({ offset: b * this.blockSize, length: this.blockSize, state });
      }
      return extents;
    });
  }

  resize(newSize: number) {
    const data = Buffer.alloc(newSize);
    this.data.copy(data, 0, 0, Math.min(newSize, this.size));
    this.data = data;
    this.size = newSize;
    this.deallocated = new Array(newSize / this.blockSize).fill(false);
  }

  close() {}
}
