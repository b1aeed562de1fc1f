import { describe, expect, it } from 'vitest';
import { ScsiDisk } from '../../src/scsi/index.js';
import { IDENTITY, be, command, dataIn, fieldPointer, freshDisk, run, sense } from './harness.js';
import { RamStore } from './ram-store.js';

const GOOD = 0x00;
const CHECK = 0x02;

describe('opcode decode', () => {
  it.each([
    ['unknown opcode 0x04 (FORMAT UNIT)', [0x04, 0, 0, 0, 0, 0]],
    ['REPORT LUNS (answered by the kernel)', [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]],
    ['vendor opcode 0xc0', [0xc0, 0, 0, 0, 0, 0]],
  ])('%s -> 05/20/00', async (_name, cdb) => {
    const { disk } = await freshDisk();
    const cmd = command(cdb, { inLength: 64 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x20, ascq: 0 });
  });

  it('thin-only commands are unknown opcodes on a thick LUN', async () => {
    const { disk } = await freshDisk({ thin: false });
    const unmapCmd = command([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { out: Buffer.alloc(24) });
    expect(await run(disk, unmapCmd)).toBe(CHECK);
    expect(sense(unmapCmd)).toEqual({ key: 5, asc: 0x20, ascq: 0 });
    const gls = command([0x9e, 0x12, ...be(0, 8), ...be(64, 4), 0, 0], { inLength: 64 });
    expect(await run(disk, gls)).toBe(CHECK);
    expect(sense(gls)).toEqual({ key: 5, asc: 0x20, ascq: 0 });
  });

  it('unknown service action of 0x9E -> 05/24/00 pointing at byte 1 bit 4', async () => {
    const { disk } = await freshDisk();
    const cmd = command([0x9e, 0x1f, ...be(0, 8), ...be(32, 4), 0, 0], { inLength: 32 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toEqual({ sksv: true, cd: true, bpv: true, bit: 4, byte: 1 });
  });

  // Reserved / unsupported bits: CDB -> byte and bit of the field pointer.
  it.each([
    ['READ(10) RDPROTECT=1', [0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], 1, 5],
    ['READ(10) RDPROTECT=7', [0x28, 0xe0, 0, 0, 0, 0, 0, 0, 1, 0], 1, 7],
    ['WRITE(16) WRPROTECT=2', [0x8a, 0x40, ...be(0, 8), ...be(1, 4), 0, 0], 1, 6],
    ['READ(10) obsolete bit 1', [0x28, 0x02, 0, 0, 0, 0, 0, 0, 1, 0], 1, 1],
    ['READ(10) NACA in control byte', [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04], 9, 2],
    ['READ(6) reserved bits of byte 1', [0x08, 0x20, 0, 0, 1, 0], 1, 5],
    ['TEST UNIT READY reserved byte 2', [0x00, 0, 0x10, 0, 0, 0], 2, 4],
    ['INQUIRY CMDDT', [0x12, 0x02, 0, 0, 36, 0], 1, 1],
    ['WRITE SAME(10) ANCHOR', [0x41, 0x10, 0, 0, 0, 0, 0, 0, 1, 0], 1, 4],
    ['SYNCHRONIZE CACHE(10) byte 1 bit 2', [0x35, 0x04, 0, 0, 0, 0, 0, 0, 0, 0], 1, 2],
    ['READ CAPACITY(16) reserved byte 1 bits', [0x9e, 0x30, ...be(0, 8), ...be(32, 4), 0, 0], 1, 5],
    ['COMPARE AND WRITE reserved byte 10', [0x89, 0, ...be(0, 8), 0x01, 0, 0, 1, 0, 0], 10, 0],
    ['RSOC reserved reporting option bit', [0xa3, 0x0c, 0x08, 0, 0, 0, 0, 0, 1, 0, 0, 0], 2, 3],
    ['MODE SENSE(10) reserved byte 4', [0x5a, 0, 0x3f, 0, 0x80, 0, 0, 0, 0xff, 0], 4, 7],
  ])('%s -> 05/24/00 at byte %i bit %i', async (_name, cdb, byte, bit) => {
    const { disk } = await freshDisk();
    const cmd = command(cdb, { inLength: 512 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toEqual({ sksv: true, cd: true, bpv: true, bit, byte });
  });

  it('accepts DPO, FUA and group number bits', async () => {
    const { disk } = await freshDisk();
    const cmd = command([0x28, 0x18, 0, 0, 0, 0, 0x3f, 0, 1, 0], { inLength: 512 });
    expect(await run(disk, cmd)).toBe(GOOD);
  });
});

describe('unit attention', () => {
  it('POWER ON OCCURRED is reported once, then commands succeed', async () => {
    const disk = new ScsiDisk(new RamStore(), IDENTITY);
    const first = command([0, 0, 0, 0, 0, 0]);
    expect(await run(disk, first)).toBe(CHECK);
    expect(sense(first)).toEqual({ key: 6, asc: 0x29, ascq: 0 });
    expect(await run(disk, command([0, 0, 0, 0, 0, 0]))).toBe(GOOD);
  });

  it('INQUIRY is not blocked and does not clear the unit attention', async () => {
    const disk = new ScsiDisk(new RamStore(), IDENTITY);
    expect(await run(disk, command([0x12, 0, 0, 0, 36, 0], { inLength: 36 }))).toBe(GOOD);
    const tur = command([0, 0, 0, 0, 0, 0]);
    expect(await run(disk, tur)).toBe(CHECK);
    expect(sense(tur).asc).toBe(0x29);
  });

  it('REQUEST SENSE returns the unit attention as data and clears it', async () => {
    const disk = new ScsiDisk(new RamStore(), IDENTITY);
    const rs = command([0x03, 0, 0, 0, 18, 0], { inLength: 18 });
    expect(await run(disk, rs)).toBe(GOOD);
    const data = dataIn(rs);
    expect(data[0]).toBe(0x70);
    expect([data[2], data[12], data[13]]).toEqual([6, 0x29, 0]);
    expect(await run(disk, command([0, 0, 0, 0, 0, 0]))).toBe(GOOD);
  });

  it('addUnitAttention is reported once to the next command, in order, without duplicates', async () => {
    const { disk } = await freshDisk();
    disk.addUnitAttention(0x2a, 0x09);
    disk.addUnitAttention(0x2a, 0x09);
    disk.addUnitAttention(0x3f, 0x0e);
    const a = command(be(0, 6));
    expect(await run(disk, a)).toBe(CHECK);
    expect(sense(a)).toEqual({ key: 6, asc: 0x2a, ascq: 0x09 });
    const b = command(be(0, 6));
    expect(await run(disk, b)).toBe(CHECK);
    expect(sense(b)).toEqual({ key: 6, asc: 0x3f, ascq: 0x0e });
    expect(await run(disk, command(be(0, 6)))).toBe(GOOD);
  });

  it('refresh after a resize queues CAPACITY DATA HAS CHANGED and READ CAPACITY sees the new size', async () => {
    const { disk, store } = await freshDisk({ blocks: 100 });
    store.resize(200 * 512);
    disk.refresh();
    const rc = command([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { inLength: 8 });
    expect(await run(disk, rc)).toBe(CHECK);
    expect(sense(rc)).toEqual({ key: 6, asc: 0x2a, ascq: 0x09 });
    const again = command([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { inLength: 8 });
    expect(await run(disk, again)).toBe(GOOD);
    expect(dataIn(again).readUInt32BE(0)).toBe(199);
    disk.refresh(); // unchanged size: no new unit attention
    expect(await run(disk, command(be(0, 6)))).toBe(GOOD);
  });
});
