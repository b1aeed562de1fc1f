import { describe, expect, it } from 'vitest';
import { IDENTITY, be, cdb, command, dataIn, fieldPointer, freshDisk, pattern, run, sense } from './harness.js';

const GOOD = 0x00;
const CHECK = 0x02;
const BS = 512;

describe('READ CAPACITY', () => {
  it('(10) last LBA and block length', async () => {
    const { disk } = await freshDisk({ blocks: 2048 });
    const cmd = command([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { inLength: 8 });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect([...dataIn(cmd)]).toEqual([0, 0, 0x07, 0xff, 0, 0, 0x02, 0]);
  });

  it('(10) reports FFFFFFFFh when the capacity needs 64 bits', async () => {
    const { disk, store } = await freshDisk({ blocks: 8 });
    Object.defineProperty(store, 'size', { value: 2 ** 33 * BS });
    disk.refresh();
    const cmd = command([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { inLength: 8 });
    await run(disk, cmd); // unit attention from refresh
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(dataIn(cmd).readUInt32BE(0)).toBe(0xffffffff);
    const rc16 = command([0x9e, 0x10, ...be(0, 8), ...be(32, 4), 0, 0], { inLength: 32 });
    expect(await run(disk, rc16)).toBe(GOOD);
    expect(dataIn(rc16).subarray(0, 8).toString('hex')).toBe('00000001ffffffff');
  });

  it.each([
    [false, true, 0x00],
    [true, true, 0xc0],
    [true, false, 0x80], // an encryption layer with allow_discards: thin, but discarded blocks are not zeros
  ])('(16) thin=%s discardZeroes=%s -> byte 14 = %i (LBPME, LBPRZ)', async (thin, discardZeroes, byte14) => {
    const { disk } = await freshDisk({ thin, discardZeroes: thin && discardZeroes, blocks: 4096 });
    const cmd = command([0x9e, 0x10, ...be(0, 8), ...be(32, 4), 0, 0], { inLength: 32 });
    expect(await run(disk, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d.length).toBe(32);
    expect(d.subarray(0, 8).toString('hex')).toBe('0000000000000fff');
    expect(d.readUInt32BE(8)).toBe(512);
    expect([d[12], d[13], d[14], d[15]]).toEqual([0, 0, byte14, 0]);
  });

  it('(16) honours a short allocation length', async () => {
    const { disk } = await freshDisk();
    const cmd = command([0x9e, 0x10, ...be(0, 8), ...be(12, 4), 0, 0], { inLength: 32 });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(12);
  });
});

describe('SYNCHRONIZE CACHE', () => {
  it.each([
    ['(10)', [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['(10) IMMED, range', [0x35, 0x02, 0, 0, 0, 10, 0, 0, 10, 0]],
    ['(16)', [0x91, 0, ...be(0, 8), ...be(2048, 4), 0, 0]],
  ])('%s flushes the store', async (_n, c) => {
    const { disk, store } = await freshDisk();
    expect(await run(disk, command(c))).toBe(GOOD);
    expect(store.calls.map((x) => x.method)).toEqual(['flush']);
  });

  it('range past the end -> 05/21/00', async () => {
    const { disk, store } = await freshDisk();
    const cmd = command([0x91, 0, ...be(2000, 8), ...be(100, 4), 0, 0]);
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x21, ascq: 0 });
    expect(store.calls).toEqual([]);
  });

  it('flush failure -> 03/0C/00', async () => {
    const { disk, store } = await freshDisk({ async: true });
    store.failNext('flush', 'EIO');
    const cmd = command([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 3, asc: 0x0c, ascq: 0 });
  });
});

const ws10 = (byte1: number, lba: number, n: number) => [0x41, byte1, ...be(lba, 4), 0, ...be(n, 2), 0];
const ws16 = (byte1: number, lba: number, n: number) => [0x93, byte1, ...be(lba, 8), ...be(n, 4), 0, 0];

describe('WRITE SAME', () => {
  it('(10) replicates a non-zero block over the range', async () => {
    const { disk, store } = await freshDisk();
    const block = pattern(1, BS, 3);
    expect(await run(disk, command(ws10(0, 100, 5), { out: block }))).toBe(GOOD);
    for (let i = 0; i < 5; i++) expect(store.data.subarray((100 + i) * BS, (101 + i) * BS).equals(block)).toBe(true);
    expect(store.data.subarray(105 * BS, 106 * BS).every((b) => b === 0)).toBe(true);
  });

  it('(16) replicates in bounded chunks over a large range', async () => {
    const { disk, store } = await freshDisk({ blocks: 8192 });
    const block = pattern(1, BS, 4);
    expect(await run(disk, command(ws16(0, 0, 5000), { out: block }))).toBe(GOOD);
    const writes = store.calls.filter((c) => c.method === 'write');
    expect(writes.length).toBe(3); // 2048 + 2048 + 904 blocks
    expect(writes.every((w) => (w.length ?? 0) <= 1 << 20)).toBe(true);
    expect(store.data.subarray(4999 * BS, 5000 * BS).equals(block)).toBe(true);
  });

  it('a zero block becomes writeZeroes; UNMAP asks to deallocate on a thin LUN', async () => {
    const { disk, store } = await freshDisk({ thin: true });
    expect(await run(disk, command(ws16(0x08, 8, 16), { out: Buffer.alloc(BS) }))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'writeZeroes', offset: 8 * BS, length: 16 * BS, unmap: true });
    expect(await run(disk, command(ws10(0, 8, 16), { out: Buffer.alloc(BS) }))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'writeZeroes', unmap: false });
  });

  it('UNMAP on a thick LUN writes zeros without deallocation', async () => {
    const { disk, store } = await freshDisk({ thin: false });
    expect(await run(disk, command(ws10(0x08, 0, 4), { out: Buffer.alloc(BS) }))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'writeZeroes', unmap: false });
  });

  it('NDOB needs no data-out', async () => {
    const { disk, store } = await freshDisk({ thin: true });
    store.data.fill(0xff);
    expect(await run(disk, command(ws16(0x09, 0, 2)))).toBe(GOOD);
    expect(store.data.subarray(0, 2 * BS).every((b) => b === 0)).toBe(true);
    expect(store.deallocated[0]).toBe(true);
  });

  it.each([
    ['length 0 (WSNZ)', ws10(0, 0, 0), BS, 5, 0x24, 7],
    ['length over the maximum (256 MiB)', ws16(0, 0, (1 << 19) + 1), BS, 5, 0x24, 10],
    ['past the end', ws16(0, 2040, 9), BS, 5, 0x21, -1],
    ['missing data-out block', ws10(0, 0, 1), 100, 5, 0x24, 7],
  ])('%s is rejected', async (_n, c, outBytes, key, asc, byte) => {
    const { disk, store } = await freshDisk();
    const cmd = command(c, { out: Buffer.alloc(outBytes, 1) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key, asc, ascq: 0 });
    if (byte >= 0) expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte });
    expect(store.calls).toEqual([]);
  });

  it('write protected', async () => {
    const { disk } = await freshDisk({ readOnly: true });
    const cmd = command(ws10(0, 0, 1), { out: Buffer.alloc(BS) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 7, asc: 0x27, ascq: 0 });
  });
});

