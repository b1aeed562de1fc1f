import { describe, expect, it } from 'vitest';
import { residentZeros } from '../../src/backstore/resident-zeros.js';
import { ZERO_CHUNK_SIZE } from '../../src/backstore/zero-fill.js';

describe('residentZeros', () => {
  it('is zeros at the start of its own page-aligned memory (a WebAssembly page multiple), never a pool slice', () => {
    for (const size of [1, 512, 4096, 65536, 65536 + 512, ZERO_CHUNK_SIZE]) {
      const b = residentZeros(size);
      expect(b.length).toBe(size);
      expect(b.byteOffset).toBe(0);
      expect(b.buffer.byteLength % 65536).toBe(0);
      expect(b.buffer.byteLength).toBeLessThan(size + 65536);
      expect(b.every((v) => v === 0)).toBe(true);
    }
  });
});
