import { describe, expect, it } from 'vitest';
import { be, cdb, command, dataIn, fieldPointer, freshDisk, pattern, run, sense } from './harness.js';

const GOOD = 0x00;
const CHECK = 0x02;
const BS = 512;

describe('READ / WRITE round trips', () => {
  // [name, write CDB, read CDB, lba, blocks]
  const variants: [string, (lba: number, n: number, b1?: number) => number[], (lba: number, n: number) => number[]][] = [
    ['6', (lba, n) => [0x0a, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n & 0xff, 0], (lba, n) => [0x08, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n & 0xff, 0]],
    ['10', cdb.write10, cdb.read10],
    ['12', (lba, n) => [0xaa, 0, ...be(lba, 4), ...be(n, 4), 0, 0], (lba, n) => [0xa8, 0, ...be(lba, 4), ...be(n, 4), 0, 0]],
    ['16', cdb.write16, cdb.read16],
  ];
  it.each(variants)('WRITE(%s) then READ(%s) returns the data', async (_n, write, read) => {
    const { disk, store } = await freshDisk();
    const data = pattern(3);
    expect(await run(disk, command(write(10, 3), { out: data }))).toBe(GOOD);
    expect(store.data.subarray(10 * BS, 13 * BS).equals(data)).toBe(true);
    const rd = command(read(10, 3), { inLength: 3 * BS });
    expect(await run(disk, rd)).toBe(GOOD);
    expect(dataIn(rd).equals(data)).toBe(true);
    expect(rd.dataInLength).toBe(3 * BS);
  });

  it('READ(6) and WRITE(6) transfer length 0 means 256 blocks', async () => {
    const { disk, store } = await freshDisk();
    const data = pattern(256);
    expect(await run(disk, command([0x0a, 0, 0, 0, 0, 0], { out: data }))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'write', offset: 0, length: 256 * BS });
    const rd = command([0x08, 0, 0, 0, 0, 0], { inLength: 256 * BS });
    expect(await run(disk, rd)).toBe(GOOD);
    expect(dataIn(rd).equals(data)).toBe(true);
  });

  it('READ(10)/WRITE(10) length 0 transfers nothing and is GOOD', async () => {
    const { disk, store } = await freshDisk();
    expect(await run(disk, command(cdb.read10(5, 0)))).toBe(GOOD);
    expect(await run(disk, command(cdb.write10(5, 0)))).toBe(GOOD);
    expect(store.calls).toEqual([]);
  });

  it('multi-iov READ passes the iov straight through and fills every buffer', async () => {
    const { disk, store } = await freshDisk();
    const data = pattern(4);
    data.copy(store.data, 100 * BS);
    const rd = command(cdb.read10(100, 4), { inLength: 4 * BS, split: [100, 1000, 48] });
    expect(rd.iov.length).toBe(4);
    expect(await run(disk, rd)).toBe(GOOD);
    expect(Buffer.concat(rd.iov).equals(data)).toBe(true);
    expect(store.calls.at(-1)).toMatchObject({ method: 'read', offset: 100 * BS, length: 4 * BS, iovCount: 4 });
  });

  it('multi-iov WRITE consumes every buffer in order', async () => {
    const { disk, store } = await freshDisk();
    const data = pattern(2, BS, 9);
    expect(await run(disk, command(cdb.write16(7, 2), { out: data, split: [1, 511, 300] }))).toBe(GOOD);
    expect(store.data.subarray(7 * BS, 9 * BS).equals(data)).toBe(true);
  });

  it('an iov larger than the transfer is trimmed; READ reports the residual', async () => {
    const { disk, store } = await freshDisk();
    store.data.fill(0x5a, 0, 2 * BS);
    const rd = command(cdb.read10(0, 1), { inLength: 2 * BS, split: [300] });
    expect(await run(disk, rd)).toBe(GOOD);
    expect(rd.dataInLength).toBe(BS);
    expect(store.calls.at(-1)).toMatchObject({ method: 'read', length: BS, iovCount: 2 });
    expect(Buffer.concat(rd.iov).subarray(BS).every((b) => b === 0xee)).toBe(true);
    const wr = command(cdb.write10(3, 1), { out: pattern(2) });
    expect(await run(disk, wr)).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'write', offset: 3 * BS, length: BS });
  });

  it('works with 4096-byte blocks', async () => {
    const { disk, store } = await freshDisk({ blockSize: 4096, blocks: 64 });
    const data = pattern(2, 4096);
    expect(await run(disk, command(cdb.write10(62, 2), { out: data }))).toBe(GOOD);
    expect(store.data.subarray(62 * 4096).equals(data)).toBe(true);
  });
});

