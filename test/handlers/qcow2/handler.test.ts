/**
 * The Backstore glue and behaviour that the model tests do not pin down:
 * handler contract (size policy, read-only), blockStatus, discard really
 * freeing space, resize, refcount table growth, concurrent allocation of
 * one cluster, and snapshot space being reusable after delete.
 */
import { statSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import qcow2 from '../../../handlers/qcow2/index.js';
import { checkImage, createImage, imageInfo, snapshotCreate, snapshotDelete, snapshotList } from '../../../handlers/qcow2/api.js';
import type { Backstore, OpenContext } from '../../../src/backstore/types.js';
import { qemuCheck, qemuImgAvailable, qemuImgOk, randomBytes, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('handler');
afterAll(() => tmp.cleanup());

const MiB = 1 << 20;
const ctx = (over: Partial<OpenContext> = {}): OpenContext => ({ blockSize: 512, readOnly: false, log: pino({ level: 'silent' }), options: {}, ...over });

async function fresh(name: string, size: number, clusterSize: number, version: 2 | 3 = 3): Promise<{ path: string; store: Backstore }> {
  const path = tmp.path(name);
  await createImage(path, { size, clusterSize, version });
  return { path, store: await qcow2.open(path, ctx()) };
}

describe('qcow2 handler', () => {
  it('is named qcow2, exposes the virtual size, refuses a larger configured size', async () => {
    const path = tmp.path('size.qcow2');
    await createImage(path, { size: 3 * MiB });
    expect(qcow2.name).toBe('qcow2');
    const s = await qcow2.open(path, ctx({ size: 2 * MiB }));
    expect(s.size).toBe(3 * MiB);
    await s.close();
    await expect(qcow2.open(path, ctx({ size: 4 * MiB }))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(qcow2.open('relative.qcow2', ctx())).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('declares its cluster as the discard granularity (at least 4 KiB)', async () => {
    for (const [clusterSize, granularity] of [[65536, 65536], [2 * MiB, 2 * MiB], [512, 4096]]) {
      const { store } = await fresh(`gran-${clusterSize}.qcow2`, 4 * MiB, clusterSize);
      expect(store.discardGranularity).toBe(granularity);
      await store.close();
    }
  });

  it('read-only open refuses writes and leaves the file untouched', async () => {
    const path = tmp.path('ro.qcow2');
    await createImage(path, { size: MiB });
    const before = statSync(path).mtimeMs;
    const s = await qcow2.open(path, ctx({ readOnly: true }));
    expect(s.readOnly).toBe(true);
    await expect(s.write!(0, [Buffer.alloc(512)], { fua: false })).rejects.toMatchObject({ code: 'EROFS' });
    await s.close();
    expect(statSync(path).mtimeMs).toBe(before);
  });

  it('blockStatus reports mapped, zero (preallocated) and deallocated runs', async () => {
    const { store } = await fresh('bs.qcow2', 4 * MiB, 65536);
    await store.write!(0, [Buffer.alloc(128 * 1024, 1)], { fua: false });
    await store.writeZeroes!(65536, 65536, { unmap: false }); // keeps the cluster, flags it zero
    expect(await store.blockStatus!(0, 4 * MiB)).toEqual([
      { offset: 0, length: 65536, state: 'mapped' },
      { offset: 65536, length: 65536, state: 'zero' },
      { offset: 131072, length: 4 * MiB - 131072, state: 'deallocated' },
    ]);
    await store.discard!(0, 65536);
    expect((await store.blockStatus!(0, 65536))[0]).toMatchObject({ state: 'deallocated' });
    const back = Buffer.alloc(128 * 1024, 9);
    await store.read(0, [back]);
    expect(back.every((b) => b === 0)).toBe(true);
    await store.close();
  });

  it('discarded space is reused after a flush instead of growing the file', async () => {
    const { path, store } = await fresh('reuse.qcow2', 8 * MiB, 4096);
    const data = randomBytes(rng(1), 4 * MiB);
    await store.write!(0, [data], { fua: true });
    const full = statSync(path).size;
    await store.discard!(0, 4 * MiB);
    await store.flush!();
    await store.write!(4 * MiB, [data], { fua: true });
    await store.close();
    expect(statSync(path).size).toBeLessThanOrEqual(full + 4096 * 4);
    expect((await checkImage(path)).leaks).toBe(0);
    if (hasQemu) expect(qemuCheck(path).status).toBe(0);
  });

  it('concurrent writes into one unallocated cluster allocate it once', async () => {
    const { path, store } = await fresh('race.qcow2', MiB, 65536);
    const parts = Array.from({ length: 128 }, (_, i) => Buffer.alloc(512, i + 1));
    await Promise.all(parts.map((p, i) => store.write!(i * 512, [p], { fua: false })));
    const back = Buffer.alloc(65536);
    await store.read(0, [back]);
    expect(back.equals(Buffer.concat(parts))).toBe(true);
    await store.close();
    const check = await checkImage(path);
    expect(check).toMatchObject({ corruptions: 0, leaks: 0 });
    // header, refcount table, refcount block, L1, one L2, ONE data cluster
    expect(check.allocatedClusters).toBe(6);
  });

  it('grows: resize keeps data, new space reads as zeros, L1 grows when needed', async () => {
    const { path, store } = await fresh('grow.qcow2', MiB, 512);
    const data = randomBytes(rng(2), MiB);
    await store.write!(0, [data], { fua: false });
    await store.resize!(64 * MiB); // 512 B clusters: one L2 table maps 32 KiB, so L1 must grow
    expect(store.size).toBe(64 * MiB);
    await store.write!(63 * MiB, [data], { fua: false });
    const head = Buffer.alloc(MiB);
    await store.read(0, [head]);
    expect(head.equals(data)).toBe(true);
    const gap = Buffer.alloc(MiB, 1);
    await store.read(10 * MiB, [gap]);
    expect(gap.every((b) => b === 0)).toBe(true);
    await expect(store.resize!(MiB)).rejects.toMatchObject({ code: 'EINVAL' });
    await store.close();
    expect((await imageInfo(path)).virtualSize).toBe(64 * MiB);
    expect(await checkImage(path)).toMatchObject({ corruptions: 0, leaks: 0 });
    if (hasQemu) expect(qemuCheck(path).status).toBe(0);
  });

  it('grows the refcount table (512 B clusters, 24 MiB of data)', async () => {
    const { path, store } = await fresh('rtgrow.qcow2', 32 * MiB, 512, 2);
    const chunk = randomBytes(rng(3), MiB);
    for (let i = 0; i < 24; i++) await store.write!(i * MiB, [chunk], { fua: false });
    await store.close();
    const check = await checkImage(path);
    expect(check).toMatchObject({ corruptions: 0, leaks: 0 });
    if (hasQemu) {
      expect(qemuCheck(path).status).toBe(0);
      const raw = tmp.path('rtgrow.raw');
      qemuImgOk('convert', '-O', 'raw', path, raw);
      const { readFileSync } = await import('node:fs');
      const back = readFileSync(raw);
      for (let i = 0; i < 24; i++) expect(back.subarray(i * MiB, (i + 1) * MiB).equals(chunk)).toBe(true);
    }
  });

  it('deleting a snapshot frees its clusters (leak-free) and COPIED flags come back', async () => {
    const { path, store } = await fresh('snapdel.qcow2', 4 * MiB, 65536);
    await store.write!(0, [randomBytes(rng(4), 2 * MiB)], { fua: false });
    await store.close();
    await snapshotCreate(path, 'a');
    const s2 = await qcow2.open(path, ctx());
    await s2.write!(0, [randomBytes(rng(5), MiB)], { fua: false }); // copies the shared clusters
    await s2.close();
    expect((await snapshotList(path)).map((s) => s.name)).toEqual(['a']);
    await snapshotDelete(path, 'a');
    expect(await snapshotList(path)).toEqual([]);
    expect(await checkImage(path)).toMatchObject({ corruptions: 0, leaks: 0, copiedFlagErrors: 0 });
    if (hasQemu) expect(qemuCheck(path).status).toBe(0);
    // 2 MiB of data (32 clusters) + metadata: the snapshot's copy is gone.
    expect((await checkImage(path)).allocatedClusters).toBeLessThan(32 + 8);
  });

  it('leak repair: leaked clusters are freed, corruption is never "fixed"', async () => {
    const path = tmp.path('leak.qcow2');
    await createImage(path, { size: MiB, clusterSize: 4096 });
    const { openImage } = await import('../../../handlers/qcow2/api.js');
    const img = await openImage(path, { readOnly: false });
    await img.lock.run(() => img.refcounts.allocate(3)); // allocated, never referenced
    await img.close();
    expect((await checkImage(path)).leaks).toBe(3);
    if (hasQemu) expect(qemuCheck(path).status).toBe(3);
    expect(await checkImage(path, { repair: 'leaks' })).toMatchObject({ leaks: 3, leaksFixed: 3 });
    expect((await checkImage(path)).leaks).toBe(0);
    if (hasQemu) expect(qemuCheck(path).status).toBe(0);
  });
});
