/**
 * The io_uring is one per process, shared by every LUN's file and qcow2 I/O.
 * One LUN's bad operation (a corrupt qcow2 L2 entry pointing past 2^53, a
 * negative offset, a length that overflows, a closed fd) must fail only that
 * operation with a clean errno error; the other LUN's operations in the same
 * batch complete, and the ring keeps serving afterwards.
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { invalidArgument } from '../../src/io/uring-io.js';
import { ringOrNull } from './test-ring.js';

const dir = fs.mkdtempSync(join(tmpdir(), 'tcmu-ringio-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));


describe('invalidArgument', () => {
  it.each([
    [3, 0, 4096, undefined],
    [3, 2 ** 53 - 4097, 4096, undefined],
    [3, 2 ** 53, 512, /invalid offset/],
    [3, -1, 512, /invalid offset/],
    [3, Number.NaN, 512, /invalid offset/],
    [3, 0.5, 512, /invalid offset/],
    [3, 2 ** 53 - 100, 512, /runs past 2\^53/],
    [-1, 0, 512, /invalid file descriptor/],
    [2 ** 31, 0, 512, /invalid file descriptor/],
  ] as [number, number, number, RegExp | undefined][])('fd %d, position %d, length %d', (fd, position, length, want) => {
    const got = invalidArgument(fd, position, length);
    if (want === undefined) expect(got).toBeUndefined();
    else expect(got).toMatch(want);
  });
});

const ring = ringOrNull();

describe.skipIf(ring === null)('shared io_uring: one LUN\'s bad operation stays its own', () => {
  afterAll(() => ring?.['uring'].close());

  it('LUN B\'s invalid ops reject with EINVAL/EBADF while LUN A\'s ops in the same batch complete', async () => {
    const fileA = join(dir, 'a.img');
    const fileB = join(dir, 'b.img');
    fs.writeFileSync(fileA, Buffer.alloc(65536, 0x11));
    fs.writeFileSync(fileB, Buffer.alloc(65536, 0x22));
    const fdA = fs.openSync(fileA, 'r+');
    const fdB = fs.openSync(fileB, 'r+');
    const closedFd = fs.openSync(fileB, 'r');
    fs.closeSync(closedFd);
    try {
      const io = ring!;
      // All issued in one synchronous run: they share one staged batch (A's writes
      // are not whole pages, so none is made at once on this thread: see uring-inline-write.test.ts).
      const a = [
        io.write(fdA, [Buffer.alloc(4096, 0xa1)], 512),
        io.write(fdA, [Buffer.alloc(4096, 0xa2)], 8192 + 512),
        Promise.resolve(io.read(fdA, [Buffer.alloc(4096)], 32768)),
      ];
      const b = [
        io.read(fdB, [Buffer.alloc(512)], 2 ** 53),
        io.write(fdB, [Buffer.alloc(512)], 2 ** 60),
        io.read(fdB, [Buffer.alloc(512)], -4096),
        io.write(fdB, [Buffer.alloc(1024)], 2 ** 53 - 512),
        io.write(closedFd, [Buffer.alloc(512)], 0),
      ];
      const [settledA, settledB] = await Promise.all([Promise.allSettled(a), Promise.allSettled(b)]);
      expect(settledA.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
      const codes = settledB.map((s) => (s.status === 'rejected' ? (s.reason as { code?: string }).code : 'fulfilled'));
      expect(codes).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EBADF']);
      for (const s of settledB) {
        const err = (s as PromiseRejectedResult).reason as Error;
        expect(err).toBeInstanceOf(Error);
        expect(err.message).toMatch(/^file: (read|write) /);
      }
      const onDisk = fs.readFileSync(fileA);
      expect(onDisk.subarray(512, 4608).every((v) => v === 0xa1)).toBe(true);
      expect(onDisk.subarray(8704, 12800).every((v) => v === 0xa2)).toBe(true);
      // The ring still serves both LUNs.
      const again = Buffer.alloc(4096);
      await io.read(fdB, [again], 0);
      expect(again.every((v) => v === 0x22)).toBe(true);
    } finally {
      fs.closeSync(fdA);
      fs.closeSync(fdB);
    }
  });
});
