import { describe, expect, it } from 'vitest';
import ram from '../../../handlers/ram/index.js';
import type { RamDisk } from '../../../handlers/ram/ram-disk.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import { openContext } from '../../backstore/context.js';

const MiB = 1 << 20;

function openRam(size: number, options: Record<string, string> = {}, readOnly = false): RamDisk {
  return ram.open('', openContext({ size, options, readOnly })) as RamDisk;
}

describe('ram handler', () => {
  it('serves a huge sparse LUN without allocating for reads', () => {
    const disk = openRam(2 ** 50); // 1 PiB
    const out = Buffer.alloc(4096, 0xff);
    disk.read(2 ** 50 - 4096, [out]);
    expect(out.every((b) => b === 0)).toBe(true);
    expect(disk.allocatedChunks()).toBe(0);
    disk.write(2 ** 49, [Buffer.alloc(512, 5)], { fua: false });
    expect(disk.allocatedChunks()).toBe(1);
    disk.read(2 ** 49, [out]);
    expect(out.subarray(0, 512).every((b) => b === 5)).toBe(true);
    expect(out.subarray(512).every((b) => b === 0)).toBe(true);
  });

  it('reads and writes multi-buffer iovs across chunk boundaries, synchronously', () => {
    const lun = toLunStore(openRam(4 * MiB));
    const pattern = Buffer.alloc(MiB + 1024);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7) & 0xff;
    const start = MiB - 512;
    expect(lun.write(start, [pattern.subarray(0, 1000 + 24), pattern.subarray(1024)], { fua: true })).toBeUndefined();
    const a = Buffer.alloc(512);
    const b = Buffer.alloc(pattern.length - 512);
    expect(lun.read(start, [a, b])).toBeUndefined();
    expect(Buffer.concat([a, b]).equals(pattern)).toBe(true);
  });

  it('discard frees whole chunks and zeroes partial ones', () => {
    const disk = openRam(4 * MiB);
    disk.write(0, [Buffer.alloc(3 * MiB, 9)], { fua: false });
    expect(disk.allocatedChunks()).toBe(3);
    disk.discard(MiB - 4096, MiB + 8192); // partial chunk 0, whole chunk 1, partial chunk 2
    expect(disk.allocatedChunks()).toBe(2);
    const out = Buffer.alloc(3 * MiB);
    disk.read(0, [out]);
    expect(out.subarray(0, MiB - 4096).every((b) => b === 9)).toBe(true);
    expect(out.subarray(MiB - 4096, 2 * MiB + 4096).every((b) => b === 0)).toBe(true);
    expect(out.subarray(2 * MiB + 4096).every((b) => b === 9)).toBe(true);
  });

  it('writeZeroes without unmap keeps chunks allocated, with unmap frees them', () => {
    const disk = openRam(4 * MiB);
    disk.write(0, [Buffer.alloc(2 * MiB, 3)], { fua: false });
    disk.writeZeroes(0, MiB, { unmap: false });
    expect(disk.allocatedChunks()).toBe(2);
    disk.writeZeroes(MiB, MiB, { unmap: true });
    expect(disk.allocatedChunks()).toBe(1);
    const out = Buffer.alloc(2 * MiB, 1);
    disk.read(0, [out]);
    expect(out.every((b) => b === 0)).toBe(true);
    // Zeroing a huge unwritten range walks untouched pages wholesale and allocates nothing.
    const huge = openRam(2 ** 50);
    huge.writeZeroes(0, 2 ** 50, { unmap: false });
    expect(huge.allocatedChunks()).toBe(0);
  });

  it('reports real block status, clipped to the range and coalesced', () => {
    const disk = openRam(2 ** 40);
    disk.write(2 * MiB, [Buffer.alloc(2 * MiB, 1)], { fua: false });
    disk.write(10 * MiB, [Buffer.alloc(512, 1)], { fua: false });
    expect(disk.blockStatus(MiB + 512, 12 * MiB)).toEqual([
      { offset: MiB + 512, length: MiB - 512, state: 'deallocated' },
      { offset: 2 * MiB, length: 2 * MiB, state: 'mapped' },
      { offset: 4 * MiB, length: 6 * MiB, state: 'deallocated' },
      { offset: 10 * MiB, length: MiB, state: 'mapped' },
      { offset: 11 * MiB, length: 2 * MiB + 512, state: 'deallocated' },
    ]);
    // A whole 1 TiB LUN: one trailing deallocated extent found without walking every chunk.
    expect(disk.blockStatus(11 * MiB, 2 ** 40 - 11 * MiB)).toEqual([{ offset: 11 * MiB, length: 2 ** 40 - 11 * MiB, state: 'deallocated' }]);
    expect(toLunStore(disk).hasBlockStatus).toBe(true);
  });

  it('resize drops data beyond a shrink so growing again reads zeros', () => {
    const disk = openRam(4 * MiB);
    disk.write(0, [Buffer.alloc(4 * MiB, 4)], { fua: false });
    disk.resize(MiB + 4096);
    expect(disk.size).toBe(MiB + 4096);
    disk.resize(4 * MiB);
    const out = Buffer.alloc(4 * MiB);
    disk.read(0, [out]);
    expect(out.subarray(0, MiB + 4096).every((b) => b === 4)).toBe(true);
    expect(out.subarray(MiB + 4096).every((b) => b === 0)).toBe(true);
    expect(() => disk.resize(1000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('is volatile and thin in LunStore terms: no write cache, discard deallocates', () => {
    const lun = toLunStore(openRam(MiB));
    expect(lun.writeCache).toBe(false);
    expect(lun.thin).toBe(true);
    expect(lun.readOnly).toBe(false);
  });

  it('honours readOnly', () => {
    const lun = toLunStore(openRam(MiB, {}, true));
    expect(lun.readOnly).toBe(true);
    expect(() => lun.write(0, [Buffer.alloc(512)], { fua: false })).toThrow(expect.objectContaining({ code: 'EROFS' }));
  });

  it('takes its size from ctx.size or ;size=, refusing conflicts and bad sizes', () => {
    expect((ram.open('', openContext({ options: { size: '8M' } })) as RamDisk).size).toBe(8 * MiB);
    expect(() => ram.open('', openContext({ size: 4 * MiB, options: { size: '8M' } }))).toThrow(
      'ram: option size=8M (8388608 bytes) disagrees with the LUN size 4194304 bytes',
    );
    expect(() => ram.open('', openContext())).toThrow('ram: the LUN size is unknown');
    expect(() => ram.open('', openContext({ size: 1000 }))).toThrow('ram: size 1000 bytes is not a positive multiple of the block size 512');
    expect(() => ram.open('/x', openContext({ size: MiB }))).toThrow('ram: unexpected config "/x"');
    expect(() => ram.open('', openContext({ size: MiB, options: { sise: '1' } }))).toThrow('ram: unknown option "sise"');
  });
});
