/**
 * How long one command of the largest size the Block Limits VPD page
 * advertises takes on the host (no kernel, no VM): ScsiDisk over the real
 * file and qcow2 handlers on a tmp file, 512-byte blocks. Each must finish
 * well inside the kernel's command timeout (TCMU cmd_time_out and the Linux
 * sd timeout are both 30 s) even on a slower disk than this one.
 *   ws-data     WRITE SAME(16), a non-zero block over MAXIMUM WRITE SAME LENGTH
 *               (replicated writes: the worst case; allocates everything)
 *   unmap       UNMAP, one descriptor of MAXIMUM UNMAP LBA COUNT, allocated data
 *   ws-unmap    WRITE SAME(16) UNMAP, zero block, max length, allocated data
 *   ws-zero     WRITE SAME(16) without UNMAP, zero block, max length
 * Usage: node --import tsx scripts/bench-host/block-limits.mts [DIR]
 *   DIR: where the images go (default: the OS tmp dir); ROUNDS (env, 1).
 */
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createImage } from '../../handlers/qcow2/api.js';
import { openDevConfig } from '../../src/backstore/registry.js';
import { ScsiDisk, type ScsiCommand } from '../../src/scsi/index.js';
import { maxUnmapBlocks, maxWriteSameBlocks } from '../../src/scsi/block-limits.js';
import type { LogicalUnit } from '../../src/scsi/logical-unit.js';

const BS = 512;
const ROUNDS = Number(process.env.ROUNDS ?? 1);
// The limits as a LUN of 512-byte blocks advertises them (they only read the block size).
const lu512 = { blockSize: BS } as LogicalUnit;
const MAX_UNMAP_LBA_COUNT = maxUnmapBlocks(lu512);
const MAX_WRITE_SAME_BLOCKS = maxWriteSameBlocks(lu512);
const blocks = Math.max(MAX_UNMAP_LBA_COUNT, MAX_WRITE_SAME_BLOCKS);
const SIZE = blocks * BS;
const log = pino({ level: 'silent' });

function be(value: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) % 256);
  return out;
}

function command(cdb: number[], out: Buffer): ScsiCommand {
  return { cdb: Buffer.from(cdb), iov: out.length ? [out] : [], iovLength: out.length, bidiIov: [], sense: Buffer.alloc(96), dataInLength: 0, aborted: false };
}

async function timed(disk: ScsiDisk, cdb: number[], out: Buffer): Promise<number> {
  const t0 = process.hrtime.bigint();
  const cmd = command(cdb, out);
  const status = await disk.execute(cmd);
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  if (status !== 0) throw new Error(`status ${status}, sense ${cmd.sense.subarray(0, 18).toString('hex')}`);
  return sec;
}

const ws16 = (byte1: number, n: number, lba = 0) => [0x93, byte1, ...be(lba, 8), ...be(n, 4), 0, 0];
function unmapList(n: number): Buffer {
  const list = Buffer.alloc(24);
  list.writeUInt16BE(22, 0);
  list.writeUInt16BE(16, 2);
  list.writeUInt32BE(n, 16);
  return list;
}

async function bench(handler: 'file' | 'qcow2', dir: string): Promise<Record<string, number>> {
  const path = join(dir, `lun.${handler}`);
  rmSync(path, { force: true });
  if (handler === 'qcow2') await createImage(path, { size: SIZE, clusterSize: 65536 });
  else {
    writeFileSync(path, '');
    truncateSync(path, SIZE);
  }
  const store = await openDevConfig(`${handler}/${path}`, { size: SIZE, blockSize: BS, readOnly: false, log });
  const disk = new ScsiDisk(store, { vendor: 'BENCH', product: 'block limits', revision: '1', serial: 'B1', naa: '6001405' + '0'.repeat(25), maxTransferBlocks: 1024 });
  await disk.execute(command([0, 0, 0, 0, 0, 0], Buffer.alloc(0))); // power-on unit attention
  const data = Buffer.alloc(BS, 0x5a);
  const zero = Buffer.alloc(BS);
  const out: Record<string, number> = {};
  out['ws-data'] = await timed(disk, ws16(0, MAX_WRITE_SAME_BLOCKS), data);
  // The rest of the LUN too, so the UNMAP below frees allocated data all along.
  for (let lba = MAX_WRITE_SAME_BLOCKS; lba < blocks; lba += MAX_WRITE_SAME_BLOCKS) {
    await timed(disk, ws16(0, Math.min(MAX_WRITE_SAME_BLOCKS, blocks - lba), lba), data);
  }
  await store.flush();
  out.unmap = await timed(disk, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], unmapList(MAX_UNMAP_LBA_COUNT));
  await store.flush();
  await timed(disk, ws16(0, MAX_WRITE_SAME_BLOCKS), data); // allocate again
  await store.flush();
  out['ws-unmap'] = await timed(disk, ws16(0x08, MAX_WRITE_SAME_BLOCKS), zero);
  await store.flush();
  out['ws-zero'] = await timed(disk, ws16(0, MAX_WRITE_SAME_BLOCKS), zero);
  await store.close();
  rmSync(path, { force: true });
  return out;
}

const dir = mkdtempSync(join(process.argv[2] ?? tmpdir(), 'block-limits-bench-'));
const rows: string[] = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const handler of ['file', 'qcow2'] as const) {
      const r = await bench(handler, dir);
      for (const [job, sec] of Object.entries(r)) rows.push(`${handler.padEnd(6)} ${job.padEnd(9)} ${sec.toFixed(2).padStart(7)} s`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`# one command of the advertised maximum, 512-byte blocks: WRITE SAME ${MAX_WRITE_SAME_BLOCKS} blocks (${(MAX_WRITE_SAME_BLOCKS * BS) / 2 ** 20} MiB), UNMAP ${MAX_UNMAP_LBA_COUNT} blocks (${(MAX_UNMAP_LBA_COUNT * BS) / 2 ** 20} MiB)`);
console.log('handler job         time');
for (const row of rows) console.log(row);
