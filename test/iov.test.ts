/**
 * src/iov.ts is public API for handler authors: table tests for every
 * export, over iovs with empty and zero-length parts, ranges that start or
 * end exactly on a part boundary, and ranges past the end (a RangeError,
 * except for scatter/gather, which stop at the end of the iov and say so in
 * their return value).
 */
import { describe, expect, it } from 'vitest';
import * as iovApi from '../src/iov.js';
import * as publicApi from '../src/index.js';
import { compareIov, copyFromIov, copyIntoIov, fillIov, gather, iovIsZero, iovLength, iovRemainder, scatter, sliceIov } from '../src/iov.js';

/** Bytes 1..n (never 0, so copied bytes differ from untouched zeroed ones). */
const seq = (n: number, start = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (start + i) % 256 || 1));
/** Zeroed parts of the given lengths (0 = a zero-length Buffer). */
const iovOf = (...lens: number[]) => lens.map((n) => Buffer.alloc(n));
const concat = (iov: readonly Buffer[]) => Buffer.concat(iov as Buffer[]);
/** The iov shapes every range test runs over: total 10 bytes, parts with boundaries at 3, 4 and 7. */
const shapes: Array<[string, number[]]> = [
  ['one part', [10]],
  ['three parts', [3, 4, 3]],
  ['zero-length parts between', [0, 3, 0, 4, 0, 3, 0]],
  ['single bytes', [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
];

describe('iov helpers are all exported to handler authors', () => {
  it('src/index.ts re-exports every export of src/iov.ts', () => {
    const names = Object.keys(iovApi).sort();
    expect(names).toEqual(['compareIov', 'copyFromIov', 'copyIntoIov', 'fillIov', 'gather', 'iovIsZero', 'iovLength', 'iovRemainder', 'scatter', 'sliceIov']);
    for (const n of names) expect((publicApi as Record<string, unknown>)[n], n).toBe((iovApi as Record<string, unknown>)[n]);
  });
});

describe('iovLength', () => {
  it.each([
    [[], 0],
    [[0], 0],
    [[0, 0], 0],
    [[5], 5],
    [[3, 0, 4], 7],
    [[4096, 4096, 1], 8193],
  ])('%j -> %i', (lens, want) => {
    expect(iovLength(iovOf(...lens))).toBe(want);
  });
});

describe('fillIov', () => {
  it.each([[[]], [[0]], [[3, 0, 4]], [[1]]])('fills every byte of %j', (lens) => {
    const iov = iovOf(...lens);
    fillIov(iov, 0xab);
    expect(concat(iov).every((b) => b === 0xab)).toBe(true);
    fillIov(iov);
    expect(concat(iov).every((b) => b === 0)).toBe(true);
    expect(iovLength(iov)).toBe(lens.reduce((a, b) => a + b, 0));
  });
});

describe('scatter: src bytes into the iov from its start, bounded by the iov', () => {
  const src = seq(12);
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0, 0],
    [name, lens, 3, 3], // ends on a part boundary
    [name, lens, 7, 7],
    [name, lens, 10, 10], // exactly the iov
    [name, lens, 12, 10], // longer than the iov: truncated, the count says so
  ]))('%s %j: length %i copies %i', (_name, lens, length, want) => {
    const iov = iovOf(...lens);
    expect(scatter(iov, src, length)).toBe(want);
    expect(concat(iov)).toEqual(Buffer.concat([src.subarray(0, want), Buffer.alloc(10 - want)]));
  });
  it('an empty iov takes nothing', () => {
    expect(scatter([], src, 5)).toBe(0);
    expect(scatter(iovOf(0, 0), src, 5)).toBe(0);
  });
  it.each([
    [13, 'longer than src'],
    [-1, 'negative'],
  ])('length %i (%s) is a RangeError', (length) => {
    expect(() => scatter(iovOf(20), src, length)).toThrow(RangeError);
    expect(() => scatter(iovOf(20), src, length)).toThrow(/^scatter: source/);
  });
});