function unmapList(ranges: [number, number][], declared?: number): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(declared ?? 16 * ranges.length, 2);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(n, 16 + 16 * i);
  });
  return b;
}
const unmapCdb = (len: number) => [0x42, 0, 0, 0, 0, 0, 0, len >> 8, len & 0xff, 0];

describe('UNMAP', () => {
  it('discards every range', async () => {
    const { disk, store } = await freshDisk({ thin: true });
    store.data.fill(0x77);
    const list = unmapList([
      [0, 8],
      [100, 0],
      [2040, 8],
    ]);
    expect(await run(disk, command(unmapCdb(list.length), { out: list }))).toBe(GOOD);
    expect(store.calls.map((c) => [c.method, c.offset, c.length])).toEqual([
      ['discard', 0, 8 * BS],
      ['discard', 2040 * BS, 8 * BS],
    ]);
    expect(store.data.subarray(0, 8 * BS).every((b) => b === 0)).toBe(true);
  });

  it('parameter list length 0 is a no-op', async () => {
    const { disk, store } = await freshDisk({ thin: true });
    expect(await run(disk, command(unmapCdb(0)))).toBe(GOOD);
    expect(store.calls).toEqual([]);
  });

  // [name, parameter list, CDB parameter list length (default: the list's), sense key, asc]
  it.each([
    ['a range past the end', unmapList([[0, 1], [2047, 2]]), undefined, 5, 0x21],
    ['list shorter than its header', Buffer.alloc(6), undefined, 5, 0x1a],
    ['too many descriptors', unmapList(Array.from({ length: 257 }, (_, i) => [i, 1] as [number, number])), undefined, 5, 0x26],
    ['too many blocks in total (512 MiB)', unmapList([[0, 1 << 19], [0, (1 << 19) + 1]]), undefined, 5, 0x26],
    ['data-out shorter than the parameter list length', unmapList([[0, 1]]), 40, 5, 0x24],
  ])('%s is rejected before any discard', async (_n, list, cdbLength, key, asc) => {
    const { disk, store } = await freshDisk({ thin: true });
    // Pretend to be a 16 GiB LUN so the LBA-count limit, not the capacity, is hit.
    if (asc === 0x26) {
      Object.defineProperty(store, 'size', { value: 2 ** 34 });
      disk.refresh();
      await run(disk, command(be(0, 6))); // consume CAPACITY DATA HAS CHANGED
    }
    const cmd = command(unmapCdb(cdbLength ?? list.length), { out: list });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key, asc, ascq: 0 });
    expect(store.calls.filter((c) => c.method === 'discard')).toEqual([]);
  });

  it('a partial trailing descriptor is ignored', async () => {
    const { disk, store } = await freshDisk({ thin: true });
    const list = unmapList([[4, 4]], 24);
    expect(await run(disk, command(unmapCdb(list.length), { out: list }))).toBe(GOOD);
    expect(store.calls.length).toBe(1);
  });
});

