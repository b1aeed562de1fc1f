/**
 * Read cost of compressed qcow2 clusters, in process (no kernel): the same
 * data served from an uncompressed image and from `qemu-img convert -c`
 * images (zstd, zlib), read as 4 KiB random reads (qd16) and 1 MiB
 * sequential reads (qd8) through the qcow2 data path. Not a test: numbers
 * for docs/COMPRESSION.md.
 *
 *   node --import tsx scripts/bench-compress/read-cost.mts [MiB] [seconds]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage } from '../../handlers/qcow2/api.js';
import { Qcow2Backstore } from '../../handlers/qcow2/backstore.js';

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

async function timed(store: Qcow2Backstore, pattern: 'rand4k' | 'seq1m'): Promise<{ iops: number; mibs: number }> {
  const bs = pattern === 'rand4k' ? 4096 : MiB;
  const depth = pattern === 'rand4k' ? 16 : 8;
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

const images: Array<[string, string[]]> = [
  ['uncompressed', []],
  ['zstd', ['-c', '-o', 'compression_type=zstd']],
  ['zlib', ['-c']],
];
console.log(`data: ${size / MiB} MiB tar of /usr/share/doc; ${seconds} s per run; node ${process.version}`);
console.log('image          rand4k IOPS  seq1m MiB/s');
for (const [name, args] of images.filter(([n]) => !process.env.IMAGES || process.env.IMAGES.split(',').includes(n))) {
  const path = join(dir, `${name}.qcow2`);
  execFileSync('qemu-img', ['convert', ...args, '-f', 'raw', '-O', 'qcow2', raw, path]);
  const store = new Qcow2Backstore(await openImage(path, { readOnly: true }), 512);
  await timed(store, 'seq1m'); // warm the page cache and the metadata caches
  const r = await timed(store, 'rand4k');
  const s = await timed(store, 'seq1m');
  console.log(`${name.padEnd(14)} ${r.iops.toFixed(0).padStart(11)}  ${s.mibs.toFixed(1).padStart(11)}`);
  await store.close();
}
rmSync(dir, { recursive: true, force: true });
