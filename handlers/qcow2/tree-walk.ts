/**
 * Walking an L1 -> L2 -> data tree (the active one or a snapshot's), shared
 * by snapshot refcount updates, COPIED-flag repair and the consistency check.
 * Offsets read from disk are validated here (aligned, inside the file): a
 * bad one is handed to `onBad` (the check reports it) or, without one, is
 * corruption (snapshot operations must not count references to nowhere).
 */
import { readFull } from './file-io.js';
import type { Qcow2Image } from './image.js';
import { compressedHostClusters, readL1Offset, readL2 } from './l2-entry.js';

export type OnBad = (message: string) => void;

function badOffset(img: Qcow2Image, onBad: OnBad | undefined, message: string): void {
  if (!onBad) throw img.corrupt(message);
  onBad(message);
}

/** Host clusters an L2 table references (compressed data may span two; preallocated zero clusters count). */
export function referencedDataClusters(img: Qcow2Image, table: Buffer, onBad?: OnBad): number[] {
  const out: number[] = [];
  const limit = img.refcounts.allocatedEnd;
  for (let i = 0; i < img.l2Entries; i++) {
    // Sparse tables are mostly zero entries: skip them without decoding.
    if (table.readUInt32BE(i * 8) === 0 && table.readUInt32BE(i * 8 + 4) === 0) continue;
    const e = readL2(table, i, img.clusterBits);
    if (e.kind === 'unallocated' || (e.kind === 'zero' && e.host === 0)) continue;
    if (e.host >= limit || (e.kind !== 'compressed' && e.host % img.clusterSize !== 0)) {
      badOffset(img, onBad, `L2 entry ${i}: ${e.kind} cluster offset 0x${e.host.toString(16)} is unaligned or beyond the end of the file`);
      continue;
    }
    if (e.kind === 'compressed') out.push(...compressedHostClusters(e, img.clusterSize));
    else out.push(Math.floor(e.host / img.clusterSize));
  }
  return out;
}

export async function readL1(img: Qcow2Image, offset: number, entries: number): Promise<Buffer> {
  const buf = Buffer.alloc(entries * 8);
  if (entries > 0) await readFull(img.fh, buf, offset);
  return buf;
}

/** Visit every L2 table of an L1 table (through the L2 cache, so dirty tables are seen as they are). */
export async function forEachL2(
  img: Qcow2Image,
  l1: Buffer,
  visit: (l1Index: number, l2Offset: number, table: Buffer) => Promise<void> | void,
  onBad?: OnBad,
): Promise<void> {
  const limit = img.refcounts.allocatedEnd;
  for (let i = 0; i < l1.length / 8; i++) {
    const off = readL1Offset(l1, i);
    if (off === 0) continue;
    if (off % img.clusterSize !== 0 || off >= limit) {
      badOffset(img, onBad, `L1 entry ${i}: L2 table offset 0x${off.toString(16)} is unaligned or beyond the end of the file`);
      continue;
    }
    await visit(i, off, img.l2Cache.peek(off) ?? (await img.l2Cache.get(off)));
  }
}

export function clustersOf(img: Qcow2Image, offset: number, bytes: number): number[] {
  const out: number[] = [];
  const n = Math.ceil(bytes / img.clusterSize);
  for (let i = 0; i < n; i++) out.push(Math.floor(offset / img.clusterSize) + i);
  return out;
}
