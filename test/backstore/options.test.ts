import { describe, expect, it } from 'vitest';
import { booleanOption, parseSize, rejectUnknownOptions, sizeOption } from '../../src/backstore/options.js';

describe('handler option helpers', () => {
  it('rejects unknown keys, naming the key and what is allowed', () => {
    expect(() => rejectUnknownOptions('file', { create: '1', extnd: '1' }, ['create', 'extend'])).toThrow(
      'file: unknown option "extnd" (allowed: create, extend)',
    );
    expect(() => rejectUnknownOptions('x', { a: '1' }, [])).toThrow('(allowed: none)');
    expect(() => rejectUnknownOptions('file', { create: '1' }, ['create'])).not.toThrow();
  });

  it('reads booleans strictly', () => {
    expect(booleanOption('file', { create: '1' }, 'create', false)).toBe(true);
    expect(booleanOption('file', { create: 'false' }, 'create', true)).toBe(false);
    expect(booleanOption('file', {}, 'create', true)).toBe(true);
    expect(() => booleanOption('file', { create: 'maybe' }, 'create', false)).toThrow('file: option create="maybe" is not a boolean');
  });

  it('reads sizes with binary suffixes', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('1K')).toBe(1024);
    expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('2g')).toBe(2 * 2 ** 30);
    expect(parseSize('1P')).toBe(2 ** 50);
    expect(parseSize('1.5G')).toBeUndefined();
    expect(parseSize('-1')).toBeUndefined();
    expect(parseSize('99999999P')).toBeUndefined(); // beyond 2^53
    expect(sizeOption('ram', { size: '1M' }, 'size')).toBe(2 ** 20);
    expect(sizeOption('ram', {}, 'size')).toBeUndefined();
    expect(() => sizeOption('ram', { size: 'big' }, 'size')).toThrow('ram: option size="big" is not a size');
  });
});
