/**
 * WRITE SAME(16) with the UNMAP bit, and UNMAP, over the real handlers
 * (file, qcow2, ram) through ScsiDisk, the way the kernel's commands reach
 * them. SBC-4 4.7.3.4 / 5.50: when the LUN reports LBPRZ (READ CAPACITY(16)
 * byte 14 bit 6, VPD B2), every block of the range reads back as zeros
 * afterwards, whether the handler deallocated it (a whole granule: a qcow2
 * cluster, a file system block, a ram chunk) or wrote zeros (the partial
 * granule at either end). Blocks outside the range keep their data.
 * NUMBER OF LOGICAL BLOCKS 0 is refused per the WSNZ bit the LUN reports.
 */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage } from '../../handlers/qcow2/api.js';
import { openDevConfig } from '../../src/backstore/registry.js';
import type { LunStore } from '../../src/backstore/types.js';
import { ScsiDisk } from '../../src/scsi/index.js';
import { silentLog } from '../backstore/context.js';
import { IDENTITY, be, command, dataIn, fieldPointer, pattern, run, sense } from './harness.js';

const GOOD = 0x00;
const CHECK = 0x02;
const BS = 512;
const SIZE = 4 << 20; // 8192 blocks
const BLOCKS = SIZE / BS;
/** qcow2 cluster (64 KiB = 128 blocks); the largest granule of the three handlers. */
const GRANULE = 128;
/** What each handler deallocates in one piece (ram: its 1 MiB chunks); file: the file system's business. */
const DEALLOCATION_UNIT: Record<string, number> = { qcow2: GRANULE, ram: (1 << 20) / BS };

