import { describe, expect, it } from 'vitest';
import { IDENTITY, command, dataIn, fieldPointer, freshDisk, run, sense } from './harness.js';
import type { RamStoreOptions } from './ram-store.js';

const GOOD = 0x00;
const CHECK = 0x02;

const inquiry = (evpd: number, page: number, alloc: number) => [0x12, evpd, page, alloc >> 8, alloc & 0xff, 0];

async function vpd(page: number, opts: RamStoreOptions = {}, alloc = 255): Promise<Buffer> {
  const { disk } = await freshDisk(opts);
  const cmd = command(inquiry(1, page, alloc), { inLength: alloc });
  expect(await run(disk, cmd)).toBe(GOOD);
  return Buffer.from(dataIn(cmd));
}

describe('standard INQUIRY', () => {
  it('identifies an SPC-4 disk with command queuing (VERSION 06h, as the in-kernel LIO backstores)', async () => {
    const { disk } = await freshDisk();
    const cmd = command(inquiry(0, 0, 96), { inLength: 96 });
    expect(await run(disk, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d.length).toBe(66);
    expect(cmd.dataInLength).toBe(66);
    expect([d[0], d[1], d[2], d[3], d[4], d[5], d[7]]).toEqual([0x00, 0x00, 0x06, 0x12, 61, 0x08, 0x02]);
    expect(d.toString('ascii', 8, 16)).toBe('TCMU-TS ');
    expect(d.toString('ascii', 16, 32)).toBe('test disk       ');
    expect(d.toString('ascii', 32, 36)).toBe('0042');
    expect([d.readUInt16BE(58), d.readUInt16BE(60), d.readUInt16BE(62)]).toEqual([0x00a0, 0x0460, 0x04c0]); // SAM-5, SPC-4, SBC-3 like LIO
  });

  it.each([
    [36, 36],
    [5, 5],
    [0, 0],
  ])('allocation length %i returns %i bytes', async (alloc, expected) => {
    const { disk } = await freshDisk();
    const cmd = command(inquiry(0, 0, alloc), { inLength: 96 });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(expected);
  });

  it('a small iov bounds the reply even with a larger allocation length', async () => {
    const { disk } = await freshDisk();
    const cmd = command(inquiry(0, 0, 255), { inLength: 36, split: [10, 10] });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(36);
    expect(Buffer.concat(cmd.iov).toString('ascii', 8, 15)).toBe('TCMU-TS');
  });

  it('EVPD=0 with a page code -> 05/24/00 at byte 2', async () => {
    const { disk } = await freshDisk();
    const cmd = command(inquiry(0, 0x80, 255), { inLength: 255 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte: 2, bpv: false });
  });

  it.each([[0x01], [0x86], [0xb3], [0xc0]])('unsupported VPD page 0x%s -> 05/24/00', async (page) => {
    const { disk } = await freshDisk();
    const cmd = command(inquiry(1, page, 255), { inLength: 255 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
  });
});

describe('VPD pages', () => {
  it('0x00 lists the pages (B2 only when thin)', async () => {
    expect([...(await vpd(0x00))]).toEqual([0, 0, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1]);
    expect([...(await vpd(0x00, { thin: true }))]).toEqual([0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
  });

  it('0x80 unit serial number', async () => {
    const d = await vpd(0x80);
    expect([d[1], d.readUInt16BE(2)]).toEqual([0x80, IDENTITY.serial.length]);
    expect(d.toString('ascii', 4)).toBe(IDENTITY.serial);
  });

  it('0x83 NAA 6 and T10 vendor id designators for the logical unit', async () => {
    const d = await vpd(0x83);
    expect(d.readUInt16BE(2)).toBe(d.length - 4);
    expect([d[4], d[5], d[7]]).toEqual([0x01, 0x03, 16]);
    expect(d.subarray(8, 24).toString('hex')).toBe(IDENTITY.naa);
    expect(d[8] >> 4).toBe(6);
    const t10 = 24;
    expect([d[t10], d[t10 + 1], d[t10 + 3]]).toEqual([0x02, 0x01, 8 + IDENTITY.serial.length]);
    expect(d.toString('ascii', t10 + 4, t10 + 12)).toBe('TCMU-TS ');
    expect(d.toString('ascii', t10 + 12)).toBe(IDENTITY.serial);
  });

  it('0x83 with a 16-digit NAA 5 id gives an 8-byte designator', async () => {
    const { disk } = await freshDisk({}, { ...IDENTITY, naa: '5001405abcdef012' });
    const cmd = command(inquiry(1, 0x83, 255), { inLength: 255 });
    expect(await run(disk, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d[7]).toBe(8);
    expect(d.subarray(8, 16).toString('hex')).toBe('5001405abcdef012');
  });

  it('0xB0 block limits, thick', async () => {
    const d = await vpd(0xb0);
    expect(d.length).toBe(64);
    expect(d.readUInt16BE(2)).toBe(0x3c);
    expect(d[4] & 1).toBe(1); // WSNZ
    expect(d[5]).toBe(255); // max COMPARE AND WRITE
    expect(d.readUInt16BE(6)).toBe(8); // 4 KiB granularity in 512-byte blocks
    expect(d.readUInt32BE(8)).toBe(1024); // max transfer = maxTransferBlocks
    expect(d.readUInt32BE(12)).toBe(1024);
    expect(d.readUInt32BE(20)).toBe(0); // no unmap on a thick LUN
    expect(d.readUInt32BE(24)).toBe(0);
    expect(d.readUInt32BE(36)).toBe(0);
    expect(d.readUInt32BE(40)).toBe(1 << 19); // max WRITE SAME length: 256 MiB of 512-byte blocks
  });

  it('0xB0 block limits, thin: unmap counts', async () => {
    const d = await vpd(0xb0, { thin: true });
    expect(d.readUInt32BE(20)).toBe(1 << 20); // max UNMAP LBA count: 512 MiB of 512-byte blocks
    expect(d.readUInt32BE(24)).toBe(256);
    expect(d.readUInt32BE(28)).toBe(8);
  });

  it('0xB0 limits are byte budgets: a 4 KiB-block LUN gets an eighth of the blocks', async () => {
    const d = await vpd(0xb0, { thin: true, blockSize: 4096 });
    expect(d.readUInt32BE(20)).toBe(1 << 17);
    expect(d.readUInt32BE(40)).toBe(1 << 16);
    expect(d.readUInt32BE(28)).toBe(1); // OPTIMAL UNMAP GRANULARITY: one 4 KiB block
  });

  it('0xB0 OPTIMAL UNMAP GRANULARITY follows the store (a 64 KiB qcow2 cluster)', async () => {
    expect((await vpd(0xb0, { thin: true, discardGranularity: 65536 })).readUInt32BE(28)).toBe(128);
    expect((await vpd(0xb0, { thin: true, blockSize: 4096, discardGranularity: 65536 })).readUInt32BE(28)).toBe(16);
  });

  it('0xB1 non-rotating medium', async () => {
    const d = await vpd(0xb1);
    expect([d[1], d.readUInt16BE(2), d.readUInt16BE(4)]).toEqual([0xb1, 0x3c, 1]);
  });

  it('0xB2 logical block provisioning only when thin', async () => {
    const d = await vpd(0xb2, { thin: true });
    expect([...d]).toEqual([0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0]);
    const { disk } = await freshDisk({ thin: false });
    const cmd = command(inquiry(1, 0xb2, 255), { inLength: 255 });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
  });

  it('short allocation truncates a VPD page but keeps its header', async () => {
    const d = await vpd(0xb0, {}, 4);
    expect([...d]).toEqual([0, 0xb0, 0, 0x3c]);
  });
});
