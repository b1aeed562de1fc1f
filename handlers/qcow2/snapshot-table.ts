/**
 * The snapshot table (docs/interop/qcow2.txt "Snapshots"): variable-length
 * entries, 8-byte aligned. Unknown extra data is preserved on rewrite.
 */
import type { FileHandle } from 'node:fs/promises';
import { StorageError } from '../../src/backstore/errors.js';
import { readFull } from './file-io.js';

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

export async function readSnapshotTable(fh: FileHandle, offset: number, count: number): Promise<SnapshotEntry[]> {
  const out: SnapshotEntry[] = [];
  let at = offset;
  for (let i = 0; i < count; i++) {
    const fixed = Buffer.alloc(FIXED);
    await readFull(fh, fixed, at);
    const idLen = fixed.readUInt16BE(12);
    const nameLen = fixed.readUInt16BE(14);
    const extraLen = fixed.readUInt32BE(36);
    if (extraLen > 1024) throw new StorageError('ECORRUPT', `qcow2: snapshot ${i} has ${extraLen} bytes of extra data`);
    const rest = Buffer.alloc(extraLen + idLen + nameLen);
    await readFull(fh, rest, at + FIXED);
    const extra = Buffer.from(rest.subarray(0, extraLen));
    const l1Offset = Number(fixed.readBigUInt64BE(0));
    const e: SnapshotEntry = {
      l1Offset,
      l1Size: fixed.readUInt32BE(8),
      dateSec: fixed.readUInt32BE(16),
      dateNsec: fixed.readUInt32BE(20),
      vmClockNs: fixed.readBigUInt64BE(24),
      vmStateSize: extraLen >= 8 ? Number(extra.readBigUInt64BE(0)) : fixed.readUInt32BE(32),
      diskSize: extraLen >= 16 ? Number(extra.readBigUInt64BE(8)) : undefined,
      extra,
      id: rest.toString('utf8', extraLen, extraLen + idLen),
      name: rest.toString('utf8', extraLen + idLen, extraLen + idLen + nameLen),
    };
    out.push(e);
    at += pad8(FIXED + extraLen + idLen + nameLen);
  }
  return out;
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
