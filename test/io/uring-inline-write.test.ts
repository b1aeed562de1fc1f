/**
 * Small writes of whole pages complete at once on the calling thread
 * (UringVectorIo.write returns nothing); every other write goes through the
 * io_uring (a Promise). Both land the same bytes, and a write that fails at
 * once is reported by the io_uring path with its usual error.
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InlineWriteGuard } from '../../src/io/inline-write-guard.js';
import { ringOrNull } from './test-ring.js';

const dir = fs.mkdtempSync(join(tmpdir(), 'tcmu-inline-write-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ring = ringOrNull();

describe.skipIf(ring === null)('io_uring vector I/O: small whole-page writes made at once', () => {
  afterAll(() => ring?.['uring'].close());
  const file = join(dir, 'lun.img');

  it('4 KiB and 16 KiB page-aligned writes (one or several iovecs) complete synchronously; others return a promise', async () => {
    fs.writeFileSync(file, Buffer.alloc(1 << 20));
    const fd = fs.openSync(file, 'r+');
    try {
      const io = ring!;
      expect(io.write(fd, [Buffer.alloc(4096, 1)], 0)).toBeUndefined();
      expect(io.write(fd, [Buffer.alloc(8192, 2), Buffer.alloc(8192, 3)], 65536)).toBeUndefined();
      const later = [
        io.write(fd, [Buffer.alloc(512, 4)], 131072), // part of a page
        io.write(fd, [Buffer.alloc(4096, 5)], 196608 + 512), // unaligned
        io.write(fd, [Buffer.alloc(20480, 6)], 262144), // larger than the inline limit
      ];
      for (const p of later) expect(p).toBeInstanceOf(Promise);
      await Promise.all(later);
      const disk = fs.readFileSync(file);
      const filled = (from: number, len: number, v: number) => disk.subarray(from, from + len).every((b) => b === v);
      expect([
        filled(0, 4096, 1),
        filled(65536, 8192, 2),
        filled(65536 + 8192, 8192, 3),
        filled(131072, 512, 4),
        filled(196608 + 512, 4096, 5),
        filled(262144, 20480, 6),
        filled(4096, 65536 - 4096, 0),
      ]).toEqual([true, true, true, true, true, true, true]);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a whole-page write that fails at once rejects through the io_uring with the usual errno error', async () => {
    const readOnly = fs.openSync(file, 'r');
    const closed = fs.openSync(file, 'r+');
    fs.closeSync(closed);
    try {
      const settled = await Promise.allSettled([ring!.write(readOnly, [Buffer.alloc(4096)], 0), ring!.write(closed, [Buffer.alloc(4096)], 0)]);
      expect(settled.map((s) => (s.status === 'rejected' ? (s.reason as { code?: string }).code : 'fulfilled'))).toEqual(['EBADF', 'EBADF']);
      for (const s of settled) expect(((s as PromiseRejectedResult).reason as Error).message).toMatch(/^file: write of 4096 bytes at byte 0 failed: EBADF/);
    } finally {
      fs.closeSync(readOnly);
    }
  });

  it('an inline write that took longer than the stall limit sends the next writes through the io_uring', async () => {
    const strict = ringOrNull(new InlineWriteGuard(-1))!; // every inline write counts as a stall
    const fd = fs.openSync(file, 'r+');
    try {
      expect(strict.write(fd, [Buffer.alloc(4096, 7)], 0)).toBeUndefined();
      expect(strict.inlineWrites.pauses).toBe(1);
      const next = strict.write(fd, [Buffer.alloc(4096, 8)], 4096);
      expect(next).toBeInstanceOf(Promise);
      await next;
      expect(strict.inlineWrites.pauses).toBe(1);
      const disk = fs.readFileSync(file).subarray(0, 8192);
      expect(disk.subarray(0, 4096).every((b) => b === 7) && disk.subarray(4096).every((b) => b === 8)).toBe(true);
    } finally {
      fs.closeSync(fd);
      strict['uring'].close();
    }
  });
});

describe('InlineWriteGuard', () => {
  it('allows inline writes until one stalls, then pauses them for 5 s from the end of that write', () => {
    const g = new InlineWriteGuard();
    expect(g.allows(0)).toBe(true);
    g.record(1000, 0.5);
    expect([g.allows(1001), g.pauses]).toEqual([true, 0]);
    expect(g.pausing).toBe(false); // no clock read needed before a write
    g.record(2000, 25); // slept: over the 20 ms stall limit
    expect([g.pausing, g.allows(2025), g.allows(7024), g.pausing]).toEqual([true, false, false, true]);
    expect([g.allows(7025), g.pausing, g.pauses]).toEqual([true, false, 1]);
  });

  it('pauses when inline writes fill more than half of a 100 ms window, and not when they are spread over windows', () => {
    const spread = new InlineWriteGuard();
    for (let t = 0; t < 1000; t += 10) spread.record(t, 4); // 40 ms per window
    expect([spread.allows(1000), spread.pauses]).toEqual([true, 0]);
    const busy = new InlineWriteGuard();
    for (let t = 0; t < 100; t += 10) busy.record(t, 6); // 60 ms within one window
    expect([busy.allows(100), busy.pauses]).toEqual([false, 1]);
  });
});
