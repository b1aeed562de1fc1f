/**
 * The snapshot table (docs/interop/qcow2.txt "Snapshots"): variable-length
 * entries, 8-byte aligned. Unknown extra data is preserved on rewrite.
 */
import type { FileHandle } from 'node:fs/promises';
import { StorageError } from '../../src/backstore/errors.js';
import { readFull } from './file-io.js';
import { MAX_HOST_OFFSET, MAX_L1_BYTES, MAX_SNAPSHOT_EXTRA, MAX_SNAPSHOT_TABLE_BYTES } from './format.js';

export interface SnapshotEntry {
  l1Offset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNs: bigint;
  vmStateSize: number;
  /** Virtual disk size when the snapshot was taken (extra data bytes 48-55). */
  diskSize?: number;
  /** The raw extra data, kept so fields we do not know survive a rewrite. */
  extra: Buffer;
}

const FIXED = 40;
/** Extra data we always write: vm_state_size_large + disk_size (v3 requires both). */
const MIN_EXTRA = 16;

const pad8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * Read and validate the snapshot table. The table is read in growing chunks
 * (never more than MAX_SNAPSHOT_TABLE_BYTES, never past the end of the file)
 * and parsed from memory, so a crafted nb_snapshots costs no per-entry I/O.
 * `clusterSize`/`fileSize` bound each snapshot's L1 table.
 */
export async function readSnapshotTable(
  fh: FileHandle,
  offset: number,
  count: number,
  geometry: { clusterSize: number; fileSize: number },
): Promise<{ entries: SnapshotEntry[]; bytes: number }> {
  const out: SnapshotEntry[] = [];
  if (count === 0) return { entries: out, bytes: 0 };
  const { clusterSize, fileSize } = geometry;
  const available = Math.min(MAX_SNAPSHOT_TABLE_BYTES, Math.max(0, fileSize - offset));
  let buf = Buffer.alloc(0);
  /** Make `buf` cover [0, end) of the table, or throw naming what does not fit. */
  const need = async (end: number, what: string) => {
    if (end <= buf.length) return;
    if (end > available) {
      throw corrupt(
        end > MAX_SNAPSHOT_TABLE_BYTES
          ? `snapshot table exceeds the ${MAX_SNAPSHOT_TABLE_BYTES >> 20} MiB limit (at ${what})`
          : `snapshot table runs past the end of the file (at ${what})`,
      );
    }
    const grown = Buffer.alloc(Math.min(available, Math.max(end, buf.length * 2, 64 << 10)));
    buf.copy(grown);
    await readFull(fh, grown.subarray(buf.length), offset + buf.length);
    buf = grown;
  };
  let at = 0;
  for (let i = 0; i < count; i++) {
    await need(at + FIXED, `snapshot ${i}`);
    const fixed = buf.subarray(at, at + FIXED);
    const idLen = fixed.readUInt16BE(12);
    const nameLen = fixed.readUInt16BE(14);
    const extraLen = fixed.readUInt32BE(36);
    if (extraLen > MAX_SNAPSHOT_EXTRA) throw corrupt(`snapshot ${i} extra_data_size ${extraLen} exceeds ${MAX_SNAPSHOT_EXTRA}`);
    await need(at + FIXED + extraLen + idLen + nameLen, `snapshot ${i}`);
    const rest = buf.subarray(at + FIXED, at + FIXED + extraLen + idLen + nameLen);
    const extra = Buffer.from(rest.subarray(0, extraLen));
    const rawL1 = buf.readBigUInt64BE(at);
    const l1Size = fixed.readUInt32BE(8);
    if (rawL1 >= BigInt(MAX_HOST_OFFSET)) throw corrupt(`snapshot ${i} l1_table_offset 0x${rawL1.toString(16)} is beyond the 2^56 offset limit`);
    const l1Offset = Number(rawL1);
    if (l1Offset % clusterSize !== 0) throw corrupt(`snapshot ${i} l1_table_offset 0x${l1Offset.toString(16)} is not cluster aligned`);
    if (l1Size * 8 > MAX_L1_BYTES) throw corrupt(`snapshot ${i} l1_size ${l1Size} exceeds the ${MAX_L1_BYTES >> 20} MiB limit`);
    if (l1Size > 0 && (l1Offset === 0 || l1Offset + l1Size * 8 > fileSize)) {
      throw corrupt(`snapshot ${i} L1 table (l1_table_offset 0x${l1Offset.toString(16)}, l1_size ${l1Size}) lies outside the file`);
    }
    const vmStateLarge = extraLen >= 8 ? extra.readBigUInt64BE(0) : BigInt(fixed.readUInt32BE(32));
    const diskSize = extraLen >= 16 ? extra.readBigUInt64BE(8) : undefined;
    if (vmStateLarge > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`snapshot ${i} vm_state_size ${vmStateLarge} is larger than 2^53`);
    if (diskSize !== undefined && diskSize > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`snapshot ${i} disk_size ${diskSize} is larger than 2^53`);
    const e: SnapshotEntry = {
      l1Offset,
      l1Size,
      dateSec: fixed.readUInt32BE(16),
      dateNsec: fixed.readUInt32BE(20),
      vmClockNs: fixed.readBigUInt64BE(24),
      vmStateSize: Number(vmStateLarge),
      diskSize: diskSize === undefined ? undefined : Number(diskSize),
      extra,
      id: rest.toString('utf8', extraLen, extraLen + idLen),
      name: rest.toString('utf8', extraLen + idLen, extraLen + idLen + nameLen),
    };
    out.push(e);
    at += pad8(FIXED + extraLen + idLen + nameLen);
  }
  return { entries: out, bytes: at };
}

function corrupt(msg: string): StorageError {
  return new StorageError('ECORRUPT', `qcow2: ${msg}`);
}

export function serializeSnapshotTable(entries: readonly SnapshotEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const id = Buffer.from(e.id, 'utf8');
    const name = Buffer.from(e.name, 'utf8');
    const extra = Buffer.alloc(Math.max(MIN_EXTRA, e.extra.length));
    e.extra.copy(extra);
    extra.writeBigUInt64BE(BigInt(e.vmStateSize), 0);
    if (e.diskSize !== undefined) extra.writeBigUInt64BE(BigInt(e.diskSize), 8);
    const buf = Buffer.alloc(pad8(FIXED + extra.length + id.length + name.length));
    buf.writeBigUInt64BE(BigInt(e.l1Offset), 0);
    buf.writeUInt32BE(e.l1Size, 8);
    buf.writeUInt16BE(id.length, 12);
    buf.writeUInt16BE(name.length, 14);
    buf.writeUInt32BE(e.dateSec, 16);
    buf.writeUInt32BE(e.dateNsec, 20);
    buf.writeBigUInt64BE(e.vmClockNs, 24);
    buf.writeUInt32BE(Math.min(e.vmStateSize, 0xffffffff), 32);
    buf.writeUInt32BE(extra.length, 36);
    extra.copy(buf, FIXED);
    id.copy(buf, FIXED + extra.length);
    name.copy(buf, FIXED + extra.length + id.length);
    parts.push(buf);
  }
  return Buffer.concat(parts);
}
