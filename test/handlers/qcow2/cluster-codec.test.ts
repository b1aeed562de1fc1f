/**
 * Compressed clusters: the addon's thread-pool codec (native/cluster_codec.cc)
 * against the worker-thread one it replaces. Inflating, both must agree on
 * every payload, good or hostile: QEMU's formats (raw deflate with a 4 KiB
 * window, one or more zstd frames, sector padding), corrupt bytes, payloads
 * that inflate past a cluster or short of it. Deflating, each must write
 * what the other (and zlib/zstd themselves) reads back, tell zero and
 * incompressible clusters apart, and pack as densely as the other.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  compressClusters,
  decompressOffThread,
  deflateOnThreadPool,
  deflateOnWorkers,
  inflateOnThreadPool,
  inflateOnWorkers,
} from '../../../handlers/qcow2/compress-pool.js';
import type { CompressionType } from '../../../handlers/qcow2/format.js';
import { native } from '../../../src/native.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
const CLUSTER = 65536;
const hasCodec = native().inflateCluster !== undefined && native().deflateCluster !== undefined;
if (!hasCodec && process.env.CI) {
  throw new Error('the addon has no cluster codec: install libzstd-dev and zlib1g-dev (scripts/setup.sh), then rebuild it');
}
if (!hasCodec) console.warn('cluster-codec: addon built without zstd.h/zlib.h: thread-pool cases skipped (outside CI only)');

/** Compressible, not trivial: text-like runs with a counter. */
function clusterData(seed: number, size = CLUSTER): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    if (i % 64 === 0) x = (x * 1103515245 + 12345) >>> 0;
    out[i] = 97 + ((x >>> ((i % 4) * 8)) & 15);
  }
  return out;
}

function zstdFrame(data: Buffer): Buffer {
  const dst = Buffer.alloc(zstd.compressBound(data.length));
  return dst.subarray(0, new zstd.CCtx().compress(dst, data, 3));
}

/** QEMU rounds a compressed payload up to 512-byte sectors; the rest of the sector is whatever was there. */
function sectorPadded(payload: Buffer, fill = 0): Buffer {
  const out = Buffer.alloc(Math.ceil(payload.length / 512) * 512, fill);
  payload.copy(out);
  return out;
}

const inflaters: [string, (t: CompressionType, input: Buffer, cs: number) => Promise<Buffer>][] = [
  ['thread pool', inflateOnThreadPool],
  ['workers', inflateOnWorkers],
];

describe.each(inflaters)('inflate on the %s', (where, inflate) => {
  const run = where === 'workers' || hasCodec ? it : it.skip;

  run('zstd: one frame, sector padded', async () => {
    const data = clusterData(1);
    expect((await inflate('zstd', sectorPadded(zstdFrame(data)), CLUSTER)).equals(data)).toBe(true);
  });

  run('zstd: several frames fill one cluster; what follows the full cluster is ignored', async () => {
    const data = clusterData(2);
    const payload = Buffer.concat([zstdFrame(data.subarray(0, 20000)), zstdFrame(data.subarray(20000)), Buffer.from('junk after the cluster')]);
    expect((await inflate('zstd', payload, CLUSTER)).equals(data)).toBe(true);
  });

  run('zlib: QEMU raw deflate (4 KiB window), sector padded with garbage', async () => {
    const data = clusterData(3);
    const payload = sectorPadded(deflateRawSync(data, { windowBits: 12, memLevel: 9 }), 0xa5);
    expect((await inflate('zlib', payload, CLUSTER)).equals(data)).toBe(true);
  });

  run('a cluster size other than 64 KiB (4 KiB and 2 MiB)', async () => {
    for (const cs of [4096, 2 << 20]) {
      const data = clusterData(cs, cs);
      expect((await inflate('zstd', zstdFrame(data), cs)).equals(data)).toBe(true);
      expect((await inflate('zlib', deflateRawSync(data, { windowBits: 12 }), cs)).equals(data)).toBe(true);
    }
  });

  run('corrupt bytes are an EIO error, for both formats', async () => {
    const junk = Buffer.alloc(4096, 0x5a);
    await expect(inflate('zstd', junk, CLUSTER)).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('corrupt compressed data') });
    const bad = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    await expect(inflate('zlib', bad, CLUSTER)).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('corrupt compressed data') });
  });

  run('zlib with back-references beyond 4 KiB (a window QEMU never writes) inflates as zlib reads it: within the cluster', async () => {
    // A 20 KiB random block repeated: deflate's default 32 KiB window refers 20 KiB back.
    // zlib checks a distance against what is already inflated, and all of the cluster is.
    const block = randomBytes(20000);
    const data = Buffer.concat([block, block, block, block.subarray(0, CLUSTER - 60000)]);
    expect((await inflate('zlib', deflateRawSync(data), CLUSTER)).equals(data)).toBe(true);
  });

  run('a payload that inflates past one cluster is refused, nothing written beyond it', async () => {
    const twice = clusterData(5, 2 * CLUSTER);
    await expect(inflate('zlib', deflateRawSync(twice, { windowBits: 12 }), CLUSTER)).rejects.toMatchObject({
      message: expect.stringContaining('data inflates beyond one cluster'),
    });
    await expect(inflate('zstd', zstdFrame(twice), CLUSTER)).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('corrupt compressed data') });
  });

  run('a payload short of a cluster is refused with the byte count', async () => {
    const half = clusterData(6, CLUSTER / 2);
    for (const type of ['zstd', 'zlib'] as const) {
      const payload = type === 'zstd' ? zstdFrame(half) : deflateRawSync(half, { windowBits: 12 });
      await expect(inflate(type, payload, CLUSTER)).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining(`decompressed to ${CLUSTER / 2} bytes, expected ${CLUSTER}`) });
    }
  });
});

