import { describe, expect, test } from 'vitest';
import { RingView } from '../../src/tcmu/ring-view.js';

describe('RingView.dataView', () => {
  const cmdrOff = 128;
  const cmdrSize = 4096 - 128;
  const mapSize = 4096 + 16 * 4096; // ring page + 16 data blocks
  const buffer = new ArrayBuffer(mapSize);
  const view = new RingView(buffer, mapSize, cmdrOff, cmdrSize);
  new Uint8Array(buffer).forEach((_, i, a) => (a[i] = i & 0xff));

  test('is a zero-copy view of the map at [start, start + length)', () => {
    const start = view.dataOffset + 3 * 4096;
    const buf = view.dataView(start, 4096);
    expect(buf.buffer).toBe(buffer);
    expect(buf.byteOffset).toBe(start);
    expect(buf.length).toBe(4096);
    buf[0] = 0xee;
    expect(new Uint8Array(buffer)[start]).toBe(0xee);
  });

  test('reuses the view of a block while the length matches, replaces it otherwise', () => {
    const start = view.dataOffset + 5 * 4096;
    const a = view.dataView(start, 4096);
    expect(view.dataView(start, 4096)).toBe(a);
    const b = view.dataView(start, 512);
    expect(b).not.toBe(a);
    expect(b.length).toBe(512);
    expect(view.dataView(start, 512)).toBe(b);
    expect(view.dataView(start + 4096 * 2, 8192).byteOffset).toBe(start + 8192);
  });

  test('starts that are not page aligned get a fresh view each time', () => {
    const start = view.dataOffset + 4096 + 512;
    const a = view.dataView(start, 1024);
    const b = view.dataView(start, 1024);
    expect(b).not.toBe(a);
    expect(a.equals(b)).toBe(true);
    expect(a.byteOffset).toBe(start);
  });
});
