/**
 * Guest writes. Clusters whose L2 entry has COPIED (refcount 1) are written
 * in place, runs of them with one pwritev. Any other cluster takes the
 * allocation path:
 *   1. under the metadata lock: make the L2 table writable, allocate a host
 *      cluster (refcount 1 in the cache);
 *   2. outside the lock: write the whole new cluster (old contents from the
 *      shared cluster / compressed data / backing file / zeros, overlaid
 *      with the guest data);
 *   3. under the lock: point the L2 entry at it and queue the old cluster's
 *      free.
 * A guest cluster being allocated is registered in `pendingAlloc`, so a
 * second writer waits instead of allocating twice, and readers keep seeing
 * the old mapping (consistent old data) until step 3.
 *
 * Before a write is acknowledged, the metadata it depends on is in the file
 * (`persistMetadata`): its own allocation (step 4), and for an in-place
 * write the mapping it wrote through, which another command may have
 * created a moment ago and not yet written back. Otherwise a killed daemon
 * would lose acknowledged data that sits in the page cache unreferenced.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { readData, writeData } from './encryption.js';
import type { Qcow2Image } from './image.js';
import { type ClusterEntry, compressedHostClusters, writeL2Normal } from './l2-entry.js';
import { copyFromIov, iovLength, sliceIov } from '../../src/iov.js';
import { readCompressed, readThrough } from './read-path.js';
import { writeCompressedRange } from './compressed-write.js';
import { writeCompression } from './compression-mode.js';
import { noteCompressedFreed } from './auto-compact.js';

/**
 * `persist: false` is for callers that persist once themselves after many
 * calls (zero-path.ts): the metadata then reaches the file before THEIR ack.
 */
export async function writeRange(img: Qcow2Image, offset: number, iov: readonly Buffer[], length: number, persist = true): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  const compress = writeCompression(img);
  if (compress) return writeCompressedRange(img, compress, offset, iov, length, persist);
  const cs = img.clusterSize;
  const jobs: Promise<void>[] = [];
  const inPlaceJobs: Promise<void>[] = [];
  let run: { host: number; at: number; len: number } | undefined;
  const flushRun = () => {
    if (run) {
      const job = observed(inPlace(img, sliceIov(iov, run.at, run.len), run.host));
      jobs.push(job);
      inPlaceJobs.push(job);
    }
    run = undefined;
  };
  let held: HeldHosts | undefined;
  const releaseHeld = () => {
    held?.releaseAfter(inPlaceJobs);
    held = undefined;
  };
  try {
    let at = 0;
    while (at < length) {
      const guest = offset + at;
      const gc = Math.floor(guest / cs);
      const inCluster = guest % cs;
      const len = Math.min(cs - inCluster, length - at);
      // A run's host offsets wait here for the next lookup, which may load a table.
      if (run && !held) held = holdHosts(img);
      const e = img.pendingAlloc.has(gc) ? undefined : await lookupOrSettle(img, gc, jobs, releaseHeld);
      if (e && e.kind === 'normal' && e.copied) {
        const host = e.host + inCluster;
        if (run && run.host + run.len === host) run.len += len;
        else {
          flushRun();
          run = { host, at, len };
        }
      } else {
        flushRun();
        jobs.push(observed(allocatingWrite(img, gc, inCluster, sliceIov(iov, at, len), persist)));
      }
      at += len;
    }
    flushRun();
  } finally {
    releaseHeld();
  }
  // Every mapping used above is at most this new (allocating jobs persist their own).
  const seen = img.metadataGeneration;
  await settleAll(jobs);
  if (persist) await img.persistMetadata(seen);
}

/**
 * A job that may fail while the loop still awaits lookups: mark its
 * rejection handled now (settleAll reports it), or Node would see it as
 * unhandled and exit.
 */
function observed(job: Promise<void>): Promise<void> {
  job.catch(() => {});
  return job;
}

/**
 * The cluster lookup of a multi-cluster write. If it fails mid-range, the
 * writes already started are awaited (their failures observed, never left
 * unhandled) before the lookup's error is reported.
 */
async function lookupOrSettle(img: Qcow2Image, gc: number, started: Promise<void>[], beforeSettle: () => void): Promise<ClusterEntry> {
  try {
    return await img.entryAt(gc);
  } catch (err) {
    // First let flushes go on: an allocating write among `started` may be waiting for the lock a flush holds.
    beforeSettle();
    await Promise.allSettled(started);
    throw err;
  }
}

