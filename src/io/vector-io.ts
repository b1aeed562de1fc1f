/**
 * Positional vectored I/O straight from/to the caller's Buffers (views over
 * the kernel's data area: zero copy). Uses the callback fs.readv/fs.writev,
 * not FileHandle.readv/writev: measured on ext4 (Node 20, 2 x 4 KiB iovecs,
 * 32 in flight, page-cache hits) the callback API did ~270-400k reads/s
 * against ~100-140k for FileHandle, which allocates a result object and
 * goes through an extra promise layer per call.
 *
 * Short transfers (IOV_MAX clamping in libuv, signals, odd filesystems) are
 * continued from where they stopped; only that rare path slices the iov.
 */
import fs from 'node:fs';
import { StorageError } from '../backstore/errors.js';
import { iovLength, iovRemainder } from '../iov.js';

type VectorOp = (
  fd: number,
  buffers: readonly NodeJS.ArrayBufferView[],
  position: number,
  callback: (err: NodeJS.ErrnoException | null, bytes: number) => void,
) => void;

function transfer(
  op: VectorOp,
  what: 'read' | 'write',
  fd: number,
  iov: readonly Buffer[],
  position: number,
  expected: number,
  resolve: () => void,
  reject: (err: unknown) => void,
): void {
  op(fd, iov, position, (err, bytes) => {
    if (err) return reject(err);
    if (bytes === expected) return resolve();
    if (bytes === 0) {
      // The file shrank under us (someone truncated it): the LUN's bytes are gone.
      return reject(new StorageError('EIO', `file: ${what} at byte ${position} hit the end of the file (${expected} bytes missing)`));
    }
    transfer(op, what, fd, iovRemainder(iov, bytes), position + bytes, expected - bytes, resolve, reject);
  });
}

/** How the file store moves data: positional vectored reads/writes that complete fully or throw. */
export interface VectorIo {
  readonly kind: 'io_uring' | 'threads';
  /** Nothing returned: the read already completed, synchronously. */
  read(fd: number, iov: readonly Buffer[], position: number): void | Promise<void>;
  /** Nothing returned: the write already completed, synchronously. */
  write(fd: number, iov: readonly Buffer[], position: number): void | Promise<void>;
}

/** Fill every byte of `iov` from `fd` at `position`. */
export function readFully(fd: number, iov: readonly Buffer[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    transfer(fs.readv as VectorOp, 'read', fd, iov, position, iovLength(iov), resolve, reject);
  });
}

/** Write every byte of `iov` to `fd` at `position`. */
export function writeFully(fd: number, iov: readonly Buffer[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    transfer(fs.writev as VectorOp, 'write', fd, iov, position, iovLength(iov), resolve, reject);
  });
}

/** libuv's thread pool (fs.readv/fs.writev): the portable fallback. */
export const threadPoolIo: VectorIo = { kind: 'threads', read: readFully, write: writeFully };

/** fdatasync(2) as a promise. */
export function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** ftruncate(2) as a promise. */
export function truncate(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, size, (err) => (err ? reject(err) : resolve())));
}

/** close(2) as a promise. */
export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}
