/** Views into a list of caller buffers, so data moves without copies. */

/** Buffers covering bytes [start, start + length) of the concatenation of `iov`. */
export function sliceIov(iov: readonly Buffer[], start: number, length: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = start;
  let left = length;
  for (const b of iov) {
    if (left === 0) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const take = Math.min(b.length - skip, left);
    out.push(b.subarray(skip, skip + take));
    left -= take;
    skip = 0;
  }
  return out;
}

export function iovLength(iov: readonly Buffer[]): number {
  let n = 0;
  for (const b of iov) n += b.length;
  return n;
}

export function fillIov(iov: readonly Buffer[], value = 0): void {
  for (const b of iov) b.fill(value);
}

/** Copy bytes of `src` (starting at srcStart) into `dst` buffers. */
export function copyIntoIov(dst: readonly Buffer[], src: Buffer, srcStart: number): void {
  let at = srcStart;
  for (const b of dst) {
    src.copy(b, 0, at, at + b.length);
    at += b.length;
  }
}

/** Copy the caller's buffers into `dst` at dstStart. */
export function copyFromIov(dst: Buffer, src: readonly Buffer[], dstStart: number): void {
  let at = dstStart;
  for (const b of src) {
    b.copy(dst, at);
    at += b.length;
  }
}
