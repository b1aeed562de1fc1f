/**
 * Walking an L1 -> L2 -> data tree (the active one or a snapshot's), shared
 * by snapshot refcount updates and the consistency check.
 */
import { readFull } from './file-io.js';
import type { Qcow2Image } from './image.js';
import { compressedHostClusters, readL1Offset, readL2 } from './l2-entry.js';

/** Host clusters an L2 table references (compressed data may span two; preallocated zero clusters count). */
export function referencedDataClusters(img: Qcow2Image, table: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < img.l2Entries; i++) {
    const e = readL2(table, i, img.clusterBits);
    if ((e.kind === 'normal' || e.kind === 'zero') && e.host !== 0) out.push(Math.floor(e.host / img.clusterSize));
    else if (e.kind === 'compressed') out.push(...compressedHostClusters(e, img.clusterSize));
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
): Promise<void> {
  for (let i = 0; i < l1.length / 8; i++) {
    const off = readL1Offset(l1, i);
    if (off === 0) continue;
    await visit(i, off, await img.l2Cache.get(off));
  }
}

export function clustersOf(img: Qcow2Image, offset: number, bytes: number): number[] {
  const out: number[] = [];
  const n = Math.ceil(bytes / img.clusterSize);
  for (let i = 0; i < n; i++) out.push(Math.floor(offset / img.clusterSize) + i);
  return out;
}
