/**
 * Automatic compaction (handlers/qcow2/auto-compact.ts) of a LUN served with
 * compress=: through the handler's open(), as the daemon opens a LUN. Dead
 * payloads past the trigger get compacted once the LUN is quiet, by itself,
 * and clusters staged uncompressed by small writes get compressed;
 * data stays what was written (qemu-img agrees); a busy LUN is left alone
 * until it is quiet; close aborts a running compaction; the option's
 * refusals name the key. The scheduling cases that need a compaction held
 * open use the class with a compaction function the test controls.
 */
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import qcow2 from '../../../handlers/qcow2/index.js';
import { compactOpenImage, createImage, describeImage } from '../../../handlers/qcow2/api.js';
import { AutoCompactor, parseAutoCompact } from '../../../handlers/qcow2/auto-compact.js';
import { compressWriteStats } from '../../../handlers/qcow2/compressed-write.js';
import { parsePartialWrites } from '../../../handlers/qcow2/staging.js';
import type { Qcow2Backstore } from '../../../handlers/qcow2/backstore.js';
import type { CompactResult } from '../../../handlers/qcow2/compaction.js';
import type { Qcow2Image } from '../../../handlers/qcow2/image.js';
import type { OpenContext } from '../../../src/backstore/types.js';
import { Model, verifyWithQemu } from './model.js';
import { mixedBytes, qemuImgAvailable, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
if (!hasQemu && process.env.CI) throw new Error('qemu-img is required under CI for the automatic compaction tests');
const tmp = tempDir('auto-compact');
afterAll(() => tmp.cleanup());

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 16 * MiB;
const CLUSTER = 64 * KiB;
const ctx = (options: Record<string, string>): OpenContext => ({ blockSize: 512, readOnly: false, log: pino({ level: 'silent' }), options });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ms: number, cond: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A served zstd LUN (compress=zstd plus `options`), written whole with compressible data; `write` keeps the model in step. */
async function writtenLun(name: string, options: Record<string, string>, seed: number) {
  const path = tmp.path(name);
  await createImage(path, { size: SIZE, clusterSize: CLUSTER, compressionType: 'zstd' });
  const store = (await qcow2.open(path, ctx({ compress: 'zstd', ...options }))) as Qcow2Backstore;
  const next = rng(seed);
  const model = new Model(Buffer.alloc(SIZE));
  const write = async (at: number, data: Buffer) => {
    await store.write(at, [data], { fua: false });
    data.copy(model.data, at);
  };
  for (let at = 0; at < SIZE; at += MiB) await write(at, mixedBytes(next, MiB));
  return { path, store, model, write, next };
}

/**
 * A served zstd LUN, written whole, then 4 KiB rewritten in every second
 * cluster: each rewrite recompresses its cluster elsewhere
 * (partial_writes=recompress unless the caller says otherwise), and the dead
 * payloads add up to between the trigger and the forced-run level (checked).
 */
async function fragmentedLun(name: string, options: Record<string, string>): Promise<{ path: string; store: Qcow2Backstore; model: Model; allocatedFragmented: number }> {
  const { path, store, model, write, next } = await writtenLun(name, { partial_writes: 'recompress', ...options }, name.length);
  for (let c = 0; c < SIZE / CLUSTER; c += 2) await write(c * CLUSTER + 8 * KiB, mixedBytes(next, 4 * KiB));
  await store.flush();
  const s = store.autoCompact?.stats();
  if (s) {
    expect(s.runs, 'no run while the set-up kept writing').toBe(0);
    expect(s.freedBytes, JSON.stringify(s)).toBeGreaterThanOrEqual(s.triggerBytes);
    expect(s.freedBytes, JSON.stringify(s)).toBeLessThan(4 * s.triggerBytes);
  }
  return { path, store, model, allocatedFragmented: (await store.image.fh.stat()).blocks * 512 };
}

const space = (store: Qcow2Backstore) => store.autoCompact!.stats();

/** The whole LUN reads back as the model says. */
async function expectModel(store: Qcow2Backstore, model: Model): Promise<void> {
  const back = Buffer.alloc(SIZE);
  await store.read(0, [back]);
  expect(back.equals(model.data), 'the LUN reads back what was written').toBe(true);
}

describe.skipIf(!hasQemu)('qcow2 automatic compaction (compress= LUNs)', () => {
  it('compacts a quiet LUN by itself once enough payloads died: space comes back, data intact, qemu-img agrees', async () => {
    const { path, store, model, allocatedFragmented } = await fragmentedLun('quiet.qcow2', { auto_compact: '1' });
    await until('the automatic compaction', 60_000, () => space(store).runs === 1 && !space(store).running);
    const after = space(store);
    expect(after.last!.movedClusters, JSON.stringify(after)).toBeGreaterThan(0);
    expect(after.last!.allocatedAfter, JSON.stringify(after)).toBeLessThan(allocatedFragmented);
    expect(after.freedBytes, 'the count starts again').toBeLessThan(after.triggerBytes);
    expect((await describeImage(store.image)).space.autoCompaction, 'image info / status --space show it').toMatchObject({ runs: 1, running: false, idleSeconds: 1 });
    await expectModel(store, model);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('quiet.raw'));
  }, 120_000);

  it('waits while the LUN is busy, and compacts once it is quiet', async () => {
    const { store } = await fragmentedLun('busy.qcow2', { auto_compact: '1' });
    const buf = Buffer.alloc(4 * KiB);
    const busyUntil = Date.now() + 2500;
    while (Date.now() < busyUntil) {
      await store.read(0, [buf]); // reads count as activity too
      await sleep(100);
    }
    expect(space(store).runs, 'no run while commands keep arriving').toBe(0);
    await until('the automatic compaction after the LUN went quiet', 60_000, () => space(store).runs === 1 && !space(store).running);
    await store.close();
  }, 120_000);

  it('partial_writes=stage (the default): small writes store clusters uncompressed, the quiet-time run compresses them once', async () => {
    const { path, store, model, write, next } = await writtenLun('staged.qcow2', { auto_compact: '1' }, 7);
    const compressedOnly = (await describeImage(store.image)).space;
    // 4 KiB writes filling a quarter of the clusters, each cluster written 16 times over.
    const clusters = SIZE / CLUSTER / 4;
    for (let c = 0; c < clusters; c++) for (let k = 0; k < CLUSTER / (4 * KiB); k++) await write(c * 4 * CLUSTER + k * 4 * KiB, mixedBytes(next, 4 * KiB));
    const written = compressWriteStats(store.image);
    expect(written.staged, 'one staged store per cluster; the other 15 writes went in place').toBe(clusters);
    expect(written.readModifyWrites).toBe(clusters);
    expect(space(store).stagedClusters).toBe(clusters);
    const staged = (await describeImage(store.image)).space;
    expect(staged.uncompressedClusters, JSON.stringify(staged)).toBe(compressedOnly.uncompressedClusters + clusters);
    await until('the automatic compaction', 60_000, () => space(store).runs === 1 && !space(store).running);
    const after = space(store);
    expect(after.last!.recompressedClusters, JSON.stringify(after)).toBe(clusters);
    expect(after.stagedClusters).toBe(0);
    const compacted = (await describeImage(store.image)).space;
    expect(compacted.uncompressedClusters, JSON.stringify(compacted)).toBe(compressedOnly.uncompressedClusters);
    expect(compacted.allocatedSize, JSON.stringify({ staged, compacted })).toBeLessThan(staged.allocatedSize);
    await expectModel(store, model);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('staged.raw'));
  }, 120_000);

  it('a few staged clusters, below the trigger: a light run compresses them and punches out their old places', async () => {
    const { path, store, model, write, next } = await writtenLun('light.qcow2', { auto_compact: '1' }, 11);
    await store.flush();
    for (const c of [3, 70, 71, 200]) await write(c * CLUSTER + 12 * KiB, mixedBytes(next, 4 * KiB));
    await store.flush();
    const pending = space(store);
    expect(pending.stagedClusters).toBe(4);
    expect(pending.freedBytes, JSON.stringify(pending)).toBeLessThan(pending.triggerBytes);
    const allocatedStaged = (await store.image.fh.stat()).blocks * 512;
    await until('the light run', 60_000, () => space(store).runs === 1 && !space(store).running);
    const after = space(store);
    expect(after.last, JSON.stringify(after)).toMatchObject({ kind: 'staged', recompressedClusters: 4, movedClusters: 0 });
    expect(after.last!.punchedClusters, JSON.stringify(after)).toBeGreaterThan(0);
    expect(after.last!.allocatedAfter, JSON.stringify(after)).toBeLessThan(allocatedStaged);
    expect(after.stagedClusters).toBe(0);
    expect(after.freedBytes, 'a light run leaves the dead-payload count alone').toBe(pending.freedBytes);
    await sleep(2500);
    expect(space(store).runs, 'nothing staged, below the trigger: no further run').toBe(1);
    await expectModel(store, model);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('light.raw'));
  }, 120_000);

  it('partial_writes: bad values and the option without compress= are refused, naming the key', async () => {
    expect(parsePartialWrites(undefined, true)).toBe('stage');
    expect(parsePartialWrites(undefined, false)).toBe('recompress');
    expect(parsePartialWrites('recompress', true)).toBe('recompress');
    expect(() => parsePartialWrites('later', true)).toThrow(/partial_writes=later: expected stage or recompress/);
    const path = tmp.path('pw.qcow2');
    await createImage(path, { size: MiB, compressionType: 'zstd' });
    await expect(qcow2.open(path, ctx({ partial_writes: 'stage' }))).rejects.toThrow(/partial_writes= needs compress=/);
    await expect(qcow2.open(path, ctx({ compress: 'zstd', partial_writes: 'maybe' }))).rejects.toThrow(/partial_writes=maybe/);
  });

  it('auto_compact=off: no compactor, and image info of the served image has no figures for it', async () => {
    const { store } = await fragmentedLun('off.qcow2', { auto_compact: 'off' });
    expect(store.autoCompact).toBeUndefined();
    expect((await describeImage(store.image)).space.autoCompaction).toBeUndefined();
    await store.close();
  }, 60_000);

  it('refuses bad values and auto_compact without compress=, naming the key', async () => {
    expect(parseAutoCompact(undefined)).toBe(5);
    expect(parseAutoCompact('on')).toBe(5);
    expect(parseAutoCompact('off')).toBeUndefined();
    expect(parseAutoCompact('30')).toBe(30);
    for (const bad of ['0', '-1', '1.5', 'yes', '86401', '']) expect(() => parseAutoCompact(bad), bad).toThrow(/auto_compact=.*expected off, on, or the quiet time/);
    const path = tmp.path('plain.qcow2');
    await createImage(path, { size: MiB, compressionType: 'zstd' });
    await expect(qcow2.open(path, ctx({ auto_compact: '5' }))).rejects.toThrow(/auto_compact= needs compress=/);
    await expect(qcow2.open(path, ctx({ compress: 'zstd', auto_compact: 'soon' }))).rejects.toThrow(/auto_compact=soon/);
    const s = await qcow2.open(path, ctx({ compress: 'zstd' })); // the image was closed, not left half open
    expect((s as Qcow2Backstore).autoCompact?.stats().idleSeconds).toBe(5);
    await s.close();
  });

  it("an admin's compaction takes over from an automatic one; an automatic one never overlaps another", async () => {
    const { path, store, model } = await fragmentedLun('takeover.qcow2', { auto_compact: 'off' });
    const auto = compactOpenImage(store.image, { automatic: true, chunk: 1 });
    const autoOutcome = auto.then(
      () => 'finished',
      (err: { code?: string }) => err.code,
    );
    const admin = await compactOpenImage(store.image);
    expect(await autoOutcome, 'the automatic run stops with EBUSY (or had already finished)').toMatch(/^(EBUSY|finished)$/);
    expect(admin.fileBytesAllocatedAfter).toBeLessThanOrEqual(admin.fileBytesAllocatedBefore);
    const adminRun = compactOpenImage(store.image);
    await expect(compactOpenImage(store.image, { automatic: true })).rejects.toMatchObject({ code: 'EBUSY' });
    await adminRun;
    await expectModel(store, model);
    await store.close();
    await verifyWithQemu(path, model, tmp.path('takeover.raw'));
  }, 120_000);

  it('close aborts a running compaction and waits for it; no run starts after close', async () => {
    const path = tmp.path('held.qcow2');
    await createImage(path, { size: MiB, compressionType: 'zstd' });
    const store = (await qcow2.open(path, ctx({ compress: 'zstd', auto_compact: 'off' }))) as Qcow2Backstore;
    const img: Qcow2Image = store.image;
    let started = 0;
    let sawAbort = false;
    const held = (_img: Qcow2Image, signal: AbortSignal) =>
      new Promise<CompactResult>((_resolve, reject) => {
        started++;
        signal.addEventListener('abort', () => {
          sawAbort = true;
          reject(signal.reason);
        });
      });
    const auto = new AutoCompactor(img, 1, held, pino({ level: 'silent' }));
    auto.freed(64 * MiB);
    await until('the held compaction to start', 10_000, () => started === 1);
    expect(auto.stats().running).toBe(true);
    await auto.close();
    expect(sawAbort).toBe(true);
    expect(auto.stats()).toMatchObject({ running: false, runs: 0 });
    expect(auto.stats().lastError, 'an abort by close is not an error').toBeUndefined();
    auto.freed(64 * MiB);
    await sleep(1500);
    expect(started, 'nothing starts after close').toBe(1);
    await store.close();
  });
});
