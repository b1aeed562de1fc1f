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

/**
 * Check and repair run inside the daemon (dirty images are repaired at open)
 * next to LUNs serving I/O: work is done synchronously in slices and the
 * event loop is given back whenever a slice has run for SLICE_MS.
 */
const SLICE_MS = 8;
class Pacer {
  private since = performance.now();
  constructor(private readonly sliceMs = SLICE_MS) {}
  due(): boolean {
    return performance.now() - this.since >= this.sliceMs;
  }
  async yield(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    this.since = performance.now();
  }
}

/** References per host cluster; clusters beyond the end of the file are corruption, never counted. */
class RefMap {
  counts = new Uint32Array(1024);
  constructor(
    private readonly limitClusters: number,
    private readonly onBad: (message: string) => void,
  ) {}
  add(c: number): void {
    if (c >= this.limitClusters) {
      this.onBad(`reference to cluster ${c} beyond the end of the file`);
      return;
    }
    if (c >= this.counts.length) {
      const grown = new Uint32Array(Math.min(this.limitClusters, Math.max(c + 1, this.counts.length * 2)));
      grown.set(this.counts);
      this.counts = grown;
    }
    this.counts[c]!++;
  }
  get(c: number): number {
    return c < this.counts.length ? this.counts[c]! : 0;
  }
}

async function computeReferences(img: Qcow2Image, pace: Pacer, onBad: (message: string) => void): Promise<RefMap> {
  const cs = img.clusterSize;
  const refs = new RefMap(Math.ceil(img.refcounts.allocatedEnd / cs), onBad);
  refs.add(0);
  // qcow2 LUKS: the encryption header's clusters (encryption.ts)
  if (img.cryptoRegion) for (const c of clustersOf(img, img.cryptoRegion.offset, img.cryptoRegion.length)) refs.add(c);
  const rc = img.refcounts;
  for (const c of clustersOf(img, rc.tableOffset, rc.tableClusters * cs)) refs.add(c);
  for (const block of rc.table) if (block) refs.add(block / cs);
  const countTree = async (l1: Buffer) =>
    forEachL2(
      img,
      l1,
      async (_i, l2Offset, table) => {
        refs.add(l2Offset / cs);
        for (const c of referencedDataClusters(img, table, onBad)) refs.add(c);
        if (pace.due()) await pace.yield();
      },
      onBad,
    );
  for (const c of clustersOf(img, img.header.l1TableOffset, img.header.l1Size * 8)) refs.add(c);
  await countTree(img.l1);
  if (img.header.snapshotsOffset !== 0 && img.snapshots.length > 0) {
    const bytes = img.snapshotTableBytes;
    for (const c of clustersOf(img, img.header.snapshotsOffset, bytes)) refs.add(c);
  }
  for (const s of img.snapshots) {
    for (const c of clustersOf(img, s.l1Offset, s.l1Size * 8)) refs.add(c);
    await countTree(await readL1(img, s.l1Offset, s.l1Size));
  }
  return refs;
}

/** Run under the image's lock (the API opens the image privately, so it is). */
export async function checkConsistency(img: Qcow2Image, repair?: 'leaks' | 'all', opts: { sliceMs?: number } = {}): Promise<CheckResult> {
  const res: CheckResult = { corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, copiedFlagErrors: 0, allocatedClusters: 0, messages: [] };
  const note = (m: string) => {
    if (res.messages.length < 50) res.messages.push(m);
  };
  const pace = new Pacer(opts.sliceMs);
  const rc = img.refcounts;
  let badRefs = 0;
  const onBad = (m: string) => {
    badRefs++;
    note(`ERROR ${m}`);
  };
  for (const d of rc.damaged) onBad(d);
  let refs = await computeReferences(img, pace, onBad);
  if (badRefs > 0 && repair) {
    // Repairing refcounts around tables we cannot read would free clusters
    // they may reference: refuse (the image is corrupt; qemu-img check -r all).
    throw img.corrupt(`cannot repair: ${res.messages[0]?.replace(/^ERROR /, '') ?? 'unreadable metadata'}`);
  }
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
          if ((c & 0xffff) === 0 && pace.due()) await pace.yield();
        }
        badRefs = 0;
        res.messages.length = 0;
        refs = await computeReferences(img, pace, onBad);
        if (!created) break;
      }
    } finally {
      rc.reserved = undefined;
    }
  }
  res.corruptions += badRefs;
  const E = rc.entriesPerBlock;
  // Whole refcount blocks are read once and scanned synchronously (no await
  // per entry), in chunks; chunks with no refcounts and no references are skipped.
  const CHUNK = 4096;
  const nBlocks = Math.max(Math.ceil(refs.counts.length / E), rc.table.length);
  for (let b = 0; b < nBlocks; b++) {
    const block = await rc.block(b);
    const lo = b * E;
    if (!block && lo >= refs.counts.length) continue;
    const hi = block ? lo + E : Math.min(lo + E, refs.counts.length);
    for (let start = lo; start < hi; start += CHUNK) {
      const end = Math.min(hi, start + CHUNK);
      if (pace.due()) await pace.yield();
      if (block && start >= refs.counts.length && chunkIsZero(block, start - lo, end - lo, rc.entriesPerBlock)) continue;
      for (let c = start; c < end; c++) {
        // The block may have been replaced in the cache by a repair write: read through rc when repairing.
        const stored = block ? rc.entryOf(block, c - lo) : 0;
        const wanted = refs.get(c);
        if (stored === wanted) {
          if (stored > 0) res.allocatedClusters++;
          continue;
        }
        if (stored < wanted) {
          res.corruptions++;
          note(`ERROR cluster ${c} refcount=${stored} reference=${wanted}`);
          if (repair === 'all') {
            await rc.set(c, wanted);
            res.corruptionsFixed++;
          }
        } else {
          res.leaks++;
          note(`Leaked cluster ${c} refcount=${stored} reference=${wanted}`);
          if (repair) {
            await rc.set(c, wanted);
            res.leaksFixed++;
          }
        }
        if (Math.min(stored, wanted) > 0 || (repair && wanted > 0)) res.allocatedClusters++;
      }
    }
  }
  const flags = await fixCopiedFlags(img, repair !== 'all', () => (pace.due() ? pace.yield() : undefined));
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

const ZERO = Buffer.alloc(8192);
/** True if entries [from, to) of a refcount block are all 0 (a memcmp, not a per-entry decode). */
function chunkIsZero(block: Buffer, from: number, to: number, entriesPerBlock: number): boolean {
  const bitsPer = (block.length * 8) / entriesPerBlock;
  const a = Math.floor((from * bitsPer) / 8);
  const z = Math.ceil((to * bitsPer) / 8);
  for (let at = a; at < z; at += ZERO.length) {
    const n = Math.min(ZERO.length, z - at);
    if (!block.subarray(at, at + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}
