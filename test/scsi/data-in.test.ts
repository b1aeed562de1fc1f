/**
 * The SCSI layer's half of "never return bytes nobody wrote": every command
 * says exactly how many data-in bytes it produced (ScsiCommand.dataInLength);
 * the ring engine hides the rest (test/tcmu/data-in.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { cdb, command, freshDisk, run } from './harness.js';

const GOOD = 0;

describe('dataInLength is what the command produced', () => {
  it.each([
    ['TEST UNIT READY', [0x00, 0, 0, 0, 0, 0], 4096, 0],
    ['SYNCHRONIZE CACHE(10)', [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4096, 0],
    ['SYNCHRONIZE CACHE(16)', [0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4096, 0],
    ['START STOP UNIT', [0x1b, 0, 0, 0, 1, 0], 512, 0],
    ['READ(10) transfer length 0', cdb.read10(5, 0), 4096, 0],
    ['READ(16) transfer length 0', cdb.read16(5, 0), 4096, 0],
    ['READ(6) 1 block, bigger buffer', [0x08, 0, 0, 1, 1, 0], 4096, 512],
    ['READ(10) 2 blocks, exact buffer', cdb.read10(1, 2), 1024, 1024],
    ['INQUIRY 36 into 4 KiB', [0x12, 0, 0, 0, 36, 0], 4096, 36],
    ['INQUIRY allocation 0', [0x12, 0, 0, 0, 0, 0], 4096, 0],
    ['REQUEST SENSE allocation 0', [0x03, 0, 0, 0, 0, 0], 252, 0],
    ['READ CAPACITY(10)', [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 512, 8],
  ] as [string, number[], number, number][])('%s -> GOOD, %#s', async (_name, bytes, inLength, produced) => {
    const { disk } = await freshDisk();
    const cmd = command(bytes, { inLength });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(produced);
  });

  it('a data-out command declares its whole buffer (the initiator wrote it)', async () => {
    const { disk } = await freshDisk();
    const cmd = command(cdb.write10(0, 1), { out: Buffer.alloc(2048, 7) });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(2048);
  });

  it('a failed READ claims nothing', async () => {
    const { disk, store } = await freshDisk();
    store.failNext('read', 'EIO');
    const cmd = command(cdb.read10(0, 1), { inLength: 4096 });
    expect(await run(disk, cmd)).toBe(2);
    expect(cmd.dataInLength).toBe(0);
  });
});
