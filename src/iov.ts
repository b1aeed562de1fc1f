/**
 * Helpers over scatter lists ("iovs": several Buffers that are views over
 * the kernel's data area). They never allocate data buffers: they copy
 * between a source and the views, or build trimmed views. Shared by SCSI
 * emulation and handlers; exported to handler authors by src/index.ts.
 */

/** Copy `length` bytes of `src` into the iov from its start; returns bytes copied (bounded by the iov). */
export function scatter(iov: readonly Buffer[], src: Buffer, length: number): number {
  let done = 0;
  for (let i = 0; i < iov.length && done < length; i++) {
    const dst = iov[i];
    const n = Math.min(dst.length, length - done);
    src.copy(dst, 0, done, done + n);
    done += n;
  }
  return done;
}

/** Copy `length` bytes starting at byte `from` of the iov into `dst` at `dstOffset`; returns bytes copied. */
export function gather(iov: readonly Buffer[], from: number, dst: Buffer, dstOffset: number, length: number): number {
  let skip = from;
  let done = 0;
  for (let i = 0; i < iov.length && done < length; i++) {
    const part = iov[i];
    if (skip >= part.length) {
      skip -= part.length;
      continue;
    }
    const n = Math.min(part.length - skip, length - done);
    part.copy(dst, dstOffset + done, skip, skip + n);
    done += n;
    skip = 0;
  }
  return done;
}

/**
 * Compare `length` bytes of the iov starting at `from` with `other` starting
 * at `otherOffset`. Returns the offset (relative to `from`) of the first
 * differing byte, or -1 when equal.
 */
export function compareIov(iov: readonly Buffer[], from: number, other: Buffer, otherOffset: number, length: number): number {
  let skip = from;
  let done = 0;
  for (let i = 0; i < iov.length && done < length; i++) {
    const part = iov[i];
    if (skip >= part.length) {
      skip -= part.length;
      continue;
    }
    const n = Math.min(part.length - skip, length - done);
    const a = part.subarray(skip, skip + n);
    const b = other.subarray(otherOffset + done, otherOffset + done + n);
    if (!a.equals(b)) {
      for (let k = 0; k < n; k++) if (a[k] !== b[k]) return done + k;
    }
    done += n;
    skip = 0;
  }
  return -1;
}

/**
 * Views covering exactly bytes [from, from + length) of the iov. Pass the
 * iov's total length as `total` to get the iov itself back when it already
 * is exactly that range, so the common READ/WRITE case allocates nothing.
 */
export function sliceIov(iov: readonly Buffer[], from: number, length: number, total = -1): readonly Buffer[] {
  if (from === 0 && length === total) return iov;
  const out: Buffer[] = [];
  let skip = from;
  let left = length;
  for (let i = 0; i < iov.length && left > 0; i++) {
    const part = iov[i];
    if (skip >= part.length) {
      skip -= part.length;
      continue;
    }
    const n = Math.min(part.length - skip, left);
    out.push(part.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  return out;
}

/** True if every byte of the iov range is zero. */
export function iovIsZero(iov: readonly Buffer[], from: number, length: number): boolean {
  let skip = from;
  let left = length;
  for (let i = 0; i < iov.length && left > 0; i++) {
    const part = iov[i];
    if (skip >= part.length) {
      skip -= part.length;
      continue;
    }
    const n = Math.min(part.length - skip, left);
    for (let k = skip; k < skip + n; k++) if (part[k] !== 0) return false;
    left -= n;
    skip = 0;
  }
  return true;
}

/** Total bytes of the iov (the one length helper: handlers, SCSI emulation and file I/O use it). */
export function iovLength(iov: readonly Buffer[]): number {
  let n = 0;
  for (let i = 0; i < iov.length; i++) n += iov[i]!.length;
  return n;
}

/**
 * The iov without its first `consumed` bytes, for continuing a short
 * transfer. `consumed` must be less than the iov's length (a finished
 * transfer has no remainder); only the first remaining Buffer is re-sliced.
 */
export function iovRemainder(iov: readonly Buffer[], consumed: number): Buffer[] {
  let index = 0;
  while (consumed >= iov[index]!.length) consumed -= iov[index++]!.length;
  const rest = iov.slice(index);
  rest[0] = rest[0]!.subarray(consumed);
  return rest;
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
