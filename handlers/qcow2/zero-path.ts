/**
 * Discard and write-zeroes. Whole clusters change only their L2 entry:
 * - no backing file: the entry is cleared (unallocated reads as zeros);
 * - v3 with a backing file: the zero flag (bit 0) hides the backing data;
 * - writeZeroes without unmap on an owned cluster (v3): zero flag keeping
 *   the host cluster as a preallocation;
 * - v2 with a backing file has no way to say "zero": zeros are written.
 * Partial clusters at the edges are written with zeros through the normal
 * write path (unless they already read as zeros). Host clusters released
 * are queued frees (see refcounts.ts).
 *
 * The changed L2 entries reach the file before the command is acknowledged
 * (`persistMetadata`): the LUN reports LBPRZ, so after a daemon restart an
 * acknowledged discard must still read zeros. The frees stay queued until
 * the next flush: a kill in between leaks the clusters, never shares them.
 * A range that already read as zeros is persisted too: the zeros may come
 * from another command's change that is not written back yet.
 */
import type { Extent } from '../../src/backstore/types.js';
import { StorageError } from '../../src/backstore/errors.js';
import { residentZeros } from '../../src/backstore/resident-zeros.js';
import type { Qcow2Image } from './image.js';
import { clearL2, writeL2Zero } from './l2-entry.js';
import { forgetStaged } from './staging.js';
import { claimCluster, queueFreeEntry, writeRange } from './write-path.js';

/** One cluster of zeros per cluster size; page-aligned and resident: they overwrite data in place (resident-zeros.ts). */
const zeroCluster = new Map<number, Buffer>();
function zeros(img: Qcow2Image, size: number): Buffer {
  const cs = img.clusterSize;
  let b = zeroCluster.get(cs);
  if (!b) zeroCluster.set(cs, (b = residentZeros(cs)));
  return size === cs ? b : b.subarray(0, size);
}

export async function zeroRange(img: Qcow2Image, offset: number, length: number, unmap: boolean): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  await zeroInCache(img, offset, length, unmap);
  await img.persistMetadata();
}

async function zeroInCache(img: Qcow2Image, offset: number, length: number, unmap: boolean): Promise<void> {
  const cs = img.clusterSize;
  const end = offset + length;
  const firstFull = Math.ceil(offset / cs);
  const endFull = Math.floor(end / cs);
  if (firstFull >= endFull) {
    // No whole cluster inside: at most two partial pieces, one per cluster.
    const split = Math.min(end, firstFull * cs);
    await zeroPartial(img, offset, split - offset);
    if (split < end) await zeroPartial(img, split, end - split);
    return;
  }
  if (offset < firstFull * cs) await zeroPartial(img, offset, firstFull * cs - offset);
  if (img.version === 2 && img.backing) {
    // No zero flag in v2: zeros must really be written to hide the base.
    // (zeroRange persists once for all of them)
    for (let gc = firstFull; gc < endFull; gc++) await writeRange(img, gc * cs, [zeros(img, cs)], cs, false);
  } else {
    for (let gc = firstFull; gc < endFull; gc++) await zeroWholeCluster(img, gc, unmap);
  }
  if (endFull * cs < end) await zeroPartial(img, endFull * cs, end - endFull * cs);
}

/** Zero part of ONE cluster with real zeros, unless it already reads as zeros. */
async function zeroPartial(img: Qcow2Image, offset: number, length: number): Promise<void> {
  const e = await img.entryAt(Math.floor(offset / img.clusterSize));
  if (e.kind === 'zero' || (e.kind === 'unallocated' && !readsThroughData(img, offset, length))) return;
  await writeRange(img, offset, [zeros(img, length)], length, false);
}

/** An unallocated range reads base data only where the base has bytes. */
function readsThroughData(img: Qcow2Image, offset: number, _length: number): boolean {
  return img.backing !== undefined && offset < img.backing.size;
}

async function zeroWholeCluster(img: Qcow2Image, gc: number, unmap: boolean): Promise<void> {
  const release = await claimCluster(img, gc);
  try {
    await img.lock.run(async () => {
      const old = await img.entryAt(gc);
      const hideBase = readsThroughData(img, gc * img.clusterSize, img.clusterSize);
      const keepPrealloc = !unmap && img.version === 3 && (old.kind === 'normal' || old.kind === 'zero') && old.copied && old.host !== 0;
      if (!keepPrealloc) {
        if (old.kind === 'unallocated' && !hideBase) return;
        if (old.kind === 'zero' && old.host === 0) return;
      }
      const { table, offset } = await img.writableL2(gc);
      const i = gc % img.l2Entries;
      forgetStaged(img, gc); // zeroed: nothing left to compress
      if (keepPrealloc) {
        writeL2Zero(table, i, old.host, true);
      } else {
        if (hideBase) writeL2Zero(table, i, 0, false);
        else clearL2(table, i);
        queueFreeEntry(img, old);
      }
      img.l2Cache.markDirty(offset, i * 8, i * 8 + 8);
      await img.relieveCachePressure();
    });
  } finally {
    release();
  }
}

/** Provisioning state of [offset, offset+length), merged into runs. */
export async function blockStatus(img: Qcow2Image, offset: number, length: number): Promise<Extent[]> {
  const cs = img.clusterSize;
  const out: Extent[] = [];
  let at = offset;
  const end = offset + length;
  while (at < end) {
    const e = await img.entryAt(Math.floor(at / cs));
    const len = Math.min(cs - (at % cs), end - at);
    let state: Extent['state'];
    if (e.kind === 'normal' || e.kind === 'compressed') state = 'mapped';
    else if (e.kind === 'zero') state = e.host !== 0 ? 'zero' : 'deallocated';
    else state = img.backing && at < img.backing.size ? 'mapped' : 'deallocated';
    const last = out[out.length - 1];
    if (last && last.state === state && last.offset + last.length === at) last.length += len;
    else out.push({ offset: at, length: len, state });
    at += len;
  }
  return out;
}
