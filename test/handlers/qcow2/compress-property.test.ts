/**
 * Property tests with compressed writes on (compress=zlib|zstd): the shared
 * random-operation driver (writes of every size, concurrent bursts into one
 * cluster, discards, write-zeroes, reads, flushes, snapshots, reopens)
 * against a plain-buffer model, judged by qemu-img (`check` clean, `compare`
 * equal) every 50 operations and at the end. Data is half random, half
 * runs, so most clusters compress and some partial writes make a cluster
 * incompressible (stored raw) and back. Also: images made by
 * `qemu-img convert -c` keep working, with and without compression on; and
 * offline compaction keeps qemu-img happy and the data unchanged.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { compactImageFile, createImage, imageInfo, openImage } from '../../../handlers/qcow2/api.js';
import { compactImage } from '../../../handlers/qcow2/compaction.js';
import { enableWriteCompression } from '../../../handlers/qcow2/compression-mode.js';
import { drive, Model, openStore, verifyWithQemu } from './model.js';
import { mixedBytes, qemuImgAvailable, qemuImgOk, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
if (!hasQemu && process.env.CI) throw new Error('qemu-img is required under CI for the compression property tests');
const tmp = tempDir('cprop');
afterAll(() => tmp.cleanup());

const MiB = 1 << 20;

interface Case {
  name: string;
  seed: number;
  compress: 'zlib' | 'zstd';
  /** partial_writes=stage (staging.ts) instead of recompressing at once. */
  stage?: boolean;
  ops: number;
  maxLen: number;
  make: (path: string) => Promise<Buffer>;
}

const fresh = (size: number, clusterSize: number, compressionType: 'zlib' | 'zstd', version: 2 | 3 = 3) => async (p: string) => {
  await createImage(p, { size, clusterSize, compressionType, version });
  return Buffer.alloc(size);
};

