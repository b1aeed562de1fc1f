/**
 * `scripts/bench crypt` (second part): the crypt layer's whole write and
 * read path on the host, `crypt/;key=k>file//IMG` against `file//IMG2`
 * through the real core (openDevConfig: the file handler's io_uring, the
 * crypt layer's buffers and XTS), driven like the TCMU ring drives a LUN:
 * QD commands issued in one turn, all awaited, again (the kernel hands
 * commands over and takes completions in batches). Source buffers are
 * slices of one "data area" ArrayBuffer, as the kernel's mapping is.
 * Prints ops/s and MB/s per job and the garbage collections (count, ms)
 * the run caused: what the layer's allocation costs besides XTS itself.
 * Not a test: numbers depend on the machine.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import pino from 'pino';
import { formatLuks } from '../../src/crypto/luks/format.js';
import { openDevConfig } from '../../src/backstore/registry.js';
import { KeyRing } from '../../src/config/keyring.js';
import type { LunStore } from '../../src/backstore/lun-store.js';

const MS = Number(process.env.BENCH_MS ?? 1500);
const SIZE = 256 * 1024 * 1024;

const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bench-crypt-io-'));
const keyDir = join(dir, 'keys');
const passphrase = randomBytes(32);

async function makeImages(): Promise<void> {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(keyDir, { mode: 0o700 });
  writeFileSync(join(keyDir, 'k'), passphrase, { mode: 0o600 });
  for (const name of ['plain.img', 'enc.img']) {
    const fd = openSync(join(dir, name), 'w');
    ftruncateSync(fd, SIZE);
    closeSync(fd);
  }
  const fd = openSync(join(dir, 'enc.img'), 'r+');
  const { writeSync } = await import('node:fs');
  await formatLuks(async (o, b) => void writeSync(fd, b, 0, b.length, o), SIZE, {
    version: 2,
    passphrase,
    kdf: { type: 'pbkdf2', hash: 'sha256', iterations: 1000 },
    digestIterations: 1000,
  });
  closeSync(fd);
}

let gcCount = 0;
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcCount++;
    gcMs += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

/** QD commands of `bs` bytes per turn, random (or sequential) offsets, for MS ms. */
async function job(store: LunStore, write: boolean, bs: number, qd: number, random: boolean): Promise<{ iops: number; mbps: number; gcs: number; gcMs: number }> {
  // One "data area": every command's buffer is a slice of it, split in two iovecs like ring entries often are.
  const area = Buffer.allocUnsafeSlow(bs * qd);
  randomBytes(Math.min(area.length, 1 << 20)).copy(area);
  const iovs = Array.from({ length: qd }, (_, i) => {
    const b = area.subarray(i * bs, (i + 1) * bs);
    return bs >= 8192 ? [b.subarray(0, bs / 2), b.subarray(bs / 2)] : [b];
  });
  const blocks = store.size / bs;
  let next = 0;
  let ops = 0;
  const gc0 = gcCount;
  const gcMs0 = gcMs;
  const start = performance.now();
  while (performance.now() - start < MS) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < qd; i++) {
      const block = random ? Math.floor(Math.random() * blocks) : next++ % blocks;
      const p = write ? store.write(block * bs, iovs[i]!, { fua: false }) : store.read(block * bs, iovs[i]!);
      if (p) batch.push(p as Promise<void>);
    }
    await Promise.all(batch);
    ops += qd;
  }
  const s = (performance.now() - start) / 1000;
  await new Promise((r) => setTimeout(r, 50)); // let gc entries arrive
  return { iops: ops / s, mbps: (ops * bs) / s / 1e6, gcs: gcCount - gc0, gcMs: gcMs - gcMs0 };
}

await makeImages();
const log = pino({ level: 'warn' });
const keys = new KeyRing(keyDir);
const base = { blockSize: 512, readOnly: false, log, keys, size: SIZE - 16 * 1024 * 1024 };
const plain = await openDevConfig(`file/${join(dir, 'plain.img')}`, { ...base });
const enc = await openDevConfig(`crypt/;key=k>file/${join(dir, 'enc.img')}`, { ...base });
console.log(`crypt write/read path on the host (${MS} ms per job, batches of QD commands, page cache, io_uring)`);
console.log('job            lun     ops/s     MB/s  ratio   GCs  GC ms');
const jobs = [
  ['randwrite4k', true, 4096, 16, true],
  ['randread4k', false, 4096, 16, true],
  ['seqwrite512k', true, 512 * 1024, 16, false],
  ['seqread512k', false, 512 * 1024, 16, false],
] as const;
const only = process.env.BENCH_JOBS?.split(/[ ,]+/);
for (const [name, write, bs, qd, random] of jobs) {
  if (only && !only.includes(name)) continue;
  const p = await job(plain, write, bs, qd, random);
  const c = await job(enc, write, bs, qd, random);
  for (const [lun, r] of [['file', p], ['crypt', c]] as const) {
    console.log(`${name.padEnd(14)} ${lun.padEnd(6)} ${r.iops.toFixed(0).padStart(7)} ${r.mbps.toFixed(0).padStart(8)}  ${(r.iops / p.iops).toFixed(2).padStart(5)} ${String(r.gcs).padStart(5)} ${r.gcMs.toFixed(0).padStart(6)}`);
  }
}
await enc.close();
await plain.close();
keys.clear();
passphrase.fill(0);
rmSync(dir, { recursive: true, force: true });
