/**
 * Shared by the `cdb` and `ring` fuzz targets: random and mutated CDBs,
 * initiator buffers, and the checks every completion must pass.
 *
 * Stale data is caught by running every CDB twice, in lockstep, on two
 * identical disks whose data-in buffers start with different canaries
 * (what earlier commands left in the data area: pattern P on one side, its
 * complement on the other). The emulation is deterministic, so any byte
 * the initiator would receive that differs between the two runs came from
 * the canary: a byte nobody wrote.
 */
import { DISK_COMMANDS } from '../../../src/scsi/opcodes.js';
import type { DataDirection } from '../../../src/scsi/command-table.js';
import { cdbLength } from '../../../src/tcmu/ring-layout.js';
import { mutate } from '../lib/mutate.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding } from '../lib/target.js';

export interface CdbCase {
  cdb: Buffer;
  name: string;
  /** What the command table says (undefined: not a known command). */
  specDirection: DataDirection | undefined;
  /** What the initiator gives: data-in buffer, data-out bytes, or nothing. */
  buffer: 'in' | 'out' | 'none';
  length: number;
  out: Buffer | undefined;
  /** iovec split of the buffer (sums to length). */
  split: number[] | undefined;
}

/** Field writers for the common layouts: [lba offset, lba width, length offset, length width] by CDB length. */
const LAYOUT: Record<number, [number, number, number, number]> = {
  6: [2, 2, 4, 1],
  10: [2, 4, 7, 2],
  12: [2, 4, 6, 4],
  16: [2, 8, 10, 4],
};

function writeBe(buf: Buffer, at: number, width: number, value: number): void {
  for (let i = width - 1; i >= 0 && at + i < buf.length; i--) {
    buf[at + i] = value & 0xff;
    value = Math.floor(value / 256);
  }
}

/**
 * A CDB: mostly an opcode the table knows with plausible fields (small LBA
 * and transfer length, bits inside the usage mask), else random bytes,
 * random opcodes, and mutations. `exactLength`: the ring target needs the
 * length the kernel would give the opcode.
 */
export function randomCdb(rng: Rng, exactLength: boolean, capacityBlocks: number): Omit<CdbCase, 'buffer' | 'length' | 'out' | 'split'> {
  const known = rng.chance(0.85);
  const spec = known ? rng.pick(DISK_COMMANDS.all) : undefined;
  const opcode = spec?.opcode ?? rng.below(256);
  const byte7 = opcode === 0x7f ? rng.below(24) : 0;
  let length = cdbLength(opcode, byte7);
  if (!exactLength && rng.chance(0.05)) length = rng.below(33);
  let cdb = Buffer.alloc(length);
  if (length > 0) cdb[0] = opcode;
  if (opcode === 0x7f && length > 7) cdb[7] = byte7;
  if (spec !== undefined && rng.chance(0.9)) {
    for (let i = 1; i < Math.min(length, spec.usage.length); i++) {
      const r = rng.below(8);
      const v = r < 3 ? 0 : r < 5 ? rng.below(4) : r < 6 ? 0xff : rng.below(256);
      cdb[i] = rng.chance(0.9) ? v & spec.usage[i]! : v;
    }
    if (spec.serviceAction !== undefined && length > 1) cdb[1] = (cdb[1]! & 0xe0) | spec.serviceAction;
    const layout = LAYOUT[length];
    if (layout && rng.chance(0.6)) {
      const [lbaAt, lbaWidth, lenAt, lenWidth] = layout;
      writeBe(cdb, lbaAt, lbaWidth, rng.chance(0.9) ? rng.below(capacityBlocks + 2) : rng.u32());
      writeBe(cdb, lenAt, lenWidth, rng.chance(0.9) ? rng.below(17) : rng.u32());
    }
  } else {
    for (let i = 1; i < length; i++) cdb[i] = rng.below(256);
  }
  if (rng.chance(0.15)) {
    const mutated = mutate(rng, cdb, { count: rng.between(1, 3) });
    cdb = exactLength ? Buffer.concat([mutated, Buffer.alloc(length)]).subarray(0, length) : mutated;
    if (exactLength && length > 0) cdb[0] = opcode; // the length follows the opcode
  }
  if (exactLength && opcode === 0x7f && length > 7) cdb[7] = byte7; // so does a variable-length CDB's byte 7
  const found = cdb.length > 0 ? DISK_COMMANDS.lookup(cdb[0]!, cdb.length > 1 ? cdb[1]! : 0) : undefined;
  const resolved = typeof found === 'object' ? found : undefined;
  return { cdb, name: resolved?.name ?? `op-${(cdb[0] ?? 0).toString(16)}`, specDirection: resolved?.direction };
}

