/**
 * Online compaction (api.ts compactOpenImage): the served image is compacted
 * while reads and writes keep arriving. Every read returns what was last
 * written, the space comes back, and qemu-img finds the image clean and equal
 * to the model afterwards. Also the refusals (no compress=, a second
 * compaction at once) and an abort half-way. The read grace period that makes
 * reads safe against relocation has its own tests in read-grace.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { compactOpenImage, createImage } from '../../../handlers/qcow2/api.js';
import { sharedUringIo } from '../../../src/io/uring-io.js';
import type { Qcow2Backstore } from '../../../handlers/qcow2/backstore.js';
import { Model, openStore, verifyWithQemu } from './model.js';
import { mixedBytes, qemuImgAvailable, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
if (!hasQemu && process.env.CI) throw new Error('qemu-img is required under CI for the online compaction tests');
const tmp = tempDir('online-compact');
afterAll(() => tmp.cleanup());

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 8 * MiB;
const CLUSTER = 64 * KiB;

async function write(store: Qcow2Backstore, model: Model, offset: number, data: Buffer): Promise<void> {
  await store.write(offset, [data], { fua: false });
  data.copy(model.data, offset);
}

async function expectReads(store: Qcow2Backstore, model: Model, offset: number, length: number): Promise<void> {
  const got = Buffer.alloc(length);
  await store.read(offset, [got]);
  if (!got.equals(model.data.subarray(offset, offset + length))) throw new Error(`read at ${offset}+${length} differs from what was written`);
}

/**
 * A zstd image written whole, then 4 KiB pieces rewritten in every other
 * cluster: each rewrite recompresses its cluster elsewhere and leaves a dead
 * payload inside a shared host cluster, which only compaction gives back.
 */
async function fragmentedImage(name: string, seed: number): Promise<{ path: string; store: Qcow2Backstore; model: Model; next: () => number }> {
  const path = tmp.path(name);
  await createImage(path, { size: SIZE, clusterSize: CLUSTER, compressionType: 'zstd' });
  const store = await openStore(path, false, 'zstd');
  const next = rng(seed);
  const model = new Model(Buffer.alloc(SIZE));
  for (let at = 0; at < SIZE; at += MiB) await write(store, model, at, mixedBytes(next, MiB));
  for (let c = 0; c < SIZE / CLUSTER; c += 2) await write(store, model, c * CLUSTER + 8 * KiB, mixedBytes(next, 4 * KiB));
  await store.flush();
  return { path, store, model, next };
}

