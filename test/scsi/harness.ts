/** Builds ScsiCommands the way the ring engine does, and runs them. */
import type { ScsiCommand } from '../../src/scsi/command.js';
import { ScsiDisk, type DiskIdentity } from '../../src/scsi/index.js';
import { RamStore, type RamStoreOptions } from './ram-store.js';

export const IDENTITY: DiskIdentity = {
  vendor: 'TCMU-TS',
  product: 'test disk',
  revision: '0042',
  serial: 'SERIAL0123',
  naa: '6001405' + '0123456789abcdef0123456789'.slice(0, 25),
  maxTransferBlocks: 1024,
};

export interface CommandOptions {
  /** Data-out bytes (WRITE, MODE SELECT, UNMAP ...). */
  out?: Buffer;
  /** Data-in allocation in bytes (INQUIRY, READ ...). */
  inLength?: number;
  /** Split the iov into buffers of these sizes (the rest goes into a last one). */
  split?: number[];
}

function splitInto(total: Buffer, sizes: number[] | undefined): Buffer[] {
  if (!sizes || sizes.length === 0) return total.length ? [total] : [];
  const out: Buffer[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(total.subarray(at, at + s));
    at += s;
  }
  if (at < total.length) out.push(total.subarray(at));
  return out;
}

export function command(cdb: number[] | Buffer, opts: CommandOptions = {}): ScsiCommand {
  const data = opts.out ? Buffer.from(opts.out) : Buffer.alloc(opts.inLength ?? 0, 0xee);
  const iov = splitInto(data, opts.split);
  return {
    cdb: Buffer.from(cdb),
    iov,
    iovLength: data.length,
    bidiIov: [],
    sense: Buffer.alloc(96, 0xaa),
    dataInLength: 0,
    aborted: false,
  };
}

/** Concatenated data-in, cut at dataInLength (what the command says it produced). */
export function dataIn(cmd: ScsiCommand): Buffer {
  return Buffer.concat(cmd.iov).subarray(0, Math.max(0, cmd.dataInLength));
}

export interface Sense {
  key: number;
  asc: number;
  ascq: number;
}

/** Decode key/asc/ascq from fixed or descriptor sense. */
export function sense(cmd: ScsiCommand): Sense {
  const s = cmd.sense;
  if ((s[0] & 0x7f) === 0x72) return { key: s[1] & 0xf, asc: s[2], ascq: s[3] };
  return { key: s[2] & 0xf, asc: s[12], ascq: s[13] };
}

/** Fixed-format sense-key-specific bytes. */
export function fieldPointer(cmd: ScsiCommand): { sksv: boolean; cd: boolean; bpv: boolean; bit: number; byte: number } {
  const s = cmd.sense;
  return { sksv: (s[15] & 0x80) !== 0, cd: (s[15] & 0x40) !== 0, bpv: (s[15] & 0x08) !== 0, bit: s[15] & 7, byte: s.readUInt16BE(16) };
}

export async function run(disk: ScsiDisk, cmd: ScsiCommand): Promise<number> {
  return await disk.execute(cmd);
}

/** A disk whose power-on unit attention has been consumed. */
export async function freshDisk(opts: RamStoreOptions = {}, identity: DiskIdentity = IDENTITY): Promise<{ disk: ScsiDisk; store: RamStore }> {
  const store = new RamStore(opts);
  const disk = new ScsiDisk(store, identity);
  await run(disk, command([0, 0, 0, 0, 0, 0]));
  return { disk, store };
}

/** CDB builders for the common I/O commands. */
export const cdb = {
  read10: (lba: number, blocks: number, byte1 = 0) => [0x28, byte1, ...be(lba, 4), 0, ...be(blocks, 2), 0],
  write10: (lba: number, blocks: number, byte1 = 0) => [0x2a, byte1, ...be(lba, 4), 0, ...be(blocks, 2), 0],
  read16: (lba: number, blocks: number, byte1 = 0) => [0x88, byte1, ...be(lba, 8), ...be(blocks, 4), 0, 0],
  write16: (lba: number, blocks: number, byte1 = 0) => [0x8a, byte1, ...be(lba, 8), ...be(blocks, 4), 0, 0],
};

/** Big-endian bytes of a number (up to 2^53). */
export function be(value: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) % 256);
  return out;
}

/** A block-sized pattern unique per (block, seed). */
export function pattern(blocks: number, blockSize = 512, seed = 1): Buffer {
  const b = Buffer.alloc(blocks * blockSize);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + seed * 13 + Math.floor(i / blockSize)) & 0xff;
  return b;
}

/**
 * EXTENDED COPY (LID1) of `blocks` blocks from LBA 0 of the LUN named by NAA
 * designator `from` (hex) to LBA 0 of `to`: [CDB, parameter list].
 */
export function xcopy(from: string, to: string, blocks: number): number[][] {
  const cscd = (naa: string) => {
    const d = [0xe4, 0, 0, 0, 0x01, 0x03, 0, 16, ...Buffer.from(naa, 'hex')];
    while (d.length < 32) d.push(0);
    return d;
  };
  const seg = [0x02, 0, 0, 0x18, 0, 0, 0, 1, 0, 0, ...be(blocks, 2), ...be(0, 8), ...be(0, 8)];
  const body = [...cscd(from), ...cscd(to), ...seg];
  const list = [0, 0x18, 0, 64, 0, 0, 0, 0, ...be(seg.length, 4), 0, 0, 0, 0, ...body];
  return [[0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be(list.length, 4), 0, 0], list];
}