const verify10 = (byte1: number, lba: number, n: number) => [0x2f, byte1, ...be(lba, 4), 0, ...be(n, 2), 0];
const verify16 = (byte1: number, lba: number, n: number) => [0x8f, byte1, ...be(lba, 8), ...be(n, 4), 0, 0];

describe('VERIFY', () => {
  it('BYTCHK=0 reads the range, no data-out', async () => {
    const { disk, store } = await freshDisk();
    expect(await run(disk, command(verify10(0, 10, 4)))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'read', offset: 10 * BS, length: 4 * BS });
  });

  it('BYTCHK=0 medium error -> 03/11/00', async () => {
    const { disk, store } = await freshDisk();
    store.failNext('read', 'EIO');
    const cmd = command(verify16(0, 10, 4));
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 3, asc: 0x11, ascq: 0 });
  });

  it('BYTCHK=1 equal data -> GOOD; a difference -> MISCOMPARE with its offset', async () => {
    const { disk, store } = await freshDisk();
    const data = pattern(3);
    data.copy(store.data, 20 * BS);
    expect(await run(disk, command(verify10(0x02, 20, 3), { out: data, split: [700] }))).toBe(GOOD);
    const wrong = Buffer.from(data);
    wrong[1000] ^= 1;
    const cmd = command(verify16(0x02, 20, 3), { out: wrong, split: [700] });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x0e, asc: 0x1d, ascq: 0 });
    expect(cmd.sense[0]).toBe(0xf0); // VALID
    expect(cmd.sense.readUInt32BE(3)).toBe(1000);
  });

  it('BYTCHK=3 compares every block with the single data-out block', async () => {
    const { disk, store } = await freshDisk();
    const block = pattern(1, BS, 5);
    for (let i = 0; i < 4; i++) block.copy(store.data, (30 + i) * BS);
    expect(await run(disk, command(verify10(0x06, 30, 4), { out: block }))).toBe(GOOD);
    store.data[32 * BS + 7] ^= 0xff;
    const cmd = command(verify10(0x06, 30, 4), { out: block });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(cmd.sense.readUInt32BE(3)).toBe(2 * BS + 7);
  });

  it.each([
    ['BYTCHK=2 is reserved', verify10(0x04, 0, 1), 512, 0x24, 1],
    ['past the end', verify10(0, 2047, 2), 0, 0x21, -1],
    ['BYTCHK=1 with short data-out', verify10(0x02, 0, 2), 512, 0x24, 7],
  ])('%s', async (_n, c, out, asc, byte) => {
    const { disk } = await freshDisk();
    const cmd = command(c, { out: Buffer.alloc(out) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc, ascq: 0 });
    if (byte >= 0) expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte });
  });

  it('length 0 verifies nothing', async () => {
    const { disk, store } = await freshDisk();
    expect(await run(disk, command(verify10(0x02, 0, 0)))).toBe(GOOD);
    expect(store.calls).toEqual([]);
  });
});

