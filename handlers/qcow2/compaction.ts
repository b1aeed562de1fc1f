/**
 * Reclaiming space in compressed images.
 *
 * Host clusters whose payloads are all dead drop to refcount 0 and the
 * allocator hands them out again (refcounts.ts): that reuse needs nothing
 * here. What needs compaction is a PARTLY dead host cluster: a few live
 * payloads keep a whole cluster allocated (read-modify-writes and
 * overwrites leave such clusters behind). Compaction:
 *   0. compresses the clusters staged uncompressed by partial writes
 *      (staging.ts; recompressClusters: claimed and re-stored like a
 *      whole-cluster guest write), so their payloads are placed before the
 *      walk below;
 *   1. walks the active L2 tables and sums, per host cluster, the bytes of
 *      the live compressed payloads in it;
 *   2. moves every guest cluster whose payload touches a host cluster filled
 *      below `threshold` (relocateClusters: the ordinary compressed write
 *      path, so it is exactly as crash-safe as a guest write: new copy
 *      first, L2 switch, old copy freed only after the next fdatasync), in
 *      chunks, with a flush after each chunk so the emptied clusters are
 *      free for the next chunk's payloads (the file does not grow);
 *   3. punches a hole (fallocate) in every host cluster with refcount 0, so
 *      the file's allocated size drops; the hole reads as zeros and the
 *      cluster stays free for the allocator. Punching happens under the
 *      metadata lock and only for refcount-0 clusters: nothing can be
 *      writing there (writers raise the refcount first, under the lock).
 * A kill at any point leaves a consistent image (at worst leaked clusters
 * `tcmu-ts image check --repair-leaks` frees), and so does an abort
 * (`signal`, checked between chunks).
 *
 * It runs offline, or online on a served LUN's open image beside its I/O
 * (api.ts compactOpenImage): moving a cluster claims it as a guest write
 * does, and a moved payload's old place is freed only after the reads that
 * may still use it (read-grace.ts).
 *
 * Images with internal snapshots are refused: their payloads are shared and
 * moving the active copy would free nothing.
 */
import { native } from '../../src/native.js';
import { StorageError } from '../../src/backstore/errors.js';
import { recompressClusters, relocateClusters } from './compressed-write.js';
import type { CompressionType } from './format.js';
import type { Qcow2Image } from './image.js';
import { readL2 } from './l2-entry.js';
import { resetPacking } from './packing.js';
import { stagedClusters } from './staging.js';
import { forEachL2 } from './tree-walk.js';

export interface CompactResult {
  /** Clusters stored uncompressed that were compressed (staged ones; with `recompress: 'all'`, every normal one that shrank). */
  recompressedClusters: number;
  movedClusters: number;
  punchedClusters: number;
  fileBytesAllocatedBefore: number;
  fileBytesAllocatedAfter: number;
}

export interface CompactOptions {
  /** Host clusters filled below this fraction with live payloads are emptied (default 0.85). */
  threshold?: number;
  /** Guest clusters moved between flushes (default 256). */
  chunk?: number;
  /** Stops the compaction between chunks (the image stays consistent: each chunk is a finished guest-like write). */
  signal?: AbortSignal;
  /**
   * Which uncompressed clusters to compress first: 'staged' (the ones
   * staging.ts remembers; what the daemon does), 'all' (every normal cluster
   * the image owns: after an unclean stop, or an image written uncompressed),
   * or none (default).
   */
  recompress?: 'staged' | 'all';
}

/** Per host cluster: live compressed bytes, and the guest clusters whose payloads touch it. */
async function liveBytesByHostCluster(img: Qcow2Image): Promise<Map<number, { live: number; guests: number[] }>> {
  const cs = img.clusterSize;
  const byHost = new Map<number, { live: number; guests: number[] }>();
  await forEachL2(img, img.l1, (l1Index, _off, table) => {
    for (let i = 0; i < img.l2Entries; i++) {
      if (table.readUInt32BE(i * 8) === 0 && table.readUInt32BE(i * 8 + 4) === 0) continue;
      const e = readL2(table, i, img.clusterBits);
      if (e.kind !== 'compressed') continue;
      const gc = l1Index * img.l2Entries + i;
      const end = e.host + e.compressedSize;
      for (let c = Math.floor(e.host / cs); c * cs < end; c++) {
        const inside = Math.min(end, (c + 1) * cs) - Math.max(e.host, c * cs);
        let h = byHost.get(c);
        if (!h) byHost.set(c, (h = { live: 0, guests: [] }));
        h.live += inside;
        h.guests.push(gc);
      }
    }
  });
  return byHost;
}

/** Guest clusters mapped to a normal cluster this image owns alone (copied): what `recompress: 'all'` tries. */
async function ownedNormalClusters(img: Qcow2Image): Promise<number[]> {
  const gcs: number[] = [];
  await forEachL2(img, img.l1, (l1Index, _off, table) => {
    for (let i = 0; i < img.l2Entries; i++) {
      const e = readL2(table, i, img.clusterBits);
      if (e.kind === 'normal' && e.copied) gcs.push(l1Index * img.l2Entries + i);
    }
  });
  return gcs.sort((a, b) => a - b);
}

async function allocatedBytes(img: Qcow2Image): Promise<number> {
  return (await img.fh.stat()).blocks * 512;
}

/** Host clusters looked at per hold of the metadata lock while punching (a served LUN's writes wait that long at most). */
const PUNCH_BATCH = 4096;

