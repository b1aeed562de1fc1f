/**
 * Rebuild the COPIED flags (bit 63) of the active tree from refcounts, as
 * qcow2.txt requires after loading a snapshot and as deleting one makes
 * necessary (clusters that were shared become exclusively ours again).
 * `qemu-img check` counts a wrong flag as corruption, in either direction.
 */
import type { Qcow2Image } from './image.js';
import { readL1Copied, readL2, setCopiedBit } from './l2-entry.js';
import { forEachL2 } from './tree-walk.js';

/** Fix (or only count, with dryRun) COPIED flags of the active tree. Under `lock`. */
export async function fixCopiedFlags(img: Qcow2Image, dryRun = false, between?: () => Promise<void> | undefined): Promise<number> {
  let wrong = 0;
  // Refcounts from cached blocks without an await each (a 2 MiB-cluster L2 table has 262144 entries).
  const refcount = (c: number) => img.refcounts.getCached(c) ?? img.refcounts.get(c);
  await forEachL2(img, img.l1, async (l1Index, l2Offset, table) => {
    await between?.();
    const l2Exclusive = (await refcount(l2Offset / img.clusterSize)) === 1;
    if (readL1Copied(img.l1, l1Index) !== l2Exclusive) {
      wrong++;
      if (!dryRun) {
        setCopiedBit(img.l1, l1Index, l2Exclusive);
        img.l1Dirty = true;
      }
    }
    let changed = false;
    for (let i = 0; i < img.l2Entries; i++) {
      if (table.readUInt32BE(i * 8) === 0 && table.readUInt32BE(i * 8 + 4) === 0) continue; // unallocated, fast
      if ((i & 0x3fff) === 0) await between?.();
      const e = readL2(table, i, img.clusterBits);
      if (e.kind === 'compressed' || e.kind === 'unallocated') continue;
      if (e.kind === 'zero' && e.host === 0) continue; // no host cluster: QEMU does not check the flag
      // Unaligned or beyond the file: corruption the check reports; no refcount to compare with.
      if (e.host % img.clusterSize !== 0 || e.host >= img.refcounts.allocatedEnd) continue;
      const cached = img.refcounts.getCached(e.host / img.clusterSize);
      const exclusive = (cached ?? (await img.refcounts.get(e.host / img.clusterSize))) === 1;
      if (e.copied !== exclusive) {
        wrong++;
        // Also in a shared L2 table: the flag is ignored in inactive trees, and
        // QEMU checks it for every table the active L1 reaches.
        if (!dryRun) {
          setCopiedBit(table, i, exclusive);
          changed = true;
        }
      }
    }
    if (changed) img.l2Cache.markDirty(l2Offset);
  }, () => {
    // An unusable L2 offset: nothing to fix there (the check reports it, lookups refuse it).
  });
  return wrong;
}