describe('WRITE AND VERIFY', () => {
  it.each([
    ['(10)', [0x2e, 0x02, ...be(40, 4), 0, 0, 2, 0]],
    ['(16)', [0x8e, 0x00, ...be(40, 8), 0, 0, 0, 2, 0, 0]],
  ])('%s writes with FUA and reads back', async (_n, c) => {
    const { disk, store } = await freshDisk();
    const data = pattern(2, BS, 8);
    expect(await run(disk, command(c, { out: data }))).toBe(GOOD);
    expect(store.data.subarray(40 * BS, 42 * BS).equals(data)).toBe(true);
    expect(store.calls.map((x) => [x.method, x.fua])).toEqual([
      ['write', true],
      ['read', undefined],
    ]);
  });

  it('write failure is reported as a write error', async () => {
    const { disk, store } = await freshDisk();
    store.failNext('write', 'EIO');
    const cmd = command([0x2e, 0x02, ...be(40, 4), 0, 0, 1, 0], { out: Buffer.alloc(BS) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 3, asc: 0x0c, ascq: 0 });
  });
});

const caw = (lba: number, n: number, byte1 = 0) => [0x89, byte1, ...be(lba, 8), 0, 0, 0, n, 0, 0];

describe('COMPARE AND WRITE', () => {
  it('writes when the compare matches', async () => {
    const { disk, store } = await freshDisk();
    const old = pattern(2, BS, 1);
    const next = pattern(2, BS, 2);
    old.copy(store.data, 50 * BS);
    expect(await run(disk, command(caw(50, 2), { out: Buffer.concat([old, next]), split: [1000] }))).toBe(GOOD);
    expect(store.data.subarray(50 * BS, 52 * BS).equals(next)).toBe(true);
  });

  it('miscompare leaves the data alone and reports the offset', async () => {
    const { disk, store } = await freshDisk();
    const old = pattern(1, BS, 1);
    old.copy(store.data, 50 * BS);
    const expected = Buffer.from(old);
    expected[77] ^= 1;
    const cmd = command(caw(50, 1), { out: Buffer.concat([expected, pattern(1, BS, 2)]) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x0e, asc: 0x1d, ascq: 0 });
    expect(cmd.sense.readUInt32BE(3)).toBe(77);
    expect(store.data.subarray(50 * BS, 51 * BS).equals(old)).toBe(true);
  });

  it('is atomic against a concurrent COMPARE AND WRITE and WRITE of the same block', async () => {
    const { disk, store } = await freshDisk({ async: true });
    const a = pattern(1, BS, 1);
    const b = pattern(1, BS, 2);
    const c = pattern(1, BS, 3);
    a.copy(store.data, 0);
    // Both compare against A: exactly one may win; the plain write lands after the lock.
    const first = disk.execute(command(caw(0, 1), { out: Buffer.concat([a, b]) }));
    const second = disk.execute(command(caw(0, 1), { out: Buffer.concat([a, c]) }));
    const results = await Promise.all([first, second]);
    expect(results).toEqual([GOOD, CHECK]);
    expect(store.data.subarray(0, BS).equals(b)).toBe(true);
  });

  it('a WRITE overlapping a held range waits for the COMPARE AND WRITE', async () => {
    const { disk, store } = await freshDisk({ async: true });
    const a = pattern(1, BS, 1);
    a.copy(store.data, 0);
    const cawDone = disk.execute(command(caw(0, 1), { out: Buffer.concat([a, pattern(1, BS, 2)]) }));
    await Promise.resolve();
    const write = disk.execute(command(cdb.write10(0, 1), { out: pattern(1, BS, 9) }));
    expect(await cawDone).toBe(GOOD);
    expect(await write).toBe(GOOD);
    expect(store.data.subarray(0, BS).equals(pattern(1, BS, 9))).toBe(true);
  });

  it.each([
    ['zero blocks is a no-op', caw(0, 0), 0, GOOD, 0],
    ['zero blocks with a data-out (256 wrapped to 0) -> INVALID FIELD IN CDB', caw(0, 0), 512 * BS, CHECK, 0x24],
    ['past the end', caw(2047, 2), 4 * BS, CHECK, 0x21],
    ['short data-out (needs 2N blocks)', caw(0, 2), 3 * BS, CHECK, 0x24],
  ])('%s', async (_n, c, out, status, asc) => {
    const { disk } = await freshDisk();
    const cmd = command(c, { out: Buffer.alloc(out) });
    expect(await run(disk, cmd)).toBe(status);
    if (status === CHECK) expect(sense(cmd)).toEqual({ key: 5, asc, ascq: 0 });
  });

  // SBC-4 5.3: NUMBER OF LOGICAL BLOCKS above the Block Limits VPD's MAXIMUM
  // COMPARE AND WRITE LENGTH -> INVALID FIELD IN CDB, before anything is read or written.
  // [maximum transfer length, advertised maximum, blocks asked, accepted]
  it.each([
    [16, 8, 8, true],
    [16, 8, 9, false],
    [3, 1, 2, false],
    [1024, 255, 255, true],
    [0, 255, 255, true],
  ])('max transfer %i -> MAXIMUM COMPARE AND WRITE LENGTH %i; %i blocks accepted=%s', async (maxTransfer, max, n, ok) => {
    const { disk, store } = await freshDisk({ async: true }, { ...IDENTITY, maxTransferBlocks: maxTransfer });
    const b0 = command([0x12, 0x01, 0xb0, 0, 64, 0], { inLength: 64 });
    expect(await run(disk, b0)).toBe(GOOD);
    expect(dataIn(b0)[5]).toBe(max);
    const old = pattern(n, BS, 1);
    old.copy(store.data, 0);
    const before = Buffer.from(store.data);
    store.calls.length = 0;
    const cmd = command(caw(0, n), { out: Buffer.concat([old, pattern(n, BS, 2)]) });
    if (ok) {
      expect(await run(disk, cmd)).toBe(GOOD);
      expect(store.data.subarray(0, n * BS).equals(pattern(n, BS, 2))).toBe(true);
      return;
    }
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toMatchObject({ sksv: true, cd: true, byte: 13 });
    expect(store.calls).toEqual([]);
    expect(store.data.equals(before)).toBe(true);
  });

  it('FUA bit and WCE=0 force a durable write', async () => {
    const { disk, store } = await freshDisk();
    await run(disk, command(caw(0, 1, 0x08), { out: Buffer.alloc(2 * BS) }));
    expect(store.calls.at(-1)).toMatchObject({ method: 'write', fua: true });
    await run(disk, command(caw(0, 1), { out: Buffer.alloc(2 * BS) }));
    expect(store.calls.at(-1)).toMatchObject({ method: 'write', fua: false });
  });
});