describe('gather: iov bytes from `from` into dst at dstOffset, bounded by the iov', () => {
  const content = seq(10);
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0, 0, 0],
    [name, lens, 0, 10, 10],
    [name, lens, 3, 4, 4], // starts and ends on part boundaries
    [name, lens, 2, 6, 6], // crosses boundaries mid-part
    [name, lens, 7, 3, 3], // the last part exactly
    [name, lens, 8, 5, 2], // runs past the end: stops there
    [name, lens, 10, 4, 0], // starts at the end
    [name, lens, 15, 4, 0], // starts past the end
  ]))('%s %j: from %i length %i copies %i', (_name, lens, from, length, want) => {
    const iov = iovOf(...lens);
    copyIntoIov(iov, content, 0);
    const dst = Buffer.alloc(16);
    expect(gather(iov, from, dst, 2, length)).toBe(want);
    expect(dst).toEqual(Buffer.concat([Buffer.alloc(2), content.subarray(from, from + want), Buffer.alloc(14 - want)]));
  });
  it('an empty iov gives nothing', () => {
    expect(gather([], 0, Buffer.alloc(4), 0, 4)).toBe(0);
  });
  it.each([
    [0, 0, 17, 'longer than dst'],
    [0, 10, 7, 'past the end of dst from dstOffset'],
    [0, -1, 2, 'negative dstOffset'],
    [-1, 0, 2, 'negative from'],
    [0, 0, -1, 'negative length'],
  ])('from %i dstOffset %i length %i (%s) is a RangeError', (from, dstOffset, length) => {
    const iov = iovOf(3, 4, 3);
    expect(() => gather(iov, from, Buffer.alloc(16), dstOffset, length)).toThrow(RangeError);
  });
});

describe('sliceIov: views over exactly [from, from + length)', () => {
  const content = seq(10);
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0, 0],
    [name, lens, 0, 10],
    [name, lens, 3, 4],
    [name, lens, 2, 6],
    [name, lens, 7, 3],
    [name, lens, 10, 0], // empty range at the very end
    [name, lens, 9, 1],
  ]))('%s %j: from %i length %i', (_name, lens, from, length) => {
    const iov = iovOf(...lens);
    copyIntoIov(iov, content, 0);
    const views = sliceIov(iov, from, length);
    expect(iovLength(views)).toBe(length);
    expect(concat(views)).toEqual(content.subarray(from, from + length));
    expect(views.every((v) => v.length > 0)).toBe(true); // no zero-length views
    // Views, not copies: writing through them reaches the iov.
    fillIov(views, 0);
    expect(concat(iov)).toEqual(Buffer.concat([content.subarray(0, from), Buffer.alloc(length), content.subarray(from + length)]));
  });
  it('returns the iov itself (no allocation) when the range is the whole iov', () => {
    const iov = iovOf(3, 4, 3);
    expect(sliceIov(iov, 0, 10, 10)).toBe(iov);
    expect(sliceIov(iov, 0, 10)).not.toBe(iov); // total not given: built views
    expect(sliceIov(iov, 1, 9, 10)).not.toBe(iov);
  });
  it('an empty range of an empty iov is empty', () => {
    expect(sliceIov([], 0, 0)).toEqual([]);
    expect(sliceIov(iovOf(0, 0), 0, 0)).toEqual([]);
  });
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0, 11],
    [name, lens, 8, 3],
    [name, lens, 10, 1],
    [name, lens, 11, 0],
    [name, lens, -1, 2],
    [name, lens, 0, -1],
  ]))('%s %j: from %i length %i is a RangeError', (_name, lens, from, length) => {
    expect(() => sliceIov(iovOf(...lens), from, length)).toThrow(RangeError);
    expect(() => sliceIov(iovOf(...lens), from, length)).toThrow(/^sliceIov: iov range/);
  });
  it('past the end of an empty iov is a RangeError', () => {
    expect(() => sliceIov([], 0, 1)).toThrow(RangeError);
  });
});

