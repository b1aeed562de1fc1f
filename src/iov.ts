/**
 * Helpers over scatter lists ("iovs": several Buffers that are views over
 * the kernel's data area). They never allocate data buffers: they copy
 * between a source and the views, or build trimmed views. Shared by SCSI
 * emulation and handlers; exported to handler authors by src/index.ts.
 *
 * Ranges: `scatter` and `gather` stop at the end of the iov and return how
 * many bytes they copied (data-in is truncated to the initiator's allocation
 * that way). Every other range past the end of its iov or Buffer, and any
 * negative offset or length, throws a RangeError naming the function: a
 * silent short copy would leave stale bytes in a read or drop bytes of a
 * write, and a short compare would report "equal".
 */

function outOfRange(fn: string, what: string, start: number, length: number, size: number): RangeError {
  return new RangeError(`${fn}: ${what} [${start}, ${start + length}) is outside its ${size} bytes`);
}

function checkRange(fn: string, what: string, start: number, length: number, size: number): void {
  if (!(start >= 0 && length >= 0 && start + length <= size)) throw outOfRange(fn, what, start, length, size);
}

/**
 * Copy `length` bytes of `src` into the iov from its start; returns bytes
 * copied (bounded by the iov). RangeError if `src` is shorter than `length`.
 */
export function scatter(iov: readonly Buffer[], src: Buffer, length: number): number {
  checkRange('scatter', 'source', 0, length, src.length);
  let done = 0;
  for (let i = 0; i < iov.length && done < length; i++) {
    const dst = iov[i];
    const n = Math.min(dst.length, length - done);
    src.copy(dst, 0, done, done + n);
    done += n;
  }
  return done;
}

/**
 * Copy `length` bytes starting at byte `from` of the iov into `dst` at
 * `dstOffset`; returns bytes copied (bounded by the iov, 0 when `from` is at
 * or past its end). RangeError if `dst` cannot take `length` bytes at `dstOffset`.
 */
export function gather(iov: readonly Buffer[], from: number, dst: Buffer, dstOffset: number, length: number): number {
  if (from < 0) throw outOfRange('gather', 'iov range', from, length, iovLength(iov));
  checkRange('gather', 'destination', dstOffset, length, dst.length);
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
 * differing byte, or -1 when equal. RangeError if either range runs past
 * the end of its iov or Buffer (checked before comparing anything).
 */
export function compareIov(iov: readonly Buffer[], from: number, other: Buffer, otherOffset: number, length: number): number {
  checkRange('compareIov', 'other range', otherOffset, length, other.length);
  checkRange('compareIov', 'iov range', from, length, iovLength(iov));
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
 * is exactly that range, so the common READ/WRITE case allocates nothing
 * (`total` is trusted: pass `iovLength(iov)`). RangeError if the range runs
 * past the end of the iov.
 */
export function sliceIov(iov: readonly Buffer[], from: number, length: number, total = -1): readonly Buffer[] {
  if (from < 0 || length < 0) throw outOfRange('sliceIov', 'iov range', from, length, iovLength(iov));
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
  if (left > 0 || (length === 0 && from > iovLength(iov))) throw outOfRange('sliceIov', 'iov range', from, length, iovLength(iov));
  return out;
}

/** True if every byte of the iov range is zero. RangeError if the range runs past the end of the iov. */
export function iovIsZero(iov: readonly Buffer[], from: number, length: number): boolean {
  checkRange('iovIsZero', 'iov range', from, length, iovLength(iov));
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
 * transfer. `consumed` must be at least 0 and less than the iov's length (a
 * finished transfer has no remainder; RangeError otherwise); only the first
 * remaining Buffer is re-sliced.
 */
export function iovRemainder(iov: readonly Buffer[], consumed: number): Buffer[] {
  if (!(consumed >= 0 && consumed < iovLength(iov))) {
    throw new RangeError(`iovRemainder: consumed ${consumed} must be at least 0 and less than the iov's ${iovLength(iov)} bytes`);
  }
  let index = 0;
  while (consumed >= iov[index]!.length) consumed -= iov[index++]!.length;
  const rest = iov.slice(index);
  rest[0] = rest[0]!.subarray(consumed);
  return rest;
}

/** Set every byte of the iov to `value` (zero by default). */
export function fillIov(iov: readonly Buffer[], value = 0): void {
  for (const b of iov) b.fill(value);
}

/**
 * Fill the `dst` buffers, in order, from bytes of `src` starting at
 * `srcStart`. RangeError (before copying) if `src` holds fewer bytes there
 * than the iov, which would leave stale bytes in a read.
 */
export function copyIntoIov(dst: readonly Buffer[], src: Buffer, srcStart: number): void {
  checkRange('copyIntoIov', 'source', srcStart, iovLength(dst), src.length);
  let at = srcStart;
  for (const b of dst) {
    src.copy(b, 0, at, at + b.length);
    at += b.length;
  }
}

/**
 * Copy every byte of the `src` buffers, in order, into `dst` at `dstStart`.
 * RangeError (before copying) if `dst` has less room there than the iov holds.
 */
export function copyFromIov(dst: Buffer, src: readonly Buffer[], dstStart: number): void {
  checkRange('copyFromIov', 'destination', dstStart, iovLength(src), dst.length);
  let at = dstStart;
  for (const b of src) {
    b.copy(dst, at);
    at += b.length;
  }
}
