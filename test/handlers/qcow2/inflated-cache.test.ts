/**
 * The cache of recently inflated compressed clusters (inflated-cache.ts):
 * the class's rules on their own (hits, shared inflates, LRU, lengths,
 * failures, frees), then through real images: a small-request reader pays
 * one inflate per cluster, and a freed host cluster whose first bytes get a
 * new payload is never answered from the cache (that test fails without
 * the refcount hook).
 */
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { InflatedClusterCache } from '../../../handlers/qcow2/inflated-cache.js';
import { createImage } from '../../../handlers/qcow2/api.js';
import { openStore } from './model.js';
import { mixedBytes, qemuImgAvailable, qemuImgOk, rng, tempDir } from './qemu.js';

const KiB = 1024;
const CLUSTER = 64 * KiB;

const hasQemu = qemuImgAvailable();
if (!hasQemu && process.env.CI) throw new Error('qemu-img is required under CI for the inflated-cluster cache tests');
const tmp = tempDir('inflated-cache');
afterAll(() => tmp.cleanup());

/** An inflate that counts its calls and can be held open. */
function inflater(fill: number) {
  let calls = 0;
  let release = (): void => {};
  const gate = new Promise<void>((r) => (release = r));
  return {
    get calls() {
      return calls;
    },
    release: () => release(),
    run: async (held = false): Promise<Buffer> => {
      calls++;
      if (held) await gate;
      return Buffer.alloc(CLUSTER, fill);
    },
  };
}

describe('InflatedClusterCache', () => {
  it('answers a repeated payload from the cache, with the same bytes', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    const inf = inflater(7);
    const a = await cache.get(CLUSTER * 3 + 100, 600, () => inf.run());
    const b = await cache.get(CLUSTER * 3 + 100, 600, () => inf.run());
    expect(inf.calls).toBe(1);
    expect(b.equals(a)).toBe(true);
    expect([cache.hits, cache.misses]).toEqual([1, 1]);
  });

  it('shares one inflate among concurrent readers of a payload', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    const inf = inflater(9);
    const reads = Array.from({ length: 16 }, () => cache.get(4096, 512, () => inf.run(true)));
    inf.release();
    const got = await Promise.all(reads);
    expect(inf.calls).toBe(1);
    for (const g of got) expect(g[0]).toBe(9);
  });

  it('keeps the most recently used entries within its budget', async () => {
    const cache = new InflatedClusterCache(2 * CLUSTER, CLUSTER);
    const inf = inflater(1);
    await cache.get(0, 512, () => inf.run());
    await cache.get(1000, 512, () => inf.run());
    await cache.get(0, 512, () => inf.run()); // 0 is now the most recent
    await cache.get(2000, 512, () => inf.run()); // evicts 1000
    expect(cache.size).toBe(2);
    await cache.get(0, 512, () => inf.run());
    expect(inf.calls).toBe(3);
    await cache.get(1000, 512, () => inf.run());
    expect(inf.calls).toBe(4);
  });

  it('inflates again for another length at the same offset (a hostile image may do that)', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    const inf = inflater(2);
    await cache.get(512, 512, () => inf.run());
    await cache.get(512, 1024, () => inf.run());
    expect(inf.calls).toBe(2);
  });

  it('does not keep a failed inflate: the next read tries again', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    await expect(cache.get(0, 512, () => Promise.reject(new Error('corrupt payload')))).rejects.toThrow('corrupt payload');
    const inf = inflater(3);
    expect((await cache.get(0, 512, () => inf.run()))[0]).toBe(3);
    expect(inf.calls).toBe(1);
  });

  it('does not insert what a caller reads once (keep=false), nor join a guest read in flight, but serves it from the cache when there', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    const inf = inflater(4);
    await cache.get(0, 512, () => inf.run(), false);
    expect(cache.size).toBe(0);
    const guest = cache.get(0, 512, () => inf.run(true));
    await cache.get(0, 512, () => inf.run(), false); // compaction must not wait on a guest read
    expect(inf.calls).toBe(3);
    inf.release();
    await guest;
    await cache.get(0, 512, () => inf.run(), false);
    expect(inf.calls).toBe(3);
  });

  it('forgets payloads that start in a freed host cluster, and only those', async () => {
    const cache = new InflatedClusterCache(8 * CLUSTER, CLUSTER);
    const inf = inflater(5);
    for (const host of [CLUSTER - 512, CLUSTER, CLUSTER + 4000, 2 * CLUSTER]) await cache.get(host, 512, () => inf.run());
    cache.forgetHostCluster(CLUSTER + 123);
    expect(cache.size).toBe(2);
    for (const host of [CLUSTER - 512, 2 * CLUSTER]) await cache.get(host, 512, () => inf.run());
    expect(inf.calls).toBe(4);
  });

  it('does not insert an inflate whose host cluster was freed while it ran', async () => {
    const cache = new InflatedClusterCache(4 * CLUSTER, CLUSTER);
    const inf = inflater(6);
    const running = cache.get(CLUSTER, 512, () => inf.run(true));
    cache.forgetHostCluster(CLUSTER);
    inf.release();
    await running;
    expect(cache.size).toBe(0);
  });

  it('caches nothing with a budget of 0, yet concurrent readers still share', async () => {
    const cache = new InflatedClusterCache(0, CLUSTER);
    const inf = inflater(8);
    const both = [cache.get(0, 512, () => inf.run(true)), cache.get(0, 512, () => inf.run(true))];
    inf.release();
    await Promise.all(both);
    await cache.get(0, 512, () => inf.run());
    expect(inf.calls).toBe(2);
    expect(cache.size).toBe(0);
  });
});

