/**
 * Helpers over a command's scatter list (several Buffers that are views
 * over the kernel's data area). They never allocate data buffers: they copy
 * between a small source and the views, or build trimmed views.
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
 * Views covering exactly bytes [from, from + length) of the iov. Returns
 * the iov itself when it already is exactly that, so the common READ/WRITE
 * case allocates nothing.
 */
export function sliceIov(iov: readonly Buffer[], from: number, length: number, iovLength: number): readonly Buffer[] {
  if (from === 0 && length === iovLength) return iov;
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

/** Big-endian 64-bit field as a JS number (exact below 2^53; larger values stay larger). */
export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * 0x1_0000_0000 + buf.readUInt32BE(at + 4);
}

/** Write a JS number (< 2^53) as a big-endian 64-bit field. */
export function writeU64(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}
