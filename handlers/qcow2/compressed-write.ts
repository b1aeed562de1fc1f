/**
 * Guest writes on a LUN opened with `compress=zlib|zstd`.
 *
 * Policy (docs/ADMIN.md "Compressed LUNs"; numbers in docs/COMPRESSION.md):
 * - a write covering whole clusters: they are compressed (worker threads,
 *   one batch per command) and packed densely (packing.ts);
 * - a write covering PART of a cluster: read-modify-write. The cluster's
 *   current contents (decompressed, off the event loop, in the same batch as
 *   the rest of the command) are overlaid with the guest data. With
 *   `partial_writes=stage` (the default with automatic compaction) the
 *   merged cluster is stored uncompressed in a new place and compaction
 *   compresses it later, once for a whole burst of small writes
 *   (staging.ts); with `recompress` (or past the staging limit) it is
 *   compressed again at once. Either way the old payload is freed, and the
 *   image never silently turns into an uncompressed one;
 * - a cluster whose compressed form is not smaller than the cluster is
 *   stored uncompressed (a normal cluster); later partial writes to such a
 *   cluster go in place (its data was incompressible), a later whole-cluster
 *   write tries compression again;
 * - a cluster that ends up all zeros is not stored: unallocated (no backing
 *   file), or the v3 zero flag (over a backing file).
 *
 * Ordering and crash safety are the plain write path's (write-path.ts):
 * every guest cluster of the command is claimed (in ascending order, so two
 * commands never wait on each other in a cycle), host space is reserved and
 * the L2 tables made writable under the lock, the payloads are written
 * outside it (contiguous payloads with one pwritev), then under the lock the
 * L2 entries switch to them and the old host space is queued for release
 * (applied after the next fdatasync, refcounts.ts). Readers see the old
 * mapping until the switch. The metadata reaches the file before the ack.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { copyFromIov, sliceIov } from '../../src/iov.js';
import { compressClusters, type Compressed } from './compress-pool.js';
import { readvFull, writevFull } from './file-io.js';
import type { CompressionType } from './format.js';
import type { Qcow2Image } from './image.js';
import { type ClusterEntry, clearL2, writeL2Normal, writeL2Zero } from './l2-entry.js';
import { payloadClusters, reservePayload, writeL2Compressed } from './packing.js';
import { readCompressed, readThrough } from './read-path.js';
import { forgetStaged, mayStage, noteStaged } from './staging.js';
import { claimCluster, queueFreeEntry } from './write-path.js';

/** One guest cluster touched by the command. */
interface Piece {
  gc: number;
  inCluster: number;
  /** Where its bytes are in the command's iov. */
  at: number;
  len: number;
  old: ClusterEntry;
  /** Whole new cluster contents (undefined for in-place pieces). */
  contents?: Buffer;
  /** Stored uncompressed for now, compressed by the next compaction (staging.ts). */
  stage?: boolean;
  result?: Compressed;
  target?: { kind: 'compressed'; host: number; len: number } | { kind: 'normal'; host: number } | { kind: 'drop' };
}

/** Counters for `tcmu-ts status` / benchmarks: what the write path did since open. */
export interface CompressWriteStats {
  wholeClusters: number;
  readModifyWrites: number;
  /** Partial writes stored uncompressed for later compression (a subset of readModifyWrites). */
  staged: number;
  /** Clusters compressed later by compaction (staging.ts). */
  recompressed: number;
  storedRaw: number;
  zeroClusters: number;
  bytesIn: number;
  bytesStored: number;
}
const stats = new WeakMap<Qcow2Image, CompressWriteStats>();
export function compressWriteStats(img: Qcow2Image): CompressWriteStats {
  let s = stats.get(img);
  if (!s) stats.set(img, (s = { wholeClusters: 0, readModifyWrites: 0, staged: 0, recompressed: 0, storedRaw: 0, zeroClusters: 0, bytesIn: 0, bytesStored: 0 }));
  return s;
}

export async function writeCompressedRange(
  img: Qcow2Image,
  type: CompressionType,
  offset: number,
  iov: readonly Buffer[],
  length: number,
  persist: boolean,
): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  if (length === 0) return;
  const cs = img.clusterSize;
  const first = Math.floor(offset / cs);
  const last = Math.floor((offset + length - 1) / cs);
  const releases: Array<() => void> = [];
  try {
    for (let gc = first; gc <= last; gc++) releases.push(await claimCluster(img, gc));
    const pieces: Piece[] = [];
    for (let gc = first, at = 0; gc <= last; gc++) {
      const inCluster = gc === first ? offset % cs : 0;
      const len = Math.min(cs - inCluster, length - at);
      pieces.push({ gc, inCluster, at, len, old: await img.entryAt(gc) });
      at += len;
    }
    await buildContents(img, pieces, iov);
    await writeInPlace(img, pieces, iov);
    const fresh = pieces.filter((p) => p.contents);
    if (fresh.length > 0) await storeCompressed(img, type, fresh);
  } finally {
    for (const release of releases) release();
  }
  if (persist) await img.persistMetadata();
}

