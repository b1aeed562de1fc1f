/**
 * The Backstore over one open RBD image (held by ./connection.ts, which
 * replaces it if the cluster fences this client). Every call is one librbd aio call
 * (no emulation, no copy): reads and writes hand the kernel's data-area
 * Buffers to librbd as iovecs; COMPARE AND WRITE is librbd's, so the OSD
 * compares and writes in one object operation and is atomic for every
 * client of the image, not only this runner.
 *
 * Capabilities, and why:
 * - writeCache: only with cache=writeback (./spec.ts): then librbd's cache
 *   holds writes until a flush, and FUA is the core's write + flush. With
 *   the default cache=none librbd has no cache and a write settles once the
 *   OSDs hold it.
 * - discard is rbd_aio_discard, but librbd may skip the unaligned parts of a
 *   discard (rbd_skip_partial_discard, rbd_discard_granularity_bytes), so a
 *   discarded range is NOT promised to read back as zeros (discardZeroes
 *   false); zeroing is rbd_aio_write_zeroes, which always zeroes.
 * - compareAndWrite: librbd 16 compares within one 512-byte sector only
 *   (EINVAL beyond), so it is offered on 512-byte-block LUNs with a limit of
 *   one block; a 4096-byte-block LUN gets the core's read-compare-write,
 *   atomic against this runner only.
 * - blockStatus: rbd_diff_iterate2 over whole objects (cheap with the
 *   object-map and fast-diff features, one listing per object without
 *   them, hence at most BLOCK_STATUS_SPAN per call): an object that exists
 *   is mapped, a missing one reads as zeros (deallocated).
 */
import { StorageError } from '../../src/backstore/errors.js';
import { iovLength } from '../../src/iov.js';
import type { Backstore, CallOptions, Extent, LockHolder, WriteOptions } from '../../src/backstore/types.js';
import type { RbdConnection } from './connection.js';

const CAW_SECTOR = 512;
/** Most bytes one GET LBA STATUS asks the cluster about (64 objects of the default 4 MiB). */
const BLOCK_STATUS_SPAN = 256 * 1024 * 1024;

/** Copy `length` bytes of `iov` from `from` into one Buffer (compare-and-write takes flat buffers). */
function flatten(iov: readonly Buffer[], from: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let skip = from;
  let done = 0;
  for (const b of iov) {
    if (done === length) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, length - done);
    b.copy(out, done, skip, skip + n);
    done += n;
    skip = 0;
  }
  return out;
}

export interface RbdStoreInit {
  connection: RbdConnection;
  size: number;
  blockSize: number;
  readOnly: boolean;
  /** librbd's cache holds writes until a flush (cache=writeback). */
  writeCache: boolean;
}

/** Triples from allocationExtents -> extents covering [offset, end) in order, gaps deallocated. */
export function extentsFromTriples(triples: Float64Array, offset: number, end: number): Extent[] {
  const out: Extent[] = [];
  let at = offset;
  const push = (from: number, to: number, state: Extent['state']) => {
    if (to <= from) return;
    const last = out.at(-1);
    if (last && last.state === state && last.offset + last.length === from) last.length += to - from;
    else out.push({ offset: from, length: to - from, state });
  };
  for (let i = 0; i + 2 < triples.length; i += 3) {
    const from = Math.max(triples[i]!, at);
    const to = Math.min(triples[i]! + triples[i + 1]!, end);
    if (to <= from) continue;
    push(at, from, 'deallocated');
    push(from, to, triples[i + 2] ? 'mapped' : 'deallocated');
    at = to;
  }
  // Past the last extent: unallocated, unless the listing stopped early (a
  // full list), when only what it covered is known.
  if (triples.length / 3 < 4096) push(at, end, 'deallocated');
  return out;
}

export function rbdStore(init: RbdStoreInit): Backstore {
  const { connection, blockSize } = init;
  let size = init.size;

  const store: Backstore & { size: number } = {
    get size() {
      return size;
    },
    blockSize,
    readOnly: init.readOnly,
    writeCache: init.writeCache && !init.readOnly,
    discardZeroes: false,

    async blockStatus(offset: number, length: number): Promise<Extent[]> {
      const end = Math.min(offset + Math.min(length, BLOCK_STATUS_SPAN), size);
      const triples = await connection.run((image, failure) =>
        image.allocationExtents(offset, end - offset).catch((err: Error) => Promise.reject(failure(err))),
      );
      const extents = extentsFromTriples(triples, offset, end);
      // Never answer with nothing: the core needs the first block's state.
      return extents.length > 0 ? extents : [{ offset, length: Math.min(blockSize, end - offset), state: 'mapped' }];
    },

    // Reads and writes complete their command on librbd's thread when the
    // core allows it (CallOptions.inRing), as tcmu-runner does; such a call
    // returns STORE_COMPLETES_IN_RING and settles its command itself.
    completesInRing: true,

    read(offset: number, iov: readonly Buffer[], opts?: CallOptions): Promise<void> {
      const inRing = opts?.inRing;
      if (inRing !== undefined) return connection.readInRing(offset, iov, inRing);
      return connection.run((image, failure) => image.readv(offset, iov, failure));
    },

    close(): Promise<void> {
      return connection.close();
    },
  };
  if (init.readOnly) return store;

  Object.assign(store, {
    write(offset: number, iov: readonly Buffer[], opts: WriteOptions): Promise<void> {
      const inRing = opts.inRing;
      if (inRing !== undefined) return connection.writeInRing(offset, iov, inRing);
      return connection.run((image, failure) => image.writev(offset, iov, failure));
    },
    flush(): Promise<void> {
      return connection.run((image, failure) => image.flush(failure));
    },
    discard(offset: number, length: number): Promise<void> {
      return connection.run((image, failure) => image.discard(offset, length, failure));
    },
    writeZeroes(offset: number, length: number): Promise<void> {
      return connection.run((image, failure) => image.writeZeroes(offset, length, failure));
    },
    exclusiveLockHolder(): Promise<LockHolder> {
      return connection.lockHolder();
    },
    async resize(newSize: number): Promise<void> {
      // RECONFIG dev_size: the LUN may shrink below the image or grow up to
      // it; growing the image itself is `rbd resize` (an admin decision).
      const image = connection.image;
      const imageSize = image.size();
      if (newSize > imageSize) {
        throw new StorageError('ENOSPC', `rbd ${image.name}: the image is ${imageSize} bytes; grow it with "rbd resize" before the LUN`);
      }
      size = newSize;
    },
  });
  if (blockSize === CAW_SECTOR) {
    Object.assign(store, {
      compareAndWriteLimit: CAW_SECTOR,
      compareAndWrite(offset: number, iov: readonly Buffer[]): Promise<number> {
        const half = iovLength(iov) / 2;
        const direct = iov.length === 2 && iov[0]!.length === half;
        const compare = direct ? iov[0]! : flatten(iov, 0, half);
        const data = direct ? iov[1]! : flatten(iov, half, half);
        return connection.run((image, failure) => image.compareAndWrite(offset, compare, data, failure));
      },
    });
  }
  return store;
}