const dir = mkdtempSync(join(tmpdir(), 'tcmu-ws-unmap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;

/** dev_config of a fresh LUN for each handler, as an admin would write it. */
const handlers: Record<string, () => Promise<string>> = {
  file: async () => {
    const path = join(dir, `f${counter++}.img`);
    writeFileSync(path, '');
    truncateSync(path, SIZE);
    return `file/${path}`;
  },
  qcow2: async () => {
    const path = join(dir, `q${counter++}.qcow2`);
    await createImage(path, { size: SIZE, clusterSize: GRANULE * BS });
    return `qcow2/${path}`;
  },
  ram: async () => 'ram/',
};

async function openLun(handler: string): Promise<{ disk: ScsiDisk; store: LunStore }> {
  const devConfig = await handlers[handler]!();
  const store = await openDevConfig(devConfig, { size: SIZE, blockSize: BS, readOnly: false, log: silentLog });
  const disk = new ScsiDisk(store, IDENTITY);
  await run(disk, command([0, 0, 0, 0, 0, 0])); // power-on unit attention
  return { disk, store };
}

const ws16 = (byte1: number, lba: number, n: number) => [0x93, byte1, ...be(lba, 8), ...be(n, 4), 0, 0];
const UNMAP_BIT = 0x08;
const NDOB_BIT = 0x01;

/** WRITE(16)s of at most the maximum transfer length. */
async function write(disk: ScsiDisk, lba: number, data: Buffer): Promise<void> {
  const step = IDENTITY.maxTransferBlocks! * BS;
  for (let at = 0; at < data.length; at += step) {
    const piece = data.subarray(at, at + step);
    const cmd = command([0x8a, 0, ...be(lba + at / BS, 8), ...be(piece.length / BS, 4), 0, 0], { out: piece });
    expect(await run(disk, cmd)).toBe(GOOD);
  }
}

/** READ(16)s of at most the maximum transfer length. */
async function read(disk: ScsiDisk, lba: number, blocks: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < blocks; at += IDENTITY.maxTransferBlocks!) {
    const n = Math.min(IDENTITY.maxTransferBlocks!, blocks - at);
    const cmd = command([0x88, 0, ...be(lba + at, 8), ...be(n, 4), 0, 0], { inLength: n * BS });
    expect(await run(disk, cmd)).toBe(GOOD);
    parts.push(dataIn(cmd));
  }
  return Buffer.concat(parts);
}

/** LBPRZ from READ CAPACITY(16) (byte 14 bit 6), as Linux reads it. */
async function lbprz(disk: ScsiDisk): Promise<boolean> {
  const cmd = command([0x9e, 0x10, ...be(0, 8), ...be(32, 4), 0, 0], { inLength: 32 });
  expect(await run(disk, cmd)).toBe(GOOD);
  return (dataIn(cmd)[14] & 0x40) !== 0;
}

/** Deallocated blocks of [lba, lba+blocks) per GET LBA STATUS. */
async function deallocated(disk: ScsiDisk, lba: number, blocks: number): Promise<number> {
  const cmd = command([0x9e, 0x12, ...be(lba, 8), ...be(4096, 4), 0, 0], { inLength: 4096 });
  expect(await run(disk, cmd)).toBe(GOOD);
  const d = dataIn(cmd);
  let count = 0;
  for (let at = 8; at + 16 <= 4 + d.readUInt32BE(0) && at + 16 <= d.length; at += 16) {
    const start = Number(d.readBigUInt64BE(at));
    const n = d.readUInt32BE(at + 8);
    if ((d[at + 12] & 0x0f) !== 1) continue;
    const from = Math.max(start, lba);
    const to = Math.min(start + n, lba + blocks);
    if (to > from) count += to - from;
  }
  return count;
}

const isZero = (b: Buffer) => b.every((x) => x === 0);

// [name, first LBA, blocks]: whole granules, partial granules, and ranges straddling both.
const RANGES: [string, number, number][] = [
  ['whole granules', 2 * GRANULE, 4 * GRANULE],
  ['inside one granule', 8 * GRANULE + 5, 37],
  ['partial head and tail around whole granules', 12 * GRANULE - 3, 2 * GRANULE + 10],
  ['one block', 20 * GRANULE + 64, 1],
  ['a whole 1 MiB ram chunk and parts of its neighbours', 2048 - 64, 2048 + 128],
  ['up to the last block', BLOCKS - GRANULE - 7, GRANULE + 7],
];

describe.each(Object.keys(handlers))('%s handler', (handler) => {
  it('reports LBPRZ and WSNZ', async () => {
    const { disk, store } = await openLun(handler);
    expect(await lbprz(disk)).toBe(true);
    const b0 = command([0x12, 0x01, 0xb0, 0, 64, 0], { inLength: 64 });
    expect(await run(disk, b0)).toBe(GOOD);
    expect(dataIn(b0)[4] & 0x01).toBe(1); // WSNZ
    await store.close();
  });

  describe.each([
    ['WRITE SAME(16) UNMAP, zero block', 'ws'],
    ['WRITE SAME(16) UNMAP NDOB', 'ndob'],
    ['UNMAP', 'unmap'],
  ])('%s', (_name, how) => {
    it.each(RANGES)('%s: the range reads back as zeros, the rest is unchanged', async (_r, lba, blocks) => {
      const { disk, store } = await openLun(handler);
      // Data around the range too, so a deallocation that overshoots shows.
      const from = Math.max(0, lba - GRANULE);
      const to = Math.min(BLOCKS, lba + blocks + GRANULE);
      const data = pattern(to - from, BS, 9);
      await write(disk, from, data);
      let cmd;
      if (how === 'unmap') {
        const list = Buffer.alloc(24);
        list.writeUInt16BE(22, 0);
        list.writeUInt16BE(16, 2);
        list.writeBigUInt64BE(BigInt(lba), 8);
        list.writeUInt32BE(blocks, 16);
        cmd = command([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { out: list });
      } else if (how === 'ndob') {
        cmd = command(ws16(UNMAP_BIT | NDOB_BIT, lba, blocks));
      } else {
        cmd = command(ws16(UNMAP_BIT, lba, blocks), { out: Buffer.alloc(BS) });
      }
      expect(await run(disk, cmd)).toBe(GOOD);
      const after = await read(disk, from, to - from);
      const head = (lba - from) * BS;
      const tail = (lba + blocks - from) * BS;
      expect(isZero(after.subarray(head, tail)), 'the range reads as zeros').toBe(true);
      expect(after.subarray(0, head).equals(data.subarray(0, head)), 'data before the range').toBe(true);
      expect(after.subarray(tail).equals(data.subarray(tail)), 'data after the range').toBe(true);
      await store.close();
    });
  });

  it('WRITE SAME(16) UNMAP with a non-zero block writes that block everywhere', async () => {
    const { disk, store } = await openLun(handler);
    const block = pattern(1, BS, 5);
    expect(await run(disk, command(ws16(UNMAP_BIT, 3 * GRANULE, GRANULE + 3), { out: block }))).toBe(GOOD);
    const after = await read(disk, 3 * GRANULE, GRANULE + 3);
    for (let i = 0; i < GRANULE + 3; i++) expect(after.subarray(i * BS, (i + 1) * BS).equals(block)).toBe(true);
    await store.close();
  });

  it.each([
    ['UNMAP', UNMAP_BIT],
    ['UNMAP NDOB', UNMAP_BIT | NDOB_BIT],
  ])('WRITE SAME(16) %s with NUMBER OF LOGICAL BLOCKS 0 (WSNZ=1) -> 05/24/00, nothing changed', async (_n, byte1) => {
    const { disk, store } = await openLun(handler);
    const data = pattern(4, BS, 7);
    await write(disk, 10, data);
    const cmd = command(ws16(byte1, 10, 0), { out: (byte1 & NDOB_BIT) !== 0 ? Buffer.alloc(0) : Buffer.alloc(BS) });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte: 10 });
    expect((await read(disk, 10, 4)).equals(data)).toBe(true);
    await store.close();
  });
});

// The file handler's holes depend on the file system; test/handlers/file checks them.
describe.each(Object.keys(DEALLOCATION_UNIT))('%s handler deallocation', (handler) => {
  it('WRITE SAME(16) UNMAP deallocates the whole granules (GET LBA STATUS)', async () => {
    const g = DEALLOCATION_UNIT[handler]!;
    const { disk, store } = await openLun(handler);
    await write(disk, 0, pattern(4 * g, BS, 3));
    expect(await deallocated(disk, 0, 4 * g)).toBe(0);
    // Granules 1 and 2 whole, plus a partial one at each end: only the whole ones may go.
    expect(await run(disk, command(ws16(UNMAP_BIT, g - 5, 2 * g + 10), { out: Buffer.alloc(BS) }))).toBe(GOOD);
    expect(await deallocated(disk, 0, 4 * g)).toBe(2 * g);
    await store.close();
  });
});
