/**
 * Write cost and size of compressed qcow2 writes, in process (no kernel):
 * the same data written through the qcow2 data path with and without
 * compress=zstd|zlib, as 1 MiB sequential writes and as 4 KiB random
 * writes (read-modify-write of compressed clusters; recompressed at once,
 * and staged: stored uncompressed, compressed by a compaction afterwards,
 * timed in the "deferred" column), then the image's
 * allocated size next to `qemu-img convert -c` of the same contents, before
 * and after `image compact`. Not a test: numbers for docs/COMPRESSION.md.
 *
 *   node --import tsx scripts/bench-compress/write-cost.mts [DATA_FILE] [MiB]
 *
 * DATA_FILE defaults to a tar of /usr/share/doc (real, compressible data).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactImageFile, createImage, openImage } from '../../handlers/qcow2/api.js';
import { Qcow2Backstore } from '../../handlers/qcow2/backstore.js';
import { compactImage } from '../../handlers/qcow2/compaction.js';
import { enableWriteCompression } from '../../handlers/qcow2/compression-mode.js';
import { enableStaging } from '../../handlers/qcow2/staging.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-compress-'));
const MiB = 1 << 20;
const mib = Number(process.argv[3] ?? 64);
let data: Buffer;
if (process.argv[2]) data = readFileSync(process.argv[2]).subarray(0, mib * MiB);
else data = execFileSync('tar', ['-cf', '-', '-C', '/usr/share', 'doc'], { maxBuffer: 1 << 30 }).subarray(0, mib * MiB);
const size = Math.floor(data.length / MiB) * MiB;
data = data.subarray(0, size);
const raw = join(dir, 'data.raw');
writeFileSync(raw, data);
const allocated = (p: string) => statSync(p).blocks * 512;

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function run(name: string, compress: 'zstd' | 'zlib' | undefined, pattern: 'seq1m' | 'rand4k', stage = false): Promise<string> {
  const path = join(dir, `${name}.qcow2`);
  rmSync(path, { force: true });
  await createImage(path, { size, compressionType: compress ?? 'zlib' });
  const img = await openImage(path, { readOnly: false });
  if (compress) enableWriteCompression(img, compress);
  if (stage) enableStaging(img);
  const store = new Qcow2Backstore(img, 512);
  const t0 = performance.now();
  if (pattern === 'seq1m') {
    // queue depth 8, like a guest's writeback
    const inflight: Promise<void>[] = [];
    for (let off = 0; off < size; off += MiB) {
      inflight.push(store.write(off, [data.subarray(off, off + MiB)], { fua: false }));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
  } else {
    // every 4 KiB block once, in random order, queue depth 16
    const blocks = size / 4096;
    const order = Array.from({ length: blocks }, (_, i) => i);
    const next = lcg(7);
    for (let i = blocks - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const inflight: Promise<void>[] = [];
    for (const b of order) {
      inflight.push(store.write(b * 4096, [data.subarray(b * 4096, b * 4096 + 4096)], { fua: false }));
      if (inflight.length >= 16) await inflight.shift();
    }
    await Promise.all(inflight);
  }
  await store.flush();
  const sec = (performance.now() - t0) / 1000;
  // Staged clusters are compressed by the daemon's next compaction: time that part on its own.
  const t1 = performance.now();
  if (stage) await compactImage(img, compress!, { recompress: 'staged', threshold: 0 });
  const deferred = stage ? `${((performance.now() - t1) / 1000).toFixed(2).padStart(6)} s` : '     -  ';
  await store.close();
  const cmp = execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path, raw]).toString().trim();
  const before = allocated(path);
  let after = before;
  if (compress) {
    await compactImageFile(path);
    after = allocated(path);
  }
  const ref = join(dir, `ref-${compress ?? 'none'}.qcow2`);
  rmSync(ref, { force: true });
  if (compress) execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${compress}`, raw, ref]);
  const refSize = compress ? allocated(ref) : size;
  const row = [
    name.padEnd(16),
    pattern.padEnd(7),
    `${(size / MiB / sec).toFixed(1).padStart(7)} MiB/s`,
    deferred,
    `${(before / MiB).toFixed(1).padStart(7)} MiB`,
    `${(after / MiB).toFixed(1).padStart(7)} MiB`,
    `${compress ? (refSize / MiB).toFixed(1).padStart(7) + ' MiB' : '      -    '}`,
    `${compress ? (after / refSize).toFixed(3) : '  -  '}`,
    cmp === 'Images are identical.' ? 'identical' : cmp,
  ];
  return row.join('  ');
}

console.log(`data: ${size / MiB} MiB ${process.argv[2] ?? 'tar of /usr/share/doc'}; node ${process.version}`);
console.log('image             pattern  throughput    deferred   allocated  after-compact  convert -c  ratio  compare');
for (const pattern of (process.env.PATTERNS ?? 'seq1m,rand4k').split(',') as Array<'seq1m' | 'rand4k'>) {
  console.log(await run('uncompressed', undefined, pattern));
  console.log(await run('zstd', 'zstd', pattern));
  console.log(await run('zlib', 'zlib', pattern));
  if (pattern === 'rand4k') {
    console.log(await run('zstd staged', 'zstd', pattern, true));
    console.log(await run('zlib staged', 'zlib', pattern, true));
  }
}
rmSync(dir, { recursive: true, force: true });
