import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/backstore/errors.js';
import { IoKind, statusForStoreError } from '../../src/scsi/sense-map.js';
import { setSenseFieldPointer, setSenseInformation, senseLength, writeSense } from '../../src/scsi/sense.js';
import { command, freshDisk, run } from './harness.js';

describe('sense builder', () => {
  it('fixed format with information and field pointer', () => {
    const b = Buffer.alloc(96, 0xaa);
    writeSense(b, false, 0x5, 0x2400);
    setSenseInformation(b, 0x01020304);
    setSenseFieldPointer(b, true, 0x0102, 3);
    expect([...b.subarray(0, 18)]).toEqual([0xf0, 0, 5, 1, 2, 3, 4, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xcb, 0x01, 0x02]);
    expect(senseLength(b)).toBe(18);
  });

  it('fixed format cannot carry a 64-bit information field: VALID stays 0', () => {
    const b = Buffer.alloc(96);
    writeSense(b, false, 0xe, 0x1d00);
    setSenseInformation(b, 2 ** 40);
    expect(b[0]).toBe(0x70);
    expect(b.readUInt32BE(3)).toBe(0);
  });

  it('descriptor format with information and sense-key-specific descriptors', () => {
    const b = Buffer.alloc(96, 0xaa);
    writeSense(b, true, 0xe, 0x1d00);
    setSenseInformation(b, 2 ** 40 + 5);
    setSenseFieldPointer(b, false, 7, -1);
    expect([...b.subarray(0, 8)]).toEqual([0x72, 0xe, 0x1d, 0, 0, 0, 0, 20]);
    expect([...b.subarray(8, 20)]).toEqual([0, 10, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 5]);
    expect([...b.subarray(20, 28)]).toEqual([2, 6, 0, 0, 0x80, 0, 7, 0]);
    expect(senseLength(b)).toBe(28);
  });
});

describe('store error -> sense map', () => {
  // [code, kind, status, key, asc, ascq]
  it.each([
    ['EIO', IoKind.Read, 2, 3, 0x11, 0],
    ['EIO', IoKind.Write, 2, 3, 0x0c, 0],
    ['ECORRUPT', IoKind.Read, 2, 3, 0x11, 0],
    ['ENOSPC', IoKind.Write, 2, 7, 0x27, 7],
    ['EROFS', IoKind.Write, 2, 7, 0x27, 0],
    ['ERANGE', IoKind.Read, 2, 5, 0x21, 0],
    ['EINVAL', IoKind.Write, 2, 5, 0x24, 0],
    ['ENOTSUP', IoKind.Write, 2, 5, 0x20, 0],
    ['EOPNOTSUPP', IoKind.Write, 2, 5, 0x20, 0],
    ['EMISCOMPARE', IoKind.Read, 2, 0xe, 0x1d, 0],
    ['ETIMEDOUT', IoKind.Write, 2, 0xb, 0, 0],
  ] as const)('%s (%i) -> %i %i/%i/%i', (code, kind, status, key, asc, ascq) => {
    const b = Buffer.alloc(96);
    expect(statusForStoreError(new StorageError(code as never, 'x'), kind, b, false)).toBe(status);
    expect([b[2], b[12], b[13]]).toEqual([key, asc, ascq]);
  });

  it('ECANCELED -> TASK ABORTED, no sense', () => {
    const b = Buffer.alloc(96);
    expect(statusForStoreError(new StorageError('ECANCELED', 'x'), IoKind.Read, b, false)).toBe(0x40);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  it('an error without a code is a medium error', () => {
    const b = Buffer.alloc(96);
    expect(statusForStoreError(new Error('boom'), IoKind.Write, b, true)).toBe(2);
    expect([b[0], b[1], b[2], b[3]]).toEqual([0x72, 3, 0x0c, 0]);
  });
});

describe('REQUEST SENSE', () => {
  it.each([
    [0x00, 18, [0x70, 0, 0, 0, 0, 0, 0, 10]],
    [0x01, 8, [0x72, 0, 0, 0, 0, 0, 0, 0]],
  ])('DESC=%i without pending sense: NO SENSE, %i bytes', async (desc, length, head) => {
    const { disk } = await freshDisk();
    const cmd = command([0x03, desc, 0, 0, 252, 0], { inLength: 252 });
    expect(await run(disk, cmd)).toBe(0);
    expect(cmd.dataInLength).toBe(length);
    expect([...cmd.iov[0].subarray(0, 8)]).toEqual(head);
  });

  it('allocation length truncates', async () => {
    const { disk } = await freshDisk();
    const cmd = command([0x03, 0, 0, 0, 4, 0], { inLength: 252 });
    expect(await run(disk, cmd)).toBe(0);
    expect(cmd.dataInLength).toBe(4);
  });
});

describe('other no-data commands', () => {
  it.each([
    ['TEST UNIT READY', [0x00, 0, 0, 0, 0, 0]],
    ['START STOP UNIT start', [0x1b, 0, 0, 0, 0x01, 0]],
    ['START STOP UNIT stop, IMMED', [0x1b, 0x01, 0, 0, 0x00, 0]],
    ['START STOP UNIT eject', [0x1b, 0, 0, 0, 0x02, 0]],
  ])('%s -> GOOD', async (_n, c) => {
    const { disk } = await freshDisk();
    expect(await run(disk, command(c))).toBe(0);
  });
});