/**
 * Compaction's move: re-store guest clusters `gcs` (ascending) that are
 * still compressed, exactly as a guest write of their own contents would
 * (claimed, so a guest write to one of them waits or goes first; new place;
 * old payload freed after the next flush). Returns how many moved.
 */
export async function relocateClusters(img: Qcow2Image, type: CompressionType, gcs: readonly number[]): Promise<number> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  const releases: Array<() => void> = [];
  try {
    for (const gc of gcs) releases.push(await claimCluster(img, gc));
    const pieces: Piece[] = [];
    for (const gc of gcs) {
      const old = await img.entryAt(gc);
      if (old.kind === 'compressed') pieces.push({ gc, inCluster: 0, at: 0, len: 0, old });
    }
    await Promise.all(
      pieces.map(async (p) => {
        p.contents = await readCompressed(img, p.old, false);
      }),
    );
    if (pieces.length > 0) await storeCompressed(img, type, pieces);
    return pieces.length;
  } finally {
    for (const release of releases) release();
  }
}

/**
 * Compaction's first step: compress guest clusters `gcs` (ascending) that
 * are still normal clusters this image owns (staged ones, staging.ts), as a
 * whole-cluster guest write of their own contents would: claimed, so an
 * in-place guest write to one of them waits or goes first (every write of a
 * compress= LUN claims its clusters); new place; old cluster freed after
 * the next flush and after the reads that may still use it. A cluster that
 * does not shrink stays where it is. Returns how many got a new place (their
 * old host offsets are added to `freedHosts`).
 */
export async function recompressClusters(img: Qcow2Image, type: CompressionType, gcs: readonly number[], freedHosts?: number[]): Promise<number> {
  if (img.readOnly) throw new StorageError('EROFS', `qcow2: ${img.path} is read-only`);
  const cs = img.clusterSize;
  const releases: Array<() => void> = [];
  try {
    for (const gc of gcs) releases.push(await claimCluster(img, gc));
    const pieces: Piece[] = [];
    for (const gc of gcs) {
      forgetStaged(img, gc);
      if (gc * cs >= img.size) continue; // a snapshot revert made the disk smaller since
      const old = await img.entryAt(gc);
      if (old.kind === 'normal' && old.copied) pieces.push({ gc, inCluster: 0, at: 0, len: 0, old, contents: Buffer.allocUnsafe(cs) });
    }
    await Promise.all(pieces.map((p) => readvFull(img.fh, [p.contents!], p.old.host)));
    const results = await compressClusters(type, cs, pieces.map((p) => p.contents!));
    pieces.forEach((p, i) => (p.result = results[i]));
    // Zeros that cannot be dropped (a v2 image over a backing file) would only move to another normal cluster.
    const shrunk = pieces.filter((p) => (p.result!.zero && canDrop(img, p.gc)) || p.result!.data);
    if (shrunk.length > 0) await placePieces(img, shrunk);
    for (const p of shrunk) freedHosts?.push(p.old.host);
    compressWriteStats(img).recompressed += shrunk.length;
    return shrunk.length;
  } finally {
    for (const release of releases) release();
  }
}

/** An all-zero cluster can go unstored: nothing below it to hide, or the v3 zero flag hides it (v2 has none). */
function canDrop(img: Qcow2Image, gc: number): boolean {
  return !img.backing || gc * img.clusterSize >= img.backing.size || img.version === 3;
}

/** The whole new contents of every cluster that gets a new place; partial ones read (and inflate) the old first. */
async function buildContents(img: Qcow2Image, pieces: Piece[], iov: readonly Buffer[]): Promise<void> {
  const cs = img.clusterSize;
  const s = compressWriteStats(img);
  await Promise.all(
    pieces.map(async (p) => {
      if (p.len === cs) {
        p.contents = Buffer.alloc(cs);
        s.wholeClusters++;
      } else if (p.old.kind === 'normal' && p.old.copied) {
        return; // incompressible cluster we own: written in place
      } else {
        p.contents = Buffer.alloc(cs);
        s.readModifyWrites++;
        if (mayStage(img)) {
          p.stage = true;
          s.staged++;
        }
        await oldContents(img, p, p.contents);
      }
      copyFromIov(p.contents, sliceIov(iov, p.at, p.len), p.inCluster);
    }),
  );
}

async function oldContents(img: Qcow2Image, p: Piece, buf: Buffer): Promise<void> {
  switch (p.old.kind) {
    case 'normal':
      return readvFull(img.fh, [buf], p.old.host);
    case 'compressed':
      (await readCompressed(img, p.old, false)).copy(buf);
      return;
    case 'zero':
      return;
    case 'unallocated':
      return readThrough(img, p.gc * img.clusterSize, [buf]);
  }
}