/** Wait for every job, then rethrow the first failure (no write left running behind an error). */
async function settleAll(jobs: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

interface HeldHosts {
  /** Let flushes release host clusters again once these writes have settled. */
  releaseAfter(jobs: readonly Promise<void>[]): void;
}

/**
 * Host offsets looked up for in-place writes that are not issued yet (a run
 * waiting for the next cluster's lookup). A flush releases freed host
 * clusters only after the writes in `inflightWrites` settle; this entry
 * stands for the writes to come, so a discard and a flush that free such a
 * cluster meanwhile cannot let the allocator hand it out before the late
 * write lands (it would land in another guest cluster's data).
 */
function holdHosts(img: Qcow2Image): HeldHosts {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  img.inflightWrites.add(held);
  return {
    releaseAfter(jobs) {
      void Promise.allSettled(jobs).then(() => {
        img.inflightWrites.delete(held);
        release();
      });
    },
  };
}

function inPlace(img: Qcow2Image, bufs: readonly Buffer[], host: number): Promise<void> {
  try {
    img.guardWrite(host, iovLength(bufs));
  } catch (err) {
    return Promise.reject(err);
  }
  const p = writeData(img, bufs, host);
  img.inflightWrites.add(p);
  return p.finally(() => img.inflightWrites.delete(p));
}

/** Wait until no allocation of guest cluster `gc` is in progress, then claim it. */
export async function claimCluster(img: Qcow2Image, gc: number): Promise<() => void> {
  for (let p = img.pendingAlloc.get(gc); p; p = img.pendingAlloc.get(gc)) await p;
  let release!: () => void;
  img.pendingAlloc.set(gc, new Promise<void>((r) => (release = r)));
  return () => {
    img.pendingAlloc.delete(gc);
    release();
  };
}

/** Queue the release of whatever host space an entry held. */
export function queueFreeEntry(img: Qcow2Image, e: ClusterEntry): void {
  if ((e.kind === 'normal' || e.kind === 'zero') && e.host !== 0) img.refcounts.queueFree(e.host);
  else if (e.kind === 'compressed') {
    for (const c of compressedHostClusters(e, img.clusterSize)) img.refcounts.queueFree(c * img.clusterSize);
    noteCompressedFreed(img, e.compressedSize);
  }
}

/** True if the cluster's current contents are all zeros without reading anything. */
async function readsAsZeros(img: Qcow2Image, gc: number, e: ClusterEntry): Promise<boolean> {
  if (e.kind === 'zero') return true;
  if (e.kind !== 'unallocated') return false;
  return !img.backing || gc * img.clusterSize >= img.backing.size;
}

/** The current contents of guest cluster `gc` (described by `e`) into `buf`. */
async function oldContents(img: Qcow2Image, gc: number, e: ClusterEntry, buf: Buffer): Promise<void> {
  switch (e.kind) {
    case 'normal':
      return readData(img, [buf], e.host);
    case 'compressed':
      (await readCompressed(img, e, false)).copy(buf);
      return;
    case 'zero':
      return; // buf is already zeros
    case 'unallocated':
      return readThrough(img, gc * img.clusterSize, [buf]);
  }
}

async function allocatingWrite(img: Qcow2Image, gc: number, inCluster: number, bufs: readonly Buffer[], persist: boolean): Promise<void> {
  const release = await claimCluster(img, gc);
  try {
    type Plan = { inPlace: number } | { old: ClusterEntry; host: number; pristine: boolean };
    const plan = await img.lock.run(async (): Promise<Plan> => {
      const old = await img.entryAt(gc);
      if (old.kind === 'normal' && old.copied) return { inPlace: old.host };
      await img.writableL2(gc); // allocate/copy the L2 table now, so step 3 cannot fail on space
      const { offset: host, pristine } = await img.refcounts.allocateData();
      await img.relieveCachePressure();
      return { old, host, pristine };
    });
    if ('inPlace' in plan) {
      // Allocated by the writer we waited for: that mapping may not be written back yet.
      const seen = img.metadataGeneration;
      await inPlace(img, bufs, plan.inPlace + inCluster);
      if (persist) await img.persistMetadata(seen);
      return;
    }
    const { old, host, pristine } = plan;
    const cs = img.clusterSize;
    try {
      img.guardWrite(host, cs);
      const len = iovLength(bufs);
      if (inCluster === 0 && len === cs) {
        await writeData(img, bufs, host);
      } else if (pristine && !img.cryptoRegion && (await readsAsZeros(img, gc, old))) {
        // Never-used space past the old end of file: only the guest data needs
        // writing (the metadata write-back extends the file over the rest).
        // Not when encrypted: zero bytes on disk would decrypt to noise.
        await writeData(img, bufs, host + inCluster);
      } else {
        const whole = Buffer.alloc(cs);
        await oldContents(img, gc, old, whole);
        copyFromIov(whole, bufs, inCluster);
        await writeData(img, [whole], host);
      }
    } catch (err) {
      img.refcounts.queueFree(host);
      throw err;
    }
    await img.lock.run(async () => {
      const { table, offset } = await img.writableL2(gc);
      const i = gc % img.l2Entries;
      writeL2Normal(table, i, host, true);
      img.l2Cache.markDirty(offset, i * 8, i * 8 + 8);
      queueFreeEntry(img, old);
    });
  } finally {
    release();
  }
  // 4. the new mapping (and the refcounts / L2 table / L1 entry it needs)
  // reaches the file before the ack; released clusters stay queued frees.
  // Outside the claim: a second writer of this guest cluster may now write
  // in place, and it persists what it saw itself (writeRange).
  if (persist) await img.persistMetadata();
}
