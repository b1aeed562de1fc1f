/**
 * Internal snapshots: create, revert, delete (docs/interop/qcow2.txt
 * "Snapshots"). Each operation flushes first and runs under the metadata
 * lock; the header switch (a single small pwrite) is the commit point:
 * refcount increments are written before it, decrements applied after it.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { fixCopiedFlags } from './copied-flags.js';
import { writeFull } from './file-io.js';
import { HDR_OFF, MAX_SNAPSHOTS } from './format.js';
import type { Qcow2Image } from './image.js';
import { setCopiedBit } from './l2-entry.js';
import { serializeSnapshotTable, type SnapshotEntry } from './snapshot-table.js';
import { clustersOf, forEachL2, readL1, referencedDataClusters } from './tree-walk.js';

export interface SnapshotInfo {
  id: string;
  name: string;
  date: string;
  vmStateSize: number;
  diskSize?: number;
}

export function listSnapshots(img: Qcow2Image): SnapshotInfo[] {
  return img.snapshots.map((s) => ({
    id: s.id,
    name: s.name,
    date: new Date(s.dateSec * 1000 + Math.floor(s.dateNsec / 1e6)).toISOString(),
    vmStateSize: s.vmStateSize,
    diskSize: s.diskSize,
  }));
}

function find(img: Qcow2Image, name: string): SnapshotEntry {
  const s = img.snapshots.find((x) => x.name === name) ?? img.snapshots.find((x) => x.id === name);
  if (!s) throw new StorageError('EINVAL', `qcow2: no snapshot named '${name}'`);
  return s;
}

/** Every cluster of a tree (L2 tables and what they reference), for +1/-1. */
async function treeClusters(img: Qcow2Image, l1: Buffer): Promise<number[]> {
  const out: number[] = [];
  await forEachL2(img, l1, (_i, l2Offset, table) => {
    out.push(l2Offset / img.clusterSize, ...referencedDataClusters(img, table));
  });
  return out;
}

/** Refuse before changing anything if one more reference would overflow a refcount (narrow refcount_bits). */
async function assertNoOverflow(img: Qcow2Image, clusters: number[]): Promise<void> {
  const tally = new Map<number, number>();
  for (const c of clusters) tally.set(c, (tally.get(c) ?? 0) + 1);
  for (const [c, n] of tally) {
    if ((await img.refcounts.get(c)) + n > img.refcounts.maxRefcount) {
      throw new StorageError('ENOSPC', `qcow2: snapshot would overflow the ${img.header.refcountOrder}-order refcount of cluster ${c}`);
    }
  }
}

async function allocateAndWrite(img: Qcow2Image, data: Buffer): Promise<number> {
  if (data.length === 0) return 0;
  const at = await img.refcounts.allocate(Math.ceil(data.length / img.clusterSize));
  await writeFull(img.fh, data, at);
  return at;
}

/** Replace the snapshot table on disk (commit point: the header pwrite). */
async function writeSnapshotTable(img: Qcow2Image, entries: SnapshotEntry[]): Promise<void> {
  const table = serializeSnapshotTable(entries);
  const oldOffset = img.header.snapshotsOffset;
  const oldBytes = img.snapshotTableBytes;
  const at = await allocateAndWrite(img, table);
  await img.refcounts.cache.writeDirty();
  const hdr = Buffer.alloc(12);
  hdr.writeUInt32BE(entries.length, 0);
  hdr.writeBigUInt64BE(BigInt(at), 4);
  await writeFull(img.fh, hdr, HDR_OFF.nbSnapshots);
  img.header.nbSnapshots = entries.length;
  img.header.snapshotsOffset = at;
  img.snapshots = entries;
  img.snapshotTableBytes = table.length;
  if (oldOffset !== 0) for (const c of clustersOf(img, oldOffset, oldBytes)) img.refcounts.queueFree(c * img.clusterSize);
}

