/**
 * Read cost of compressed qcow2 clusters, in process (no kernel): the same
 * data served from an uncompressed image and from `qemu-img convert -c`
 * images (zstd, zlib), read as 4 KiB random reads (qd16), 4 KiB
 * sequential reads (qd16) and 1 MiB sequential reads (qd8) through the
 * qcow2 data path, plus 4 KiB sequential reads one at a time; each
 * compressed image three ways (see Variant). Not a test: numbers for
 * docs/COMPRESSION.md.
 *
 *   node --import tsx scripts/bench-compress/read-cost.mts [MiB] [seconds]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage } from '../../handlers/qcow2/api.js';
import type { Qcow2Image } from '../../handlers/qcow2/image.js';
import { Qcow2Backstore } from '../../handlers/qcow2/backstore.js';
import { InflatedClusterCache } from '../../handlers/qcow2/inflated-cache.js';

const MiB = 1 << 20;
const mib = Number(process.argv[2] ?? 64);
const seconds = Number(process.argv[3] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'bench-read-'));
const data = execFileSync('tar', ['-cf', '-', '-C', '/usr/share', 'doc'], { maxBuffer: 1 << 30 }).subarray(0, mib * MiB);
const size = Math.floor(data.length / MiB) * MiB;
const raw = join(dir, 'data.raw');
writeFileSync(raw, data.subarray(0, size));

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

type Pattern = 'rand4k' | 'seq4k-qd1' | 'seq4k' | 'seq1m';
const shapes: Record<Pattern, { bs: number; depth: number }> = {
  rand4k: { bs: 4096, depth: 16 },
  'seq4k-qd1': { bs: 4096, depth: 1 },
  seq4k: { bs: 4096, depth: 16 },
  seq1m: { bs: MiB, depth: 8 },
};

async function timed(store: Qcow2Backstore, pattern: Pattern): Promise<{ iops: number; mibs: number }> {
  const { bs, depth } = shapes[pattern];
  const next = lcg(9);
  let seq = 0;
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    const buf = Buffer.alloc(bs);
    while (performance.now() < end) {
      const off = pattern === 'rand4k' ? Math.floor(next() * (size / bs)) * bs : (seq++ * bs) % size;
      await store.read(off, [buf]);
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: depth }, worker));
  const sec = (performance.now() - t0) / 1000;
  return { iops: done / sec, mibs: (done * bs) / MiB / sec };
}

/**
 * How a compressed image is read: the default cache of inflated clusters;
 * `share`: no entries kept, concurrent reads of one cluster still share an
 * inflate; `none`: every read inflates (what the code did before the cache).
 */
type Variant = 'cache' | 'share' | 'none';
function setVariant(img: Qcow2Image, v: Variant): void {
  if (v === 'share') Object.assign(img, { inflated: new InflatedClusterCache(0, img.clusterSize) });
  if (v === 'none') {
    const every = { hits: 0, misses: 0, get: (_h: number, _l: number, inflate: () => Promise<Buffer>) => inflate(), forgetHostCluster: () => {} };
    Object.assign(img, { inflated: every });
  }
}

const images: Array<[string, string[]]> = [
  ['uncompressed', []],
  ['zstd', ['-c', '-o', 'compression_type=zstd']],
  ['zlib', ['-c']],
];
console.log(`data: ${size / MiB} MiB tar of /usr/share/doc; ${seconds} s per run; node ${process.version}`);
const patterns = Object.keys(shapes) as Pattern[];
console.log(`image        variant  ${patterns.map((p) => `${p} ${p === 'seq1m' ? 'MiB/s' : 'IOPS'}`.padStart(16)).join('')}`);
for (const [name, args] of images.filter(([n]) => !process.env.IMAGES || process.env.IMAGES.split(',').includes(n))) {
  const path = join(dir, `${name}.qcow2`);
  execFileSync('qemu-img', ['convert', ...args, '-f', 'raw', '-O', 'qcow2', raw, path]);
  for (const variant of name === 'uncompressed' ? (['cache'] as Variant[]) : (['cache', 'share', 'none'] as Variant[])) {
    const img = await openImage(path, { readOnly: true });
    setVariant(img, variant);
    const store = new Qcow2Backstore(img, 512);
    await timed(store, 'seq1m'); // warm the page cache and the metadata caches
    const cells: string[] = [];
    for (const p of patterns) {
      const r = await timed(store, p);
      cells.push((p === 'seq1m' ? r.mibs.toFixed(1) : r.iops.toFixed(0)).padStart(16));
    }
    console.log(`${name.padEnd(12)} ${(name === 'uncompressed' ? '-' : variant).padEnd(8)} ${cells.join('')}`);
    await store.close();
  }
}
rmSync(dir, { recursive: true, force: true });