describe('iovIsZero', () => {
  it.each(shapes.flatMap(([name, lens]) => [
    // [from, length, index of the one non-zero byte, expected]
    [name, lens, 0, 10, -1, true],
    [name, lens, 0, 10, 9, false],
    [name, lens, 0, 9, 9, true], // the byte is just past the range
    [name, lens, 4, 3, 3, true], // the byte is just before the range
    [name, lens, 3, 4, 3, false], // the byte is the range's first
    [name, lens, 3, 4, 6, false], // ... and its last
    [name, lens, 7, 0, 7, true], // empty range
    [name, lens, 10, 0, 5, true], // empty range at the end
  ]))('%s %j: from %i length %i, non-zero byte at %i -> %s', (_name, lens, from, length, at, want) => {
    const iov = iovOf(...lens);
    if (at >= 0) {
      const one = Buffer.alloc(10);
      one[at] = 7;
      copyIntoIov(iov, one, 0);
    }
    expect(iovIsZero(iov, from, length)).toBe(want);
  });
  it('the empty range of an empty iov is zero', () => {
    expect(iovIsZero([], 0, 0)).toBe(true);
  });
  it.each([
    [0, 11],
    [10, 1],
    [-1, 1],
    [0, -1],
  ])('from %i length %i is a RangeError (a range past the end is not "all zero")', (from, length) => {
    expect(() => iovIsZero(iovOf(3, 4, 3), from, length)).toThrow(RangeError);
  });
});

describe('compareIov', () => {
  const content = seq(10);
  it.each(shapes.flatMap(([name, lens]) => [
    // [from, otherOffset, length, index into content to change (-1: none), expected]
    [name, lens, 0, 0, 10, -1, -1],
    [name, lens, 0, 0, 10, 0, 0],
    [name, lens, 0, 0, 10, 9, 9],
    [name, lens, 0, 0, 10, 3, 3], // first byte of a part
    [name, lens, 0, 0, 10, 6, 6], // last byte of a part
    [name, lens, 3, 3, 4, 2, -1], // the difference lies before the range
    [name, lens, 3, 3, 4, 7, -1], // ... or after it
    [name, lens, 3, 3, 4, 5, 2], // offsets are relative to `from`
    [name, lens, 7, 7, 0, 7, -1], // empty range
  ]))('%s %j: from %i vs other@%i length %i, changed %i -> %i', (_name, lens, from, otherOffset, length, changed, want) => {
    const iov = iovOf(...lens);
    copyIntoIov(iov, content, 0);
    const other = Buffer.from(content);
    if (changed >= 0) other[changed] ^= 0xff;
    expect(compareIov(iov, from, other, otherOffset, length)).toBe(want);
  });
  it('compares against `other` from its own offset', () => {
    const iov = [Buffer.from('abc'), Buffer.from('def')];
    expect(compareIov(iov, 1, Buffer.from('xxbcdexx'), 2, 4)).toBe(-1);
    expect(compareIov(iov, 1, Buffer.from('xxbcDexx'), 2, 4)).toBe(2);
  });
  it('the empty range of an empty iov is equal', () => {
    expect(compareIov([], 0, Buffer.alloc(0), 0, 0)).toBe(-1);
  });
  it.each([
    [0, 0, 11, 'longer than the iov'],
    [8, 0, 3, 'iov range past its end'],
    [0, 8, 3, 'other range past its end'],
    [-1, 0, 2, 'negative from'],
    [0, -1, 2, 'negative otherOffset'],
    [0, 0, -1, 'negative length'],
  ])('from %i other@%i length %i (%s) is a RangeError, not "equal"', (from, otherOffset, length) => {
    const iov = iovOf(3, 4, 3);
    copyIntoIov(iov, content, 0);
    expect(() => compareIov(iov, from, Buffer.from(content), otherOffset, length)).toThrow(RangeError);
  });
});

