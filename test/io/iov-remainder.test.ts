import { describe, expect, it } from 'vitest';
import { iovLength, iovRemainder } from '../../src/iov.js';

const iov = () => [Buffer.from('abc'), Buffer.from(''), Buffer.from('defg'), Buffer.from('h')];
const text = (bufs: readonly Buffer[]) => Buffer.concat(bufs).toString();

describe('iovLength', () => {
  it('sums every Buffer, empty ones included', () => {
    expect(iovLength([])).toBe(0);
    expect(iovLength(iov())).toBe(8);
  });
});

describe('iovRemainder (continuing a short transfer)', () => {
  it.each([0, 1, 2, 3, 4, 6, 7])('drops the first %i bytes and keeps views, not copies', (consumed) => {
    const source = iov();
    const rest = iovRemainder(source, consumed);
    expect(text(rest)).toBe('abcdefgh'.slice(consumed));
    expect(iovLength(rest)).toBe(8 - consumed);
    // Writing through the remainder reaches the caller's Buffers (zero copy).
    rest[0]!.fill(0x2a);
    expect(text(source)).toContain('*');
  });

  it('skips empty Buffers at the cut and leaves the caller\'s array alone', () => {
    const source = iov();
    const rest = iovRemainder(source, 3);
    expect(rest[0]!.toString()).toBe('defg');
    expect(source).toHaveLength(4);
    expect(source[0]!.toString()).toBe('abc');
  });
});
