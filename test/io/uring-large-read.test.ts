/**
 * Large reads (256 KiB and more) that the page cache holds are copied on the
 * calling thread like small ones, but only up to a budget (8 MiB) until the
 * next microtask checkpoint, i.e. per ring batch; past it, and when the page
 * cache does not hold them, they go through the io_uring to a worker.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ringOrNull } from './test-ring.js';

const dir = fs.mkdtempSync(join(tmpdir(), 'tcmu-large-read-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;
const ring = ringOrNull();

/** Each 32-bit word names its offset, so a read that lands at the wrong offset shows (harness.ts's pattern repeats every 256 blocks). */
function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

describe.skipIf(ring === null)('io_uring vector I/O: large reads from the page cache', () => {
  afterAll(() => ring?.['uring'].close());

  it('copies cached large reads at once up to 8 MiB per batch; the next one waits for a worker; the budget returns after the batch', async () => {
    const content = pattern(10 * MiB, 1);
    const file = join(dir, 'cached.img');
    fs.writeFileSync(file, content); // written through the page cache, so cached
    const fd = fs.openSync(file, 'r');
    try {
      const io = ring!;
      const bufs = Array.from({ length: 10 }, () => Buffer.alloc(MiB));
      // 512 KiB, then seven reads of 1 MiB: 7.5 MiB fit; one more 1 MiB does not
      const results = [io.read(fd, [bufs[0]!.subarray(0, MiB / 2)], 0)];
      for (let i = 1; i < 9; i++) results.push(io.read(fd, [bufs[i]!.subarray(0, 4096), bufs[i]!.subarray(4096)], i * MiB));
      expect(results.slice(0, 8)).toEqual(new Array(8).fill(undefined));
      expect(results[8]).toBeInstanceOf(Promise); // 7.5 MiB + 1 MiB: past the budget
      await results[8];
      // a microtask checkpoint has passed: the budget is back
      expect(io.read(fd, [bufs[9]!], 9 * MiB)).toBeUndefined();
      bufs[0] = bufs[0]!.subarray(0, MiB / 2);
      bufs.forEach((b, i) => expect(b.equals(content.subarray(i * MiB, i * MiB + b.length))).toBe(true));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a large read the page cache does not hold goes through the io_uring and lands the same bytes', async () => {
    const file = join(dir, 'cold.img');
    // O_DIRECT: on disk, not in the page cache
    execFileSync('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=2', 'oflag=direct', 'status=none']);
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(MiB);
      const cold = ring!.read(fd, [buf], MiB);
      expect(cold).toBeInstanceOf(Promise);
      await cold;
      expect(buf.equals(fs.readFileSync(file).subarray(MiB))).toBe(true);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a large read past the end of the file: the cached part at once, then the end-of-file error', async () => {
    const content = pattern(MiB + 8192, 2);
    const file = join(dir, 'short.img');
    fs.writeFileSync(file, content);
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(MiB);
      const cut = ring!.read(fd, [buf], 8192 * 2);
      expect(cut).toBeInstanceOf(Promise);
      await expect(cut).rejects.toMatchObject({ code: 'EIO', endOfFile: true });
      expect(buf.subarray(0, MiB - 8192).equals(content.subarray(16384))).toBe(true);
    } finally {
      fs.closeSync(fd);
    }
  });
});