describe.skipIf(!hasQemu)('inflated-cluster cache on real images', () => {
  it('a 4 KiB sequential reader of a qemu-img convert -c image inflates each cluster once, and reads what qemu wrote', async () => {
    const data = mixedBytes(rng(41), 2 << 20);
    const raw = tmp.path('seq.raw');
    const path = tmp.path('seq.qcow2');
    writeFileSync(raw, data);
    qemuImgOk('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=65536,compression_type=zstd', raw, path);
    const store = await openStore(path, true);
    try {
      const got = Buffer.alloc(data.length);
      // 16 at a time, as a queue depth of 16 would send them.
      for (let at = 0; at < data.length; at += 16 * 4 * KiB) {
        await Promise.all(Array.from({ length: 16 }, (_, i) => store.read(at + i * 4 * KiB, [got.subarray(at + i * 4 * KiB, at + (i + 1) * 4 * KiB)])));
      }
      expect(got.equals(data)).toBe(true);
      const { hits, misses } = store.image.inflated;
      expect(misses).toBe(data.length / CLUSTER);
      expect(hits).toBe(data.length / (4 * KiB) - misses);
    } finally {
      await store.close();
    }
  });

  it('a freed host cluster given a new payload at the same offset reads the new data', async () => {
    const path = tmp.path('reuse.qcow2');
    await createImage(path, { size: 1 << 20, clusterSize: CLUSTER, compressionType: 'zstd' });
    const store = await openStore(path, false, 'zstd');
    try {
      const x = Buffer.alloc(CLUSTER, 0x41);
      const w = Buffer.alloc(CLUSTER, 0x42); // compresses to as many sectors as x
      await store.write(0, [x], { fua: false });
      const first = await store.image.entryAt(0);
      const back = Buffer.alloc(CLUSTER);
      await store.read(0, [back]);
      expect(back.equals(x)).toBe(true);
      await store.discard(0, CLUSTER);
      await store.flush(); // x's payload freed: its host cluster is empty and handed out again
      await store.write(CLUSTER, [w], { fua: false });
      const second = await store.image.entryAt(1);
      expect([second.kind, second.host, second.compressedSize]).toEqual(['compressed', first.host, first.compressedSize]);
      await store.read(CLUSTER, [back]);
      expect(back.equals(w)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