export async function createSnapshot(img: Qcow2Image, name: string): Promise<SnapshotInfo> {
  if (img.readOnly) throw new StorageError('EROFS', 'qcow2: image is read-only');
  if (img.snapshots.some((s) => s.name === name)) throw new StorageError('EINVAL', `qcow2: snapshot '${name}' already exists`);
  if (img.snapshots.length >= MAX_SNAPSHOTS) throw new StorageError('ENOSPC', `qcow2: ${img.path} already has ${MAX_SNAPSHOTS} snapshots`);
  await img.flush();
  await img.lock.run(async () => {
    const copy = Buffer.from(img.l1);
    for (let i = 0; i < copy.length / 8; i++) setCopiedBit(copy, i, false);
    const tree = await treeClusters(img, img.l1);
    await assertNoOverflow(img, tree);
    const l1Offset = await allocateAndWrite(img, copy);
    for (const c of tree) await img.refcounts.add(c, 1);
    // Everything reachable is now shared: no entry may keep COPIED.
    await fixCopiedFlags(img);
    await img.writeMetadata();
    const now = Date.now();
    const nextId = Math.max(0, ...img.snapshots.map((s) => Number(s.id) || 0)) + 1;
    const entry: SnapshotEntry = {
      l1Offset,
      l1Size: img.header.l1Size,
      id: String(nextId),
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1e6,
      vmClockNs: 0n,
      vmStateSize: 0,
      diskSize: img.size,
      extra: Buffer.alloc(16),
    };
    await writeSnapshotTable(img, [...img.snapshots, entry]);
    img.rebuildMetadataMap();
  });
  await img.flush();
  return listSnapshots(img).find((s) => s.name === name)!;
}

export async function revertSnapshot(img: Qcow2Image, name: string): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', 'qcow2: image is read-only');
  const snap = find(img, name);
  await img.flush();
  await img.lock.run(async () => {
    const snapL1 = await readL1(img, snap.l1Offset, snap.l1Size);
    const size = snap.diskSize ?? img.size;
    const needed = Math.ceil(size / (img.clusterSize * img.l2Entries));
    const l1 = Buffer.alloc(Math.max(snap.l1Size, needed) * 8);
    snapL1.copy(l1);
    const oldTree = await treeClusters(img, img.l1);
    const newTree = await treeClusters(img, l1);
    await assertNoOverflow(img, newTree);
    for (const c of newTree) await img.refcounts.add(c, 1);
    const l1Offset = await allocateAndWrite(img, l1);
    await img.writeMetadata();
    const hdr = Buffer.alloc(24);
    hdr.writeBigUInt64BE(BigInt(size), 0);
    hdr.writeUInt32BE(img.header.cryptMethod, 8);
    hdr.writeUInt32BE(l1.length / 8, 12);
    hdr.writeBigUInt64BE(BigInt(l1Offset), 16);
    await writeFull(img.fh, hdr, HDR_OFF.size);
    const oldL1 = clustersOf(img, img.header.l1TableOffset, img.l1.length);
    img.header.size = size;
    img.header.l1Size = l1.length / 8;
    img.header.l1TableOffset = l1Offset;
    img.l1 = l1;
    img.l1Dirty = false;
    // The old tree is unreachable on disk from here: drop its references now.
    await img.refcounts.applyFrees([...oldTree, ...oldL1]);
    await fixCopiedFlags(img);
    img.rebuildMetadataMap();
  });
  await img.flush();
}

export async function deleteSnapshot(img: Qcow2Image, name: string): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', 'qcow2: image is read-only');
  const snap = find(img, name);
  await img.flush();
  await img.lock.run(async () => {
    const snapL1 = await readL1(img, snap.l1Offset, snap.l1Size);
    const tree = await treeClusters(img, snapL1);
    await writeSnapshotTable(img, img.snapshots.filter((s) => s !== snap));
    const frees = [...tree, ...clustersOf(img, snap.l1Offset, snap.l1Size * 8), ...img.refcounts.takeQueuedFrees()];
    // The old snapshot table and this tree are unreachable once the header is written.
    await img.refcounts.applyFrees(frees);
    await fixCopiedFlags(img);
    img.rebuildMetadataMap();
  });
  await img.flush();
}
