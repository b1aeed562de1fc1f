import { describe, expect, it } from 'vitest';
import { booleanOption, rejectUnknownOptions, sizeOption } from '../../src/backstore/options.js';

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

  it('reads sizes with the one size grammar (src/config/size.ts)', () => {
    expect(sizeOption('ram', { size: '1M' }, 'size')).toBe(2 ** 20);
    expect(sizeOption('ram', { size: '1.5G' }, 'size')).toBe(1.5 * 2 ** 30); // as in the config file
    expect(sizeOption('ram', {}, 'size')).toBeUndefined();
    expect(() => sizeOption('ram', { size: 'big' }, 'size')).toThrow('ram: option size="big" is not a size');
    expect(() => sizeOption('ram', { size: '1.1K' }, 'size')).toThrow('ram: option size="1.1K" is not a size');
  });
});