async function writeInPlace(img: Qcow2Image, pieces: Piece[], iov: readonly Buffer[]): Promise<void> {
  const jobs = pieces
    .filter((p) => !p.contents)
    .map((p) => {
      const host = p.old.host + p.inCluster;
      img.guardWrite(host, p.len);
      const job = writevFull(img.fh, sliceIov(iov, p.at, p.len), host);
      img.inflightWrites.add(job);
      return job.finally(() => img.inflightWrites.delete(job));
    });
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

async function storeCompressed(img: Qcow2Image, type: CompressionType, pieces: Piece[]): Promise<void> {
  const toCompress = pieces.filter((p) => !p.stage);
  const results = await compressClusters(type, img.clusterSize, toCompress.map((p) => p.contents!));
  toCompress.forEach((p, i) => (p.result = results[i]));
  for (const p of pieces) if (p.stage) p.result = { zero: false }; // no payload: a normal cluster
  await placePieces(img, pieces);
}

/** Reserve space for each piece's result, write the payloads, then switch the L2 entries and release the old places. */
async function placePieces(img: Qcow2Image, pieces: Piece[]): Promise<void> {
  const cs = img.clusterSize;
  await img.lock.run(async () => {
    for (const p of pieces) {
      await img.writableL2(p.gc); // allocated/copied now, so the switch below cannot fail on space
      const r = p.result!;
      if (r.zero && canDrop(img, p.gc)) p.target = { kind: 'drop' };
      else if (r.data) p.target = { kind: 'compressed', host: await reservePayload(img, r.data.length), len: r.data.length };
      else p.target = { kind: 'normal', host: (await img.refcounts.allocateData()).offset };
    }
    await img.relieveCachePressure();
  });
  try {
    await writePayloads(img, pieces);
  } catch (err) {
    for (const p of pieces) releaseTarget(img, p);
    throw err;
  }
  const s = compressWriteStats(img);
  await img.lock.run(async () => {
    for (const p of pieces) {
      const { table, offset } = await img.writableL2(p.gc);
      const i = p.gc % img.l2Entries;
      const t = p.target!;
      s.bytesIn += cs;
      if (t.kind === 'compressed') {
        writeL2Compressed(table, i, t.host, t.len, img.clusterBits);
        s.bytesStored += t.len;
      } else if (t.kind === 'normal') {
        writeL2Normal(table, i, t.host, true);
        if (!p.stage) s.storedRaw++;
        s.bytesStored += cs;
      } else {
        if (img.backing && p.gc * cs < img.backing.size) writeL2Zero(table, i, 0, false);
        else clearL2(table, i);
        s.zeroClusters++;
      }
      img.l2Cache.markDirty(offset, i * 8, i * 8 + 8);
      queueFreeEntry(img, p.old);
      noteGarbage(img, p.old);
      if (p.stage) noteStaged(img, p.gc);
      else forgetStaged(img, p.gc);
    }
  });
}

/**
 * Host bytes released (queued frees) since the last flush we started. Frees
 * only become reusable space after a flush (refcounts.ts); a guest that
 * rewrites compressed clusters without flushing would otherwise grow the
 * file by a dead copy per rewrite. Past this much, the write path starts a
 * flush itself (one at a time, in the background): flushing early only
 * makes more durable, never less.
 */
const GARBAGE_FLUSH_BYTES = 32 << 20;
const garbage = new WeakMap<Qcow2Image, { bytes: number; flushing: boolean }>();

function noteGarbage(img: Qcow2Image, e: ClusterEntry): void {
  const bytes = e.kind === 'compressed' ? e.compressedSize : e.kind === 'normal' || (e.kind === 'zero' && e.host !== 0) ? img.clusterSize : 0;
  if (bytes === 0) return;
  let g = garbage.get(img);
  if (!g) garbage.set(img, (g = { bytes: 0, flushing: false }));
  g.bytes += bytes;
  if (g.bytes < GARBAGE_FLUSH_BYTES || g.flushing) return;
  g.bytes = 0;
  g.flushing = true;
  const state = g;
  img
    .flush()
    .catch((err: unknown) => img.log.warn({ path: img.path, err }, 'qcow2: background flush to release rewritten compressed clusters failed'))
    .finally(() => (state.flushing = false));
}

/** Payloads that follow each other on disk go out as one pwritev. */
async function writePayloads(img: Qcow2Image, pieces: Piece[]): Promise<void> {
  const runs: Array<{ host: number; bufs: Buffer[]; len: number }> = [];
  for (const p of pieces) {
    const t = p.target!;
    if (t.kind === 'drop') continue;
    const buf = t.kind === 'compressed' ? p.result!.data! : p.contents!;
    const host = t.host;
    const run = runs[runs.length - 1];
    if (run && run.host + run.len === host) {
      run.bufs.push(buf);
      run.len += buf.length;
    } else {
      runs.push({ host, bufs: [buf], len: buf.length });
    }
  }
  const jobs = runs.map((r) => {
    img.guardWrite(r.host, r.len);
    const p = writevFull(img.fh, r.bufs, r.host);
    img.inflightWrites.add(p);
    return p.finally(() => img.inflightWrites.delete(p));
  });
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** A failed command gives its reserved host space back (queued like any free). */
function releaseTarget(img: Qcow2Image, p: Piece): void {
  const t = p.target;
  if (!t || t.kind === 'drop') return;
  if (t.kind === 'normal') img.refcounts.queueFree(t.host);
  else for (const c of payloadClusters(t.host, t.len, img.clusterSize)) img.refcounts.queueFree(c * img.clusterSize);
}