/** An image qemu-img compressed (`convert -c`), from compressible data; returns that data. */
const converted = (seed: number, clusterSize: number, type: 'zlib' | 'zstd') => async (p: string) => {
  const data = mixedBytes(rng(seed), 4 * MiB);
  data.fill(0, MiB, MiB + 256 * 1024);
  const raw = tmp.path(`src-${seed}.raw`);
  writeFileSync(raw, data);
  qemuImgOk('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${clusterSize},compression_type=${type}`, raw, p);
  return data;
};

const cases: Case[] = [
  { name: 'zstd, 64k clusters, partial writes staged', seed: 31, compress: 'zstd', stage: true, ops: 250, maxLen: 256 * 1024, make: fresh(8 * MiB, 65536, 'zstd') },
  { name: 'zlib, 64k clusters', seed: 32, compress: 'zlib', ops: 250, maxLen: 256 * 1024, make: fresh(8 * MiB, 65536, 'zlib') },
  { name: 'zstd, 4k clusters (payloads spill across host clusters), staged', seed: 33, compress: 'zstd', stage: true, ops: 250, maxLen: 64 * 1024, make: fresh(4 * MiB, 4096, 'zstd') },
  { name: 'zlib, v2, 512 B clusters (one-bit sector count)', seed: 34, compress: 'zlib', ops: 200, maxLen: 16 * 1024, make: fresh(2 * MiB, 512, 'zlib', 2) },
  { name: 'zstd over an image from qemu-img convert -c', seed: 35, compress: 'zstd', ops: 200, maxLen: 128 * 1024, make: converted(135, 65536, 'zstd') },
  { name: 'zlib over an image from qemu-img convert -c (8k clusters), staged', seed: 36, compress: 'zlib', stage: true, ops: 200, maxLen: 64 * 1024, make: converted(136, 8192, 'zlib') },
];

describe.skipIf(!hasQemu)('qcow2 with compressed writes against a model, judged by qemu-img', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const path = tmp.path(`cprop-${c.seed}.qcow2`);
      const model = new Model(await c.make(path));
      const rawPath = tmp.path(`model-${c.seed}.raw`);
      const stats = await drive(path, model, rng(c.seed), { ops: c.ops, maxLen: c.maxLen, snapshots: true, verifyEvery: 50, rawPath, compress: c.compress, stage: c.stage, data: mixedBytes });
      expect(stats.reopens + stats.snapshotsMade).toBeGreaterThan(0);
      expect(readFileSync(rawPath).equals(model.data)).toBe(true);
      // Writes really were stored compressed (the mixed data compresses about 2:1).
      for (const s of [...model.snapshots.keys()]) qemuImgOk('snapshot', '-d', s, path);
      model.snapshots.clear();
      const info = await imageInfo(path);
      expect(info.space.compressedClusters, JSON.stringify(info.space)).toBeGreaterThan(0);
      // Compaction moves payloads and punches holes; the data and qemu-img's verdict stay.
      // Staged cases: clusters left uncompressed (reopens forget what was staged) get compressed.
      const r = await compactImageFile(path, c.stage ? { recompress: 'all' } : undefined);
      expect(r.fileBytesAllocatedAfter).toBeLessThanOrEqual(r.fileBytesAllocatedBefore);
      if (c.stage) {
        expect(stats.recompressed + r.recompressedClusters, JSON.stringify(r)).toBeGreaterThan(0);
        const after = (await imageInfo(path)).space;
        expect(after.uncompressedClusters, JSON.stringify({ before: info.space, after })).toBeLessThan(info.space.uncompressedClusters);
      }
      await verifyWithQemu(path, model, rawPath);
    }, 180_000);
  }

  it('plain (uncompressed) writes keep working on a zstd image from qemu-img convert -c', async () => {
    const path = tmp.path('plain-on-c.qcow2');
    const model = new Model(await converted(137, 65536, 'zstd')(path));
    await drive(path, model, rng(37), { ops: 150, maxLen: 128 * 1024, snapshots: false, verifyEvery: 50, rawPath: tmp.path('plain.raw'), data: mixedBytes });
  }, 120_000);

  it('refuses compress=zstd on a zlib image and compress on a mismatched codec, naming the fix', async () => {
    const path = tmp.path('zlib.qcow2');
    await createImage(path, { size: MiB });
    const img = await openImage(path, { readOnly: false });
    try {
      expect(() => enableWriteCompression(img, 'zstd')).toThrow(/compression_type zlib.*compress=zstd needs an image whose compression_type is zstd/);
      expect(() => enableWriteCompression(img, 'lz4')).toThrow(/expected zlib or zstd/);
    } finally {
      await img.close();
    }
    await expect(createImage(tmp.path('v2zstd.qcow2'), { size: MiB, version: 2, compressionType: 'zstd' })).rejects.toThrow(/zstd compression needs a version 3 image/);
  });

  it('a staged cluster that became all zeros over a v2 backing file stays put (v2 cannot drop it); over v3 it is dropped', async () => {
    const base = tmp.path('zero-base.raw');
    const data = Buffer.alloc(MiB);
    data.fill(7, 0, 4096); // the base has data only in the first 4 KiB of cluster 0
    writeFileSync(base, data);
    for (const version of [2, 3] as const) {
      const path = tmp.path(`zero-staged-v${version}.qcow2`);
      await createImage(path, { size: MiB, version, backing: base, backingFormat: 'raw' });
      const store = await openStore(path, false, 'zlib', true);
      await store.write(0, [Buffer.alloc(4096)], { fua: false }); // cluster 0 now reads as zeros: staged
      const staged = await store.image.entryAt(0);
      expect(staged.kind).toBe('normal');
      const r = await compactImage(store.image, 'zlib', { recompress: 'staged' });
      const after = await store.image.entryAt(0);
      if (version === 2) {
        expect(r.recompressedClusters, 'nothing to gain: it stays a normal cluster').toBe(0);
        expect(after).toMatchObject({ kind: 'normal', host: staged.host });
      } else {
        expect(r.recompressedClusters).toBe(1);
        expect(after.kind).toBe('zero');
      }
      const back = Buffer.alloc(65536, 1);
      await store.read(0, [back]);
      expect(back.equals(Buffer.alloc(65536)), 'reads as zeros, not the base').toBe(true);
      await store.close();
      const model = new Model(Buffer.alloc(MiB));
      await verifyWithQemu(path, model, tmp.path(`zero-staged-v${version}.raw`));
    }
  });

  it('stores compressed data densely: several clusters per host cluster, close to qemu-img convert -c', async () => {
    const size = 16 * MiB;
    const data = mixedBytes(rng(40), size);
    const raw = tmp.path('dense.raw');
    writeFileSync(raw, data);
    for (const type of ['zstd', 'zlib'] as const) {
      const path = tmp.path(`dense-${type}.qcow2`);
      await createImage(path, { size, compressionType: type });
      const store = await openStore(path, false, type);
      await store.write(0, [data], { fua: false });
      await store.close();
      const ref = tmp.path(`dense-ref-${type}.qcow2`);
      qemuImgOk('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${type}`, raw, ref);
      const ours = (await imageInfo(path)).space;
      const theirs = (await imageInfo(ref)).space;
      console.log(`[compress] ${type}: ours ${ours.allocatedSize} B allocated (ratio ${ours.compressionRatio}), qemu-img convert -c ${theirs.allocatedSize} B (ratio ${theirs.compressionRatio})`);
      expect(ours.compressedClusters).toBe(size / 65536);
      expect(ours.allocatedSize).toBeLessThanOrEqual(theirs.allocatedSize * 1.15);
      expect(qemuImgOk('compare', '-f', 'qcow2', '-F', 'raw', path, raw)).toContain('identical');
    }
  }, 60_000);
});