describe('READ / WRITE validation', () => {
  // [name, CDB, iov bytes, sense key, asc, field pointer byte or -1]
  const rows: [string, number[], number, number, number, number][] = [
    ['READ(10) past the end', cdb.read10(2047, 2), 2 * BS, 5, 0x21, -1],
    ['READ(10) LBA beyond capacity', cdb.read10(5000, 1), BS, 5, 0x21, -1],
    ['WRITE(16) huge LBA', cdb.write16(2 ** 52, 1), BS, 5, 0x21, -1],
    ['READ(16) LBA 0xFFFFFFFFFFFFFFFF', [0x88, 0, ...Array(8).fill(0xff), 0, 0, 0, 1, 0, 0], BS, 5, 0x21, -1],
    ['READ(6) past the end', [0x08, 0, 0x07, 0xff, 2, 0], 2 * BS, 5, 0x21, -1],
    ['READ(10) over max transfer length (1024)', cdb.read10(0, 1025), 1025 * BS, 5, 0x24, 7],
    ['READ(10) iov smaller than the transfer', cdb.read10(0, 2), BS, 5, 0x24, 7],
    ['WRITE(10) iov smaller than the transfer', cdb.write10(0, 2), BS + 511, 5, 0x24, 7],
    ['WRITE(16) no iov at all', cdb.write16(0, 1), 0, 5, 0x24, 10],
    ['READ(12) iov smaller', [0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], 3 * BS, 5, 0x24, 6],
  ];
  it.each(rows)('%s', async (_name, c, iovBytes, key, asc, byte) => {
    const { disk, store } = await freshDisk();
    const isWrite = [0x0a, 0x2a, 0xaa, 0x8a].includes(c[0]);
    const cmd = isWrite ? command(c, { out: Buffer.alloc(iovBytes) }) : command(c, { inLength: iovBytes });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key, asc, ascq: 0 });
    if (byte >= 0) expect(fieldPointer(cmd)).toMatchObject({ sksv: true, cd: true, bpv: false, byte });
    expect(store.calls).toEqual([]);
  });

  it('read-only LUN: writes fail 07/27/00, reads work', async () => {
    const { disk, store } = await freshDisk({ readOnly: true });
    const wr = command(cdb.write10(0, 1), { out: Buffer.alloc(BS) });
    expect(await run(disk, wr)).toBe(CHECK);
    expect(sense(wr)).toEqual({ key: 7, asc: 0x27, ascq: 0 });
    expect(store.calls).toEqual([]);
    expect(await run(disk, command(cdb.read10(0, 1), { inLength: BS }))).toBe(GOOD);
  });
});

describe('FUA and write cache', () => {
  it('FUA bit is passed; WCE=1 without FUA is a cached write', async () => {
    const { disk, store } = await freshDisk({ writeCache: true });
    await run(disk, command(cdb.write10(0, 1, 0x08), { out: Buffer.alloc(BS) }));
    expect(store.calls.at(-1)?.fua).toBe(true);
    await run(disk, command(cdb.write10(0, 1, 0x10), { out: Buffer.alloc(BS) })); // DPO only
    expect(store.calls.at(-1)?.fua).toBe(false);
  });

  it('a store without a write cache (WCE=0) gets every write as FUA', async () => {
    const { disk, store } = await freshDisk({ writeCache: false });
    await run(disk, command(cdb.write10(0, 1), { out: Buffer.alloc(BS) }));
    expect(store.calls.at(-1)?.fua).toBe(true);
  });
});

describe('store failures map to sense', () => {
  // [store method, code, CDB kind, expected status, key, asc, ascq]
  const rows: [string, string, 'read' | 'write', number, number, number, number][] = [
    ['read', 'EIO', 'read', CHECK, 3, 0x11, 0],
    ['write', 'EIO', 'write', CHECK, 3, 0x0c, 0],
    ['read', 'ECORRUPT', 'read', CHECK, 3, 0x11, 0],
    ['write', 'ECORRUPT', 'write', CHECK, 3, 0x0c, 0],
    ['write', 'ENOSPC', 'write', CHECK, 7, 0x27, 7],
    ['write', 'EROFS', 'write', CHECK, 7, 0x27, 0],
    ['read', 'ERANGE', 'read', CHECK, 5, 0x21, 0],
    ['read', 'EINVAL', 'read', CHECK, 5, 0x24, 0],
    ['write', 'ENOTSUP', 'write', CHECK, 5, 0x20, 0],
    ['read', 'EMISCOMPARE', 'read', CHECK, 0x0e, 0x1d, 0],
    ['read', 'ETIMEDOUT', 'read', CHECK, 0x0b, 0, 0],
    ['read', 'ECANCELED', 'read', 0x40, -1, -1, -1],
    ['read', 'ESOMETHINGELSE', 'read', CHECK, 3, 0x11, 0],
  ];
  for (const asyncStore of [false, true]) {
    it.each(rows)(`${asyncStore ? 'async' : 'sync'} %s failing %s`, async (method, code, kind, status, key, asc, ascq) => {
      const { disk, store } = await freshDisk({ async: asyncStore });
      store.failNext(method as 'read' | 'write', code);
      const cmd = kind === 'read' ? command(cdb.read10(0, 1), { inLength: BS }) : command(cdb.write10(0, 1), { out: Buffer.alloc(BS) });
      expect(await run(disk, cmd)).toBe(status);
      if (status === CHECK) expect(sense(cmd)).toEqual({ key, asc, ascq });
    });
  }

  it('a synchronous store completes READ without a promise', async () => {
    const { disk } = await freshDisk();
    const result = disk.execute(command(cdb.read10(0, 1), { inLength: BS }));
    expect(result).toBe(GOOD);
  });

  it('an async store completes READ through a promise', async () => {
    const { disk } = await freshDisk({ async: true });
    const result = disk.execute(command(cdb.read10(0, 1), { inLength: BS }));
    expect(result).toBeInstanceOf(Promise);
    expect(await result).toBe(GOOD);
  });
});