/** The initiator's buffer: usually what the command expects, sometimes not (a data-in buffer on TUR, a WRITE given data-in ...). */
export function randomBuffer(rng: Rng, c: Omit<CdbCase, 'buffer' | 'length' | 'out' | 'split'>): CdbCase {
  const d = c.specDirection;
  const roll = rng.below(20);
  let buffer: CdbCase['buffer'];
  if (d === 'in') buffer = roll < 17 ? 'in' : roll < 18 ? 'out' : 'none';
  else if (d === 'out') buffer = roll < 16 ? 'out' : roll < 18 ? 'in' : 'none';
  else buffer = roll < 10 ? 'none' : roll < 18 ? 'in' : 'out';
  const length = buffer === 'none' ? 0 : rng.pick([1, 8, 36, 96, 252, 512, 1024, 4096, 8192, rng.between(1, 16384)]);
  let out: Buffer | undefined;
  if (buffer === 'out') {
    out = rng.bytes(length);
    if (rng.chance(0.3)) out.fill(0, 0, Math.min(length, rng.below(64))); // plausible parameter-list headers
  }
  let split: number[] | undefined;
  if (length > 1 && rng.chance(0.3)) {
    const cut = rng.between(1, length - 1);
    split = [cut, length - cut];
  }
  return { ...c, buffer, length, out, split };
}

/** Data-in canary byte at position i: side 0 pattern, side 1 its complement. */
export function canaryByte(side: 0 | 1, i: number): number {
  const v = (0xa5 ^ (i * 29)) & 0xff;
  return side === 0 ? v : v ^ 0xff;
}

const KEYS = new Set([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xe]);

/** Sense of a CHECK CONDITION: fixed (0x70) or descriptor (0x72, after D_SENSE) format, a real key, an ASC. */
export function checkSense(sense: Buffer, where: string): string {
  const format = sense[0]! & 0x7f;
  let key: number;
  let asc: number;
  let ascq: number;
  if (format === 0x70) {
    if (sense[7]! < 10) throw new FuzzFinding('bad-sense', `${where}: fixed sense with additional length ${sense[7]}`);
    [key, asc, ascq] = [sense[2]! & 0x0f, sense[12]!, sense[13]!];
  } else if (format === 0x72) {
    [key, asc, ascq] = [sense[1]! & 0x0f, sense[2]!, sense[3]!];
  } else {
    throw new FuzzFinding('bad-sense', `${where}: sense response code 0x${sense[0]!.toString(16)}`);
  }
  if (!KEYS.has(key)) throw new FuzzFinding('bad-sense', `${where}: sense key 0x${key.toString(16)} on CHECK CONDITION`);
  if (asc === 0 && ascq === 0) throw new FuzzFinding('bad-sense', `${where}: CHECK CONDITION without an additional sense code`);
  return `${key.toString(16)}/${asc.toString(16).padStart(2, '0')}/${ascq.toString(16).padStart(2, '0')}`;
}

/**
 * The two sides' results for one CDB. `a`/`b`: status and the bytes the
 * initiator receives. A WRITE-like command given a data-in buffer takes the
 * canary as its payload before any completion (TCMU entries carry no
 * direction): known and documented, so both sides got the same canary and
 * the outcome is classed `gap:data-out-given-data-in`.
 */
export function judge(
  c: CdbCase,
  a: { status: number; sense: Buffer; received: Buffer | undefined },
  b: { status: number; sense: Buffer; received: Buffer | undefined },
): string {
  const where = `${c.name} [${c.cdb.toString('hex')}] ${c.buffer} ${c.length}`;
  if (a.status !== b.status) throw new FuzzFinding('nondeterministic', `${where}: status ${a.status} vs ${b.status}`);
  if (a.status !== 0 && a.status !== 2) throw new FuzzFinding('bad-status', `${where}: status 0x${a.status.toString(16)}`);
  if (a.status === 2) return `${c.name}:sense:${checkSense(a.sense, where)}`;
  const ra = a.received ?? Buffer.alloc(0);
  const rb = b.received ?? Buffer.alloc(0);
  if (ra.length !== rb.length) throw new FuzzFinding('stale-data', `${where}: ${ra.length} vs ${rb.length} bytes transferred`);
  for (let i = 0; i < ra.length; i++) {
    if (ra[i] !== rb[i]) throw new FuzzFinding('stale-data', `${where}: transferred byte ${i} of ${ra.length} is the data area's old content`);
  }
  return c.buffer === 'in' && c.specDirection === 'out' ? `${c.name}:gap:data-out-given-data-in` : `${c.name}:good`;
}