describe.skipIf(!hasQemu)('qcow2 online compaction', () => {
  it('compacts a served image while reads and writes go on: every read sees the last write, space comes back, qemu-img agrees', async () => {
    const { path, store, model, next } = await fragmentedImage('busy.qcow2', 11);
    let compacting = true;
    let reads = 0;
    let writes = 0;
    // Writes go to the first half, one at a time; reads, several at once, to the second half
    // (never racing a write of theirs) and, between writes, to what was just written.
    const writer = (async () => {
      while (compacting) {
        const at = Math.floor(next() * (SIZE / 2 / (4 * KiB))) * 4 * KiB;
        const len = (1 + Math.floor(next() * 16)) * 4 * KiB;
        const data = mixedBytes(next, Math.min(len, SIZE / 2 - at));
        await write(store, model, at, data);
        await expectReads(store, model, at, data.length);
        writes++;
      }
    })();
    const readers = Array.from({ length: 4 }, async () => {
      while (compacting) {
        const at = SIZE / 2 + Math.floor(next() * (SIZE / 2 / CLUSTER)) * CLUSTER;
        await expectReads(store, model, at, CLUSTER);
        reads++;
        // A guest's reads arrive through the event loop. Without this turn, reads answered
        // from the inflated-cluster cache would chain microtasks only and starve the compaction.
        await new Promise(setImmediate);
      }
    });
    const result = await compactOpenImage(store.image, { chunk: 4 }).finally(() => (compacting = false));
    await Promise.all([writer, ...readers]);
    expect(result.movedClusters, JSON.stringify(result)).toBeGreaterThan(0);
    expect(result.fileBytesAllocatedAfter, JSON.stringify(result)).toBeLessThan(result.fileBytesAllocatedBefore);
    expect(reads).toBeGreaterThan(0);
    expect(writes).toBeGreaterThan(0);
    await expectReads(store, model, 0, SIZE);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('busy.raw'));
  }, 120_000);

  it('a read that found a payload before it moved still gets its data: the old place is freed only after that read', async () => {
    const { path, store, model } = await fragmentedImage('grace.qcow2', 14);
    const img = store.image;
    const gc = SIZE / CLUSTER - 1; // odd: never rewritten, its payload shares a host cluster with dead ones
    const before = await img.entryAt(gc);
    expect(before.kind).toBe('compressed');
    // Hold the read's first data access: its payload read (through the data
    // ring, or the file handle without one), after the L2 lookup gave the old place.
    const fileRead = img.fh.read.bind(img.fh);
    const ring = sharedUringIo();
    const ringRead = ring?.read.bind(ring);
    let reachedPayload!: () => void;
    const paused = new Promise<void>((resolve) => (reachedPayload = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holdNext = true;
    const hold = async () => {
      if (holdNext) {
        holdNext = false;
        reachedPayload();
        await released;
      }
    };
    img.fh.read = (async (...args: Parameters<typeof fileRead>) => {
      await hold();
      return fileRead(...args);
    }) as typeof img.fh.read;
    if (ring && ringRead) {
      ring.read = (async (...args: Parameters<typeof ringRead>) => {
        await hold();
        return ringRead(...args);
      }) as typeof ring.read;
    }
    const got = Buffer.alloc(CLUSTER);
    const read = store.read(gc * CLUSTER, [got]);
    await paused;
    const compaction = compactOpenImage(img, { chunk: 256 });
    // The compaction must stop at its first free and wait for the held read (the grace period).
    const graceWaiting = async () => {
      while ((img.readGrace as unknown as { draining?: Promise<void> }).draining === undefined) await new Promise((r) => setTimeout(r, 5));
    };
    await Promise.race([compaction, graceWaiting()]);
    release();
    await read;
    expect(got.equals(model.data.subarray(gc * CLUSTER, (gc + 1) * CLUSTER)), 'the held read returned other bytes').toBe(true);
    const result = await compaction;
    img.fh.read = fileRead;
    if (ring && ringRead) ring.read = ringRead;
    expect((await img.entryAt(gc)).host, 'the cluster was moved').not.toBe(before.host);
    expect(result.punchedClusters).toBeGreaterThan(0);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('grace.raw'));
  }, 120_000);

  it('an abort between chunks leaves a consistent image with the data unchanged', async () => {
    const { path, store, model } = await fragmentedImage('abort.qcow2', 12);
    const abort = new AbortController();
    let chunks = 0;
    const flush = store.image.flush.bind(store.image);
    // Abort after the second chunk's flush: part of the image is moved, part is not.
    store.image.flush = async () => {
      await flush();
      if (++chunks === 3) abort.abort(new Error('LUN closing'));
    };
    await expect(compactOpenImage(store.image, { chunk: 4, signal: abort.signal })).rejects.toThrow('LUN closing');
    store.image.flush = flush;
    await expectReads(store, model, 0, SIZE);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('abort.raw'));
  }, 120_000);

  it('refuses a LUN served without compress= and a second compaction of the same image', async () => {
    const path = tmp.path('plain.qcow2');
    await createImage(path, { size: MiB, compressionType: 'zstd' });
    const plain = await openStore(path);
    await expect(compactOpenImage(plain.image)).rejects.toThrow(/served without compress=, so it is not compacted online; serve it with compress=zstd or compact it offline/);
    await plain.close();

    const { store } = await fragmentedImage('twice.qcow2', 13);
    const first = compactOpenImage(store.image, { chunk: 4 });
    await expect(compactOpenImage(store.image)).rejects.toThrow(/a compaction of .* is already running/);
    await first;
    await store.close();
  }, 120_000);
});
