/**
 * Buffers for the crypt layer's hot path.
 *
 * - contiguousView: the kernel's data area hands a request over as several
 *   Buffers that often lie back to back in the same mapping; then one view
 *   over all of them lets a read decrypt in place in one XTS call, with no
 *   copy.
 * - ScratchPool: a write must not encrypt the caller's buffers, so it needs
 *   its own; allocating (and later unmapping) a fresh megabyte per request
 *   costs page faults and, with io_uring pinning the pages, TLB shootdowns.
 *   A few buffers are kept and reused instead.
 */

/** One Buffer spanning every element of `iov` if they are adjacent in one ArrayBuffer, else null. */
export function contiguousView(iov: readonly Buffer[]): Buffer | null {
  const first = iov[0];
  if (!first) return null;
  if (iov.length === 1) return first;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < iov.length; i++) {
    const b = iov[i]!;
    if (b.buffer !== first.buffer || b.byteOffset !== end) return null;
    end += b.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/** Keeps up to `keep` buffers of up to `maxBytes` for reuse; larger requests get a one-off buffer. */
export class ScratchPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly keep = 8,
    private readonly maxBytes = 8 * 1024 * 1024,
  ) {}

  /** A buffer of at least `size` bytes (return it with `give`). */
  take(size: number): Buffer {
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.length >= size) return this.free.splice(i, 1)[0]!;
    }
    return Buffer.allocUnsafeSlow(Math.max(size, 65536));
  }

  give(buf: Buffer): void {
    if (buf.length <= this.maxBytes && this.free.length < this.keep) this.free.push(buf);
  }

  clear(): void {
    this.free.length = 0;
  }
}
