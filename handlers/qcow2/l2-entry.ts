/**
 * L1/L2 entry encoding (docs/interop/qcow2.txt "Cluster mapping"). Entries are
 * kept as raw big-endian bytes in table Buffers and decoded on demand, in two
 * 32-bit halves so the hot path never touches BigInt (only compressed
 * descriptors, which are rare, do).
 */
import { StorageError } from '../../src/backstore/errors.js';

const HI_COPIED = 0x80000000;
const HI_COMPRESSED = 0x40000000;
/** Bits 32..55 of a host offset live in the low 24 bits of the high word. */
const HI_OFFSET_MASK = 0x00ffffff;
const LO_OFFSET_MASK = 0xfffffe00;

export type ClusterKind = 'unallocated' | 'normal' | 'zero' | 'compressed';

export interface ClusterEntry {
  kind: ClusterKind;
  /** Host offset: data cluster, preallocated zero cluster (0 if none), or compressed data start. */
  host: number;
  /** Refcount is exactly one: may be written in place (only meaningful in the active tree). */
  copied: boolean;
  /** Bytes of compressed data starting at `host` (compressed only). */
  compressedSize: number;
}

export function readL1Offset(table: Buffer, index: number): number {
  const hi = table.readUInt32BE(index * 8);
  const lo = table.readUInt32BE(index * 8 + 4);
  return (hi & HI_OFFSET_MASK) * 2 ** 32 + ((lo & LO_OFFSET_MASK) >>> 0);
}

export function readL1Copied(table: Buffer, index: number): boolean {
  return (table.readUInt32BE(index * 8) & HI_COPIED) !== 0;
}

export function writeL1(table: Buffer, index: number, l2Offset: number, copied: boolean): void {
  writeRaw(table, index, l2Offset, copied, false);
}

function writeRaw(table: Buffer, index: number, offset: number, copied: boolean, zero: boolean): void {
  const hi = Math.floor(offset / 2 ** 32);
  const lo = offset % 2 ** 32;
  table.writeUInt32BE(((hi & HI_OFFSET_MASK) | (copied ? HI_COPIED : 0)) >>> 0, index * 8);
  table.writeUInt32BE(((lo & LO_OFFSET_MASK) | (zero ? 1 : 0)) >>> 0, index * 8 + 4);
}

export function readL2(table: Buffer, index: number, clusterBits: number): ClusterEntry {
  const hi = table.readUInt32BE(index * 8);
  const lo = table.readUInt32BE(index * 8 + 4);
  const copied = (hi & HI_COPIED) !== 0;
  if (hi & HI_COMPRESSED) return readCompressed(table, index, clusterBits, copied);
  const host = (hi & HI_OFFSET_MASK) * 2 ** 32 + ((lo & LO_OFFSET_MASK) >>> 0);
  if (lo & 1) return { kind: 'zero', host, copied, compressedSize: 0 };
  if (host === 0) return { kind: 'unallocated', host: 0, copied, compressedSize: 0 };
  return { kind: 'normal', host, copied, compressedSize: 0 };
}

function readCompressed(table: Buffer, index: number, clusterBits: number, copied: boolean): ClusterEntry {
  if (copied) throw new StorageError('ECORRUPT', `qcow2: compressed L2 entry ${index} has the COPIED flag`);
  const desc = table.readBigUInt64BE(index * 8) & ((1n << 62n) - 1n);
  const x = BigInt(62 - (clusterBits - 8));
  const host = Number(desc & ((1n << x) - 1n));
  const extraSectors = Number(desc >> x);
  const compressedSize = (extraSectors + 1) * 512 - (host % 512);
  return { kind: 'compressed', host, copied: false, compressedSize };
}

export function writeL2Normal(table: Buffer, index: number, host: number, copied: boolean): void {
  writeRaw(table, index, host, copied, false);
}

/** A v3 zero cluster; `host` keeps a preallocation (0 for none). */
export function writeL2Zero(table: Buffer, index: number, host: number, copied: boolean): void {
  writeRaw(table, index, host, copied, true);
}

export function clearL2(table: Buffer, index: number): void {
  table.writeUInt32BE(0, index * 8);
  table.writeUInt32BE(0, index * 8 + 4);
}

/** Set or clear only the COPIED bit of an entry (L1 or L2), keeping the rest. */
export function setCopiedBit(table: Buffer, index: number, copied: boolean): void {
  const hi = table.readUInt32BE(index * 8);
  table.writeUInt32BE((copied ? hi | HI_COPIED : hi & ~HI_COPIED) >>> 0, index * 8);
}

/** Host clusters a compressed cluster's data touches (it may straddle a boundary). */
export function compressedHostClusters(e: ClusterEntry, clusterSize: number): number[] {
  const first = Math.floor(e.host / clusterSize);
  const last = Math.floor((e.host + e.compressedSize - 1) / clusterSize);
  const out: number[] = [];
  for (let c = first; c <= last; c++) out.push(c);
  return out;
}
