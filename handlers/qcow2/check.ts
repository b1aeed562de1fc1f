/**
 * Consistency check: count every reference the metadata makes (header,
 * refcount structures, L1/L2 tables of the active tree and every snapshot,
 * data and compressed clusters, the snapshot table) and compare with the
 * stored refcounts. stored < referenced is corruption (the cluster could be
 * handed out twice); stored > referenced is a leak (wasted space only).
 * COPIED flags of the active tree that disagree with refcounts count as
 * corruption, as in `qemu-img check`.
 *
 * Repair 'leaks' lowers leaked refcounts; repair 'all' (used for dirty
 * images, where lazy refcounts make refcounts untrustworthy) rewrites every
 * refcount from the references and rebuilds the COPIED flags.
 */
import { fixCopiedFlags } from './copied-flags.js';
import type { Qcow2Image } from './image.js';
import { serializeSnapshotTable } from './snapshot-table.js';
import { clustersOf, forEachL2, readL1, referencedDataClusters } from './tree-walk.js';

export interface CheckResult {
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  /** COPIED flag mismatches (included in corruptions). */
  copiedFlagErrors: number;
  /** Clusters in use (refcount > 0 after any repair). */
  allocatedClusters: number;
  /** One line per problem, capped. */
  messages: string[];
}

class RefMap {
  counts = new Uint32Array(1024);
  add(c: number): void {
    if (c >= this.counts.length) {
      const grown = new Uint32Array(Math.max(c + 1, this.counts.length * 2));
      grown.set(this.counts);
      this.counts = grown;
    }
    this.counts[c]!++;
  }
  get(c: number): number {
    return c < this.counts.length ? this.counts[c]! : 0;
  }
}

async function computeReferences(img: Qcow2Image): Promise<RefMap> {
  const refs = new RefMap();
  const cs = img.clusterSize;
  refs.add(0);
  const rc = img.refcounts;
  for (const c of clustersOf(img, rc.tableOffset, rc.tableClusters * cs)) refs.add(c);
  for (const block of rc.table) if (block) refs.add(block / cs);
  const countTree = async (l1: Buffer) =>
    forEachL2(img, l1, (_i, l2Offset, table) => {
      refs.add(l2Offset / cs);
      for (const c of referencedDataClusters(img, table)) refs.add(c);
    });
  for (const c of clustersOf(img, img.header.l1TableOffset, img.header.l1Size * 8)) refs.add(c);
  await countTree(img.l1);
  if (img.header.snapshotsOffset !== 0 && img.snapshots.length > 0) {
    const bytes = serializeSnapshotTable(img.snapshots).length;
    for (const c of clustersOf(img, img.header.snapshotsOffset, bytes)) refs.add(c);
  }
  for (const s of img.snapshots) {
    for (const c of clustersOf(img, s.l1Offset, s.l1Size * 8)) refs.add(c);
    await countTree(await readL1(img, s.l1Offset, s.l1Size));
  }
  return refs;
}

/** Run under the image's lock (the API opens the image privately, so it is). */
export async function checkConsistency(img: Qcow2Image, repair?: 'leaks' | 'all'): Promise<CheckResult> {
  const res: CheckResult = { corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, copiedFlagErrors: 0, allocatedClusters: 0, messages: [] };
  const note = (m: string) => {
    if (res.messages.length < 50) res.messages.push(m);
  };
  const rc = img.refcounts;
  let refs = await computeReferences(img);
  if (repair === 'all') {
    // Blocks for referenced clusters first; they may add references, so recount.
    rc.reserved = (c) => refs.get(c) > 0;
    try {
      for (let pass = 0; pass < 4; pass++) {
        let created = false;
        for (let c = 0; c < refs.counts.length; c++) {
          if (refs.get(c) > 0 && !rc.table[Math.floor(c / rc.entriesPerBlock)]) {
            await rc.set(c, 0);
            created = true;
          }
        }
        refs = await computeReferences(img);
        if (!created) break;
      }
    } finally {
      rc.reserved = undefined;
    }
  }
  const limit = Math.max(refs.counts.length, 0);
  const E = rc.entriesPerBlock;
  const last = Math.max(limit, rc.coveredClusters);
  for (let c = 0; c < last; c++) {
    if (!rc.table[Math.floor(c / E)] && refs.get(c) === 0) {
      c = (Math.floor(c / E) + 1) * E - 1; // no block, no references: nothing here
      continue;
    }
    const stored = await rc.get(c);
    const wanted = refs.get(c);
    if (stored < wanted) {
      res.corruptions++;
      note(`ERROR cluster ${c} refcount=${stored} reference=${wanted}`);
      if (repair === 'all') {
        await rc.set(c, wanted);
        res.corruptionsFixed++;
      }
    } else if (stored > wanted) {
      res.leaks++;
      note(`Leaked cluster ${c} refcount=${stored} reference=${wanted}`);
      if (repair) {
        await rc.set(c, wanted);
        res.leaksFixed++;
      }
    }
    if (Math.min(stored, wanted) > 0 || (repair && wanted > 0)) res.allocatedClusters++;
  }
  const flags = await fixCopiedFlags(img, repair !== 'all');
  res.copiedFlagErrors = flags;
  res.corruptions += flags;
  if (repair === 'all') res.corruptionsFixed += flags;
  if (flags > 0) note(`${flags} COPIED flag(s) disagree with refcounts`);
  if (repair) {
    await img.writeMetadata();
    await img.fh.datasync();
    rc.resetHint();
  }
  return res;
}
