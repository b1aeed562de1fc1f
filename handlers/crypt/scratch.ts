/**
 * Buffers for the crypt layer's hot path.
 *
 * - contiguousView: the kernel's data area hands a request over as several
 *   Buffers that often lie back to back in the same mapping; then one view
 *   over all of them lets a read decrypt in place in one XTS call, with no
 *   copy.
 * - ScratchPool: a write must not encrypt the caller's buffers, so it needs
 *   its own. Measured (scripts/bench-crypt/bench-crypt-io.ts, and the VM
 *   bench at 0.29x / 0.04x of a plain file LUN): a pool that kept 8 buffers
 *   lost to the ring's batches. The kernel hands over and takes back
 *   commands in batches (16 at qd16; a 1 MiB fio write is two 512 KiB
 *   commands, so 16 of them at qd8): a batch of completions returned 16
 *   buffers, the pool kept 8, the next batch allocated 8 fresh ArrayBuffers
 *   (64 KiB minimum, 512 KiB for the large writes). Each one was external
 *   memory for V8 (a full GC every few tens of MB), a new io_uring buffer
 *   registration, and for the large ones an mmap, first-touch page faults
 *   and a munmap. Now buffers come in power-of-two size classes, the small
 *   classes carved from 1 MiB slabs (one ArrayBuffer, one registration for
 *   many buffers), and the pool keeps whatever the peak in flight needed, up
 *   to a byte bound; in the steady state a write allocates nothing.
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

/** Smallest size class: one 4 KiB block. */
const MIN_CLASS = 4096;
/** Classes below this are carved from one slab of this size. */
const SLAB = 1024 * 1024;

/**
 * Reusable scratch buffers by power-of-two size class (4 KiB up to
 * `maxBytes`). Free buffers kept are bounded by `keepBytes` in total; what
 * is given back beyond that is dropped (the GC frees it). Larger requests
 * get a one-off buffer.
 */
export class ScratchPool {
  /** Free buffers per class, indexed by log2(class size). */
  private readonly free: Buffer[][] = [];
  private freeBytes = 0;

  constructor(
    private readonly keepBytes = 64 * 1024 * 1024,
    private readonly maxBytes = 8 * 1024 * 1024,
  ) {}

  /** A buffer of at least `size` bytes (return it with `give`; use `subarray(0, size)`). */
  take(size: number): Buffer {
    if (size > this.maxBytes) return Buffer.allocUnsafeSlow(size);
    const bits = classBits(size);
    const list = (this.free[bits] ??= []);
    const buf = list.pop();
    if (buf) {
      this.freeBytes -= buf.length;
      return buf;
    }
    const classSize = 2 ** bits;
    if (classSize >= SLAB) return Buffer.allocUnsafeSlow(classSize);
    // A new slab: hand out its first piece, keep the rest as free pieces of this class.
    const slab = Buffer.allocUnsafeSlow(SLAB);
    for (let at = SLAB - classSize; at > 0 && this.freeBytes + classSize <= this.keepBytes; at -= classSize) {
      list.push(slab.subarray(at, at + classSize));
      this.freeBytes += classSize;
    }
    return slab.subarray(0, classSize);
  }

  give(buf: Buffer): void {
    const n = buf.length;
    if (n > this.maxBytes || n < MIN_CLASS || (n & (n - 1)) !== 0) return; // a one-off buffer
    if (this.freeBytes + n > this.keepBytes) return;
    (this.free[Math.log2(n)] ??= []).push(buf);
    this.freeBytes += n;
  }

  /** Bytes held in free buffers (for tests). */
  get heldBytes(): number {
    return this.freeBytes;
  }

  clear(): void {
    this.free.length = 0;
    this.freeBytes = 0;
  }
}

/** log2 of the smallest class that holds `size` bytes. */
function classBits(size: number): number {
  return Math.max(12, Math.ceil(Math.log2(Math.max(size, 1))));
}