describe('copyIntoIov: fill the iov from src at srcStart', () => {
  const src = seq(16);
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0],
    [name, lens, 3],
    [name, lens, 6], // the iov ends exactly at the end of src
  ]))('%s %j: srcStart %i', (_name, lens, srcStart) => {
    const iov = iovOf(...lens);
    copyIntoIov(iov, src, srcStart);
    expect(concat(iov)).toEqual(src.subarray(srcStart, srcStart + 10));
  });
  it('an empty iov takes nothing, even at the end of src', () => {
    expect(() => copyIntoIov([], src, 16)).not.toThrow();
    expect(() => copyIntoIov(iovOf(0, 0), Buffer.alloc(0), 0)).not.toThrow();
  });
  it.each([
    [7, 'src too short from srcStart (would leave stale bytes)'],
    [17, 'srcStart past the end'],
    [-1, 'negative srcStart'],
  ])('srcStart %i (%s) is a RangeError and copies nothing', (srcStart) => {
    const iov = iovOf(3, 4, 3);
    expect(() => copyIntoIov(iov, src, srcStart)).toThrow(/^copyIntoIov: source/);
    expect(concat(iov).every((b) => b === 0)).toBe(true);
  });
});

describe('copyFromIov: every iov byte into dst at dstStart', () => {
  const content = seq(10);
  it.each(shapes.flatMap(([name, lens]) => [
    [name, lens, 0],
    [name, lens, 3],
    [name, lens, 6], // the iov ends exactly at the end of dst
  ]))('%s %j: dstStart %i', (_name, lens, dstStart) => {
    const iov = iovOf(...lens);
    copyIntoIov(iov, content, 0);
    const dst = Buffer.alloc(16);
    copyFromIov(dst, iov, dstStart);
    expect(dst).toEqual(Buffer.concat([Buffer.alloc(dstStart), content, Buffer.alloc(6 - dstStart)]));
  });
  it('an empty iov writes nothing, even at the end of dst', () => {
    const dst = Buffer.alloc(4);
    copyFromIov(dst, [], 4);
    copyFromIov(dst, iovOf(0), 0);
    expect(dst).toEqual(Buffer.alloc(4));
  });
  it.each([
    [7, 'dst too short from dstStart (would drop bytes)'],
    [17, 'dstStart past the end'],
    [-1, 'negative dstStart'],
  ])('dstStart %i (%s) is a RangeError and writes nothing', (dstStart) => {
    const iov = iovOf(3, 4, 3);
    copyIntoIov(iov, content, 0);
    const dst = Buffer.alloc(16);
    expect(() => copyFromIov(dst, iov, dstStart)).toThrow(/^copyFromIov: destination/);
    expect(dst).toEqual(Buffer.alloc(16));
  });
});

describe('iovRemainder: the iov after its first `consumed` bytes (continuing a short transfer)', () => {
  const content = seq(10);
  it.each(shapes.flatMap(([name, lens]) => [0, 1, 3, 4, 7, 9].map((consumed) => [name, lens, consumed] as const)))(
    '%s %j: consumed %i',
    (_name, lens, consumed) => {
      const iov = iovOf(...lens);
      copyIntoIov(iov, content, 0);
      const rest = iovRemainder(iov, consumed);
      expect(iovLength(rest)).toBe(10 - consumed);
      expect(concat(rest)).toEqual(content.subarray(consumed));
      expect(rest[0]!.length).toBeGreaterThan(0); // starts at a byte still to transfer
      // Views, not copies, and the caller's array is left alone.
      rest[0]![0] = 0xee;
      expect(concat(iov)[consumed]).toBe(0xee);
      expect(iov.map((b) => b.length)).toEqual(lens);
    },
  );
  it.each([
    [[], 0, 'an empty iov has no remainder'],
    [[0, 0], 0, 'nor has an iov of zero-length parts'],
    [[3, 4], 7, 'a finished transfer has none'],
    [[3, 4], 8, 'past the end'],
    [[3, 4], -1, 'negative'],
  ])('%j consumed %i (%s) is a RangeError', (lens, consumed) => {
    expect(() => iovRemainder(iovOf(...lens), consumed)).toThrow(/^iovRemainder: consumed/);
  });
});