describe('GET LBA STATUS', () => {
  const gls = (lba: number, alloc: number) => [0x9e, 0x12, ...be(lba, 8), ...be(alloc, 4), 0, 0];

  it('reports mapped and deallocated extents from the starting LBA', async () => {
    const { disk, store } = await freshDisk({ thin: true, blocks: 64 });
    for (let i = 10; i < 20; i++) store.deallocated[i] = true;
    const cmd = command(gls(4, 1024), { inLength: 1024 });
    expect(await run(disk, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d.readUInt32BE(0)).toBe(4 + 3 * 16);
    const desc = (i: number) => [Number(d.readBigUInt64BE(8 + 16 * i)), d.readUInt32BE(16 + 16 * i), d[20 + 16 * i]];
    expect([desc(0), desc(1), desc(2)]).toEqual([
      [4, 6, 0],
      [10, 10, 1],
      [20, 44, 0],
    ]);
  });

  it('truncates to the allocation length but reports the full data length', async () => {
    const { disk, store } = await freshDisk({ thin: true, blocks: 64 });
    store.deallocated[1] = true;
    const cmd = command(gls(0, 24), { inLength: 24 });
    expect(await run(disk, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d.length).toBe(24);
    expect(d.readUInt32BE(0)).toBe(4 + 3 * 16);
  });

  it('starting LBA beyond the capacity -> 05/21/00', async () => {
    const { disk } = await freshDisk({ thin: true, blocks: 64 });
    const cmd = command(gls(64, 1024), { inLength: 1024 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x21, ascq: 0 });
  });
});
