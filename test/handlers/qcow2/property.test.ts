/**
 * Property tests: random writes (scattered iovs, FUA, concurrent bursts),
 * discards, write-zeroes, reads, flushes, snapshots (create / revert /
 * delete) and reopens against a plain-buffer model. Periodically and at the
 * end the image is closed and judged by qemu-img: `check` must exit 0 (no
 * corruption, no leak) and `compare` must find it equal to the model.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage } from '../../../handlers/qcow2/api.js';
import { drive, Model } from './model.js';
import { qemuImgAvailable, qemuImgOk, randomBytes, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('prop');
afterAll(() => tmp.cleanup());

interface Case {
  name: string;
  seed: number;
  make: (path: string) => Promise<Buffer>; // returns the initial guest contents
  ops: number;
  maxLen: number;
}

const MiB = 1 << 20;

const cases: Case[] = [
  { name: 'v3 4k clusters', seed: 11, ops: 300, maxLen: 64 * 1024, make: async (p) => (await createImage(p, { size: 4 * MiB, clusterSize: 4096 }), Buffer.alloc(4 * MiB)) },
  { name: 'v2 512 B clusters (refcount table growth)', seed: 12, ops: 250, maxLen: 16 * 1024, make: async (p) => (await createImage(p, { size: 4 * MiB, clusterSize: 512, version: 2 }), Buffer.alloc(4 * MiB)) },
  { name: 'v3 64k clusters', seed: 13, ops: 250, maxLen: 256 * 1024, make: async (p) => (await createImage(p, { size: 8 * MiB }), Buffer.alloc(8 * MiB)) },
  { name: 'v3 2M clusters', seed: 14, ops: 120, maxLen: 256 * 1024, make: async (p) => (await createImage(p, { size: 8 * MiB, clusterSize: 2 * MiB }), Buffer.alloc(8 * MiB)) },
  {
    name: 'v3 overlay on a qcow2 base (copy-on-write from backing)',
    seed: 15,
    ops: 250,
    maxLen: 64 * 1024,
    make: async (p) => {
      const raw = tmp.path('base15.raw');
      const data = randomBytes(rng(99), 4 * MiB);
      data.fill(0, MiB, 2 * MiB);
      writeFileSync(raw, data);
      const base = tmp.path('base15.qcow2');
      qemuImgOk('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=8192', raw, base);
      await createImage(p, { size: 4 * MiB, clusterSize: 16384, backing: 'base15.qcow2', backingFormat: 'qcow2' });
      return data;
    },
  },
  {
    name: 'v2 overlay on a raw base',
    seed: 16,
    ops: 200,
    maxLen: 64 * 1024,
    make: async (p) => {
      const raw = tmp.path('base16.raw');
      const data = randomBytes(rng(98), 3 * MiB);
      writeFileSync(raw, data);
      await createImage(p, { size: 4 * MiB, clusterSize: 4096, version: 2, backing: raw, backingFormat: 'raw' });
      return Buffer.concat([data, Buffer.alloc(MiB)]);
    },
  },
  {
    name: 'qemu-made image with 8-bit refcounts and compressed data',
    seed: 17,
    ops: 200,
    maxLen: 64 * 1024,
    make: async (p) => {
      const raw = tmp.path('base17.raw');
      // Half random, half zeros: about two compressed clusters per host cluster, so
      // snapshots do not overflow 8-bit refcounts.
      const data = Buffer.alloc(4 * MiB);
      const noise = rng(5);
      for (let i = 0; i < data.length; i += 4096) randomBytes(noise, 2048).copy(data, i);
      writeFileSync(raw, data);
      qemuImgOk('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096,refcount_bits=8', raw, p);
      return data;
    },
  },
  {
    name: 'qemu-made image with 64-bit refcounts and a qemu snapshot',
    seed: 18,
    ops: 150,
    maxLen: 64 * 1024,
    make: async (p) => {
      const raw = tmp.path('base18.raw');
      const data = randomBytes(rng(7), 2 * MiB);
      writeFileSync(raw, data);
      qemuImgOk('convert', '-O', 'qcow2', '-o', 'cluster_size=65536,refcount_bits=64', raw, p);
      qemuImgOk('snapshot', '-c', 'qemu-made', p);
      return data;
    },
  },
];

// QCOW2_FUZZ_SEEDS=n adds n extra random cases (for soak runs; the default suite stays fast).
const fuzzSeeds = Number(process.env.QCOW2_FUZZ_SEEDS ?? 0);
for (let i = 0; i < fuzzSeeds; i++) {
  const seed = 1000 + i;
  const clusterSize = [512, 4096, 65536, 16384][i % 4]!;
  const version = (i % 3 === 0 ? 2 : 3) as 2 | 3;
  cases.push({
    name: `fuzz seed ${seed} (v${version}, ${clusterSize} B clusters)`,
    seed,
    ops: 300,
    maxLen: 64 * 1024,
    make: async (p) => (await createImage(p, { size: 4 * MiB, clusterSize, version }), Buffer.alloc(4 * MiB)),
  });
}

describe.skipIf(!hasQemu)('qcow2 against a model, judged by qemu-img', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const path = tmp.path(`prop-${c.seed}.qcow2`);
      const initial = await c.make(path);
      const model = new Model(initial);
      if (c.seed === 18) model.snapshots.set('qemu-made', Buffer.from(initial));
      const stats = await drive(path, model, rng(c.seed), { ops: c.ops, maxLen: c.maxLen, snapshots: true, verifyEvery: 50, rawPath: tmp.path(`model-${c.seed}.raw`) });
      expect(stats.reopens + stats.snapshotsMade).toBeGreaterThan(0);
      expect(readFileSync(tmp.path(`model-${c.seed}.raw`)).equals(model.data)).toBe(true);
    }, 120_000);
  }
});