/**
 * Punch every refcount-0 cluster among `candidates` (ascending, no
 * repeats). Each batch is checked and punched under one hold of the lock
 * (nothing writes to a free cluster: writers raise the refcount first,
 * under the lock); between batches the lock is let go, so a served LUN's
 * allocations are not held up by a scan of a large file.
 */
async function punchIfFree(img: Qcow2Image, candidates: Iterable<number>, signal?: AbortSignal): Promise<number> {
  const cs = img.clusterSize;
  const n = native();
  const punch = (from: number, to: number) => n.fallocate(img.fh.fd, n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, from * cs, (to - from) * cs);
  const it = candidates[Symbol.iterator]();
  let punched = 0;
  let done = false;
  while (!done) {
    signal?.throwIfAborted();
    punched += await img.lock.run(async () => {
      let count = 0;
      let runStart = -1;
      let prev = -2;
      const endRun = () => {
        if (runStart < 0) return;
        punch(runStart, prev + 1);
        count += prev + 1 - runStart;
        runStart = -1;
      };
      for (let k = 0; k < PUNCH_BATCH; k++) {
        const next = it.next();
        if (next.done) {
          done = true;
          break;
        }
        const c = next.value;
        const free = (await img.refcounts.get(c)) === 0 && !img.meta.conflict(c * cs, cs);
        if (!free || c !== prev + 1) endRun();
        if (free && runStart < 0) runStart = c;
        prev = c;
      }
      endRun();
      return count;
    });
    await new Promise<void>((r) => setImmediate(r)); // long scans let other LUNs run
  }
  return punched;
}

function* clustersOfFile(end: number): Generator<number> {
  for (let c = 1; c < end; c++) yield c; // cluster 0 is the header
}

/** Punch every refcount-0 cluster inside the file. */
async function punchFreeClusters(img: Qcow2Image, signal?: AbortSignal): Promise<number> {
  const end = Math.floor((await img.fh.stat()).size / img.clusterSize);
  return punchIfFree(img, clustersOfFile(end), signal);
}

/** Compress uncompressed guest clusters `gcs` (ascending), `chunk` at a time with a flush after each; abortable between chunks. */
async function recompressInChunks(
  img: Qcow2Image,
  type: CompressionType,
  gcs: readonly number[],
  chunk: number,
  signal: AbortSignal | undefined,
  freedHosts?: number[],
): Promise<number> {
  let recompressed = 0;
  for (let i = 0; i < gcs.length; i += chunk) {
    signal?.throwIfAborted();
    recompressed += await recompressClusters(img, type, gcs.slice(i, i + chunk), freedHosts);
    await img.flush();
  }
  return recompressed;
}

/**
 * The light pass the daemon runs when clusters are staged but too little
 * is reclaimable for a whole compaction: compress the staged clusters
 * (in chunks, a flush after each), then punch out just the clusters they
 * occupied. Work in proportion to what was staged, not to the image size;
 * allowed with internal snapshots (only clusters this image owns alone are
 * touched).
 */
export async function compressStagedClusters(img: Qcow2Image, type: CompressionType, opts: CompactOptions = {}): Promise<CompactResult> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  const chunk = Math.max(1, opts.chunk ?? 256);
  const before = await allocatedBytes(img);
  const candidates = stagedClusters(img);
  const freedHosts: number[] = [];
  const recompressed = await recompressInChunks(img, type, candidates, chunk, opts.signal, freedHosts);
  const cs = img.clusterSize;
  const clusters = [...new Set(freedHosts.map((h) => Math.floor(h / cs)))].sort((a, b) => a - b);
  const punched = await punchIfFree(img, clusters, opts.signal);
  return { recompressedClusters: recompressed, movedClusters: 0, punchedClusters: punched, fileBytesAllocatedBefore: before, fileBytesAllocatedAfter: await allocatedBytes(img) };
}

export async function compactImage(img: Qcow2Image, type: CompressionType, opts: CompactOptions = {}): Promise<CompactResult> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  if (img.snapshots.length > 0) {
    throw new StorageError('EINVAL', `qcow2: ${img.path} has internal snapshots; compaction would free nothing shared with them (delete them first)`);
  }
  const threshold = opts.threshold ?? 0.85;
  const chunk = Math.max(1, opts.chunk ?? 256);
  const before = await allocatedBytes(img);
  let recompressed = 0;
  if (opts.recompress) {
    const candidates = opts.recompress === 'staged' ? stagedClusters(img) : await ownedNormalClusters(img);
    recompressed = await recompressInChunks(img, type, candidates, chunk, opts.signal);
  }
  await img.flush(); // frees queued so far become real first
  const byHost = await liveBytesByHostCluster(img);
  const sparse = new Set<number>();
  for (const h of byHost.values()) if (h.live < threshold * img.clusterSize) for (const g of h.guests) sparse.add(g);
  const guests = [...sparse].sort((a, b) => a - b);
  resetPacking(img); // moved payloads start a fresh host cluster, never the half-dead one being filled
  let moved = 0;
  for (let i = 0; i < guests.length; i += chunk) {
    opts.signal?.throwIfAborted();
    moved += await relocateClusters(img, type, guests.slice(i, i + chunk));
    await img.flush();
  }
  await img.flush();
  const punched = await punchFreeClusters(img, opts.signal);
  return { recompressedClusters: recompressed, movedClusters: moved, punchedClusters: punched, fileBytesAllocatedBefore: before, fileBytesAllocatedAfter: await allocatedBytes(img) };
}