describe('decompressOffThread', () => {
  it(`uses the thread pool when the addon has the codec (here: ${hasCodec ? 'yes' : 'no'}), and many at once stay independent`, async () => {
    const clusters = Array.from({ length: 32 }, (_, i) => clusterData(100 + i));
    const out = await Promise.all(clusters.map((c, i) => decompressOffThread(i % 2 ? 'zstd' : 'zlib', i % 2 ? zstdFrame(c) : deflateRawSync(c, { windowBits: 12 }), CLUSTER)));
    out.forEach((o, i) => expect(o.equals(clusters[i]!), `cluster ${i}`).toBe(true));
  });

  it.skipIf(!hasCodec)('the addon checks its arguments before queueing anything', () => {
    const inflate = native().inflateCluster!;
    const cb = () => {};
    expect(() => inflate(2 as 0, Buffer.alloc(1), Buffer.alloc(1), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => inflate(1, Buffer.alloc(1), Buffer.alloc(0), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => inflate(1, Buffer.alloc(1), Buffer.alloc((2 << 20) + 1), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => inflate(1, 'x' as unknown as Buffer, Buffer.alloc(1), cb)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

const deflaters: [string, typeof deflateOnWorkers][] = [
  ['thread pool', deflateOnThreadPool],
  ['workers', deflateOnWorkers],
];

describe.each(deflaters)('deflate on the %s', (where, deflate) => {
  const run = where === 'workers' || hasCodec ? it : it.skip;

  run('every payload reads back through both inflaters and through zlib/zstd themselves; zero and incompressible clusters are told apart', async () => {
    for (const type of ['zstd', 'zlib'] as const) {
      const clusters = [clusterData(7), Buffer.alloc(CLUSTER), randomBytes(CLUSTER), clusterData(8)];
      const [a, zero, random, b] = await deflate(type, CLUSTER, clusters);
      expect(zero).toEqual({ zero: true });
      expect(random!.zero).toBe(false);
      expect(random!.data, 'random data is stored raw').toBeUndefined();
      for (const [r, c] of [[a!, clusters[0]!], [b!, clusters[3]!]] as const) {
        expect(r.zero).toBe(false);
        expect(r.data!.length).toBeLessThan(CLUSTER);
        const padded = sectorPadded(r.data!);
        expect((await inflateOnWorkers(type, padded, CLUSTER)).equals(c)).toBe(true);
        if (hasCodec) expect((await inflateOnThreadPool(type, padded, CLUSTER)).equals(c)).toBe(true);
        const direct = Buffer.alloc(CLUSTER);
        const n = type === 'zlib' ? inflateRawSync(r.data!, { windowBits: 12 }).copy(direct) : zstd.decompress(direct, r.data!);
        expect(n).toBe(CLUSTER);
        expect(direct.equals(c)).toBe(true);
      }
    }
  });

  run('a zstd frame records its content size (QEMU sizes its output from it)', async () => {
    const [r] = await deflate('zstd', CLUSTER, [clusterData(9)]);
    expect(zstd.getFrameContentSize(r!.data!)).toBe(CLUSTER);
  });
});

describe('both deflaters', () => {
  it.skipIf(!hasCodec)('pack within 1% of each other (same codec parameters)', async () => {
    const clusters = Array.from({ length: 16 }, (_, i) => clusterData(200 + i));
    for (const type of ['zstd', 'zlib'] as const) {
      const pool = await deflateOnThreadPool(type, CLUSTER, clusters);
      const workers = await deflateOnWorkers(type, CLUSTER, clusters);
      const sum = (rs: { data?: Buffer }[]) => rs.reduce((n, r) => n + (r.data?.length ?? CLUSTER), 0);
      expect(Math.abs(sum(pool) - sum(workers)) / sum(workers), type).toBeLessThan(0.01);
    }
  });

  it(`compressClusters uses the thread pool when the addon has the codec (here: ${hasCodec ? 'yes' : 'no'}); a 1 MiB batch round-trips`, async () => {
    const clusters = Array.from({ length: 16 }, (_, i) => clusterData(300 + i));
    const out = await compressClusters('zstd', CLUSTER, clusters);
    for (let i = 0; i < clusters.length; i++) expect((await decompressOffThread('zstd', out[i]!.data!, CLUSTER)).equals(clusters[i]!)).toBe(true);
  });

  it.skipIf(!hasCodec)('the addon checks its deflate arguments before queueing anything', () => {
    const deflate = native().deflateCluster!;
    const cb = () => {};
    expect(() => deflate(3 as 0, Buffer.alloc(8), Buffer.alloc(8), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => deflate(1, Buffer.alloc(1), Buffer.alloc(8), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => deflate(1, Buffer.alloc(8), Buffer.alloc(0), cb)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => deflate(1, Buffer.alloc(8), 'x' as unknown as Buffer, cb)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
