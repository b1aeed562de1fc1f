/**
 * Backing files: what an unallocated cluster reads through to. A base is a
 * raw file or another qcow2 image (opened read-only, by recursion; the
 * depth limit and loop detection live in Qcow2Image.open). Reads past the
 * end of a shorter base return zeros.
 */
import type { FileHandle } from 'node:fs/promises';
import { type FileOpener, requestedPath } from '../../src/backstore/confine.js';
import { StorageError } from '../../src/backstore/errors.js';
import { readvFull } from './file-io.js';
import { QCOW2_MAGIC } from './format.js';
import { fillIov, iovLength, sliceIov } from '../../src/iov.js';

export interface BackingStore {
  readonly size: number;
  readonly format: 'raw' | 'qcow2';
  /** Fill `iov` from guest offset `offset` of the base; beyond its end: zeros. */
  read(offset: number, iov: readonly Buffer[]): Promise<void>;
  close(): Promise<void>;
}

/** Anything with a size and a read that fills buffers (a qcow2 image). */
export interface SizedReader {
  readonly size: number;
  read(offset: number, iov: readonly Buffer[]): Promise<void>;
  close(): Promise<void>;
}

/** Read that clips to `size` and zero-fills the rest. */
async function clippedRead(size: number, offset: number, iov: readonly Buffer[], inner: (off: number, bufs: readonly Buffer[]) => Promise<void>): Promise<void> {
  const len = iovLength(iov);
  const inside = Math.max(0, Math.min(len, size - offset));
  if (inside < len) fillIov(sliceIov(iov, inside, len - inside));
  if (inside > 0) await inner(offset, sliceIov(iov, 0, inside));
}

class RawBacking implements BackingStore {
  readonly format = 'raw' as const;
  constructor(private readonly fh: FileHandle, readonly size: number) {}
  read(offset: number, iov: readonly Buffer[]): Promise<void> {
    return clippedRead(this.size, offset, iov, (off, bufs) => readvFull(this.fh, bufs, off));
  }
  close(): Promise<void> {
    return this.fh.close();
  }
}

class Qcow2Backing implements BackingStore {
  readonly format = 'qcow2' as const;
  constructor(private readonly image: SizedReader) {}
  get size(): number {
    return this.image.size;
  }
  read(offset: number, iov: readonly Buffer[]): Promise<void> {
    return clippedRead(this.size, offset, iov, (off, bufs) => this.image.read(off, bufs));
  }
  close(): Promise<void> {
    return this.image.close();
  }
}

/** A backing file name as the image header gives it, and the directory a relative name is relative to. */
export interface BackingName {
  path: string;
  relativeTo: string;
}

export async function openBacking(
  name: BackingName,
  format: string | undefined,
  files: FileOpener,
  openQcow2: (path: string) => Promise<SizedReader>,
): Promise<BackingStore> {
  const path = requestedPath(name.path, name.relativeTo);
  let fmt = format;
  if (fmt === undefined) {
    // No backing format extension: probe, as QEMU does, but only between the two we support.
    const fh = await files.openHandle(path);
    try {
      const magic = Buffer.alloc(4);
      await fh.read(magic, 0, 4, 0);
      fmt = magic.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
    } finally {
      await fh.close();
    }
  }
  if (fmt === 'qcow2') return new Qcow2Backing(await openQcow2(path));
  if (fmt === 'raw' || fmt === 'file') {
    const fh = await files.openHandle(path);
    return new RawBacking(fh, (await fh.stat()).size);
  }
  throw new StorageError('ENOTSUP', `qcow2: backing file format '${fmt}' is not supported (raw or qcow2 only)`);
}
