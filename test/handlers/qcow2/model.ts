/**
 * A plain-buffer model of a qcow2 LUN, with snapshots, and the random
 * operation driver the property tests share.
 */
import { writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { Qcow2Backstore } from '../../../handlers/qcow2/backstore.js';
import { openImage } from '../../../handlers/qcow2/api.js';
import { createSnapshot, deleteSnapshot, listSnapshots, revertSnapshot } from '../../../handlers/qcow2/snapshots.js';
import { compactImage } from '../../../handlers/qcow2/compaction.js';
import { enableWriteCompression } from '../../../handlers/qcow2/compression-mode.js';
import type { CompressionType } from '../../../handlers/qcow2/format.js';
import { enableStaging } from '../../../handlers/qcow2/staging.js';
import { qemuCheck, qemuImg, randomBytes } from './qemu.js';

export class Model {
  data: Buffer;
  snapshots = new Map<string, Buffer>();
  constructor(initial: Buffer) {
    this.data = Buffer.from(initial);
  }
}

/** `compress`: open as a LUN with compress=zlib|zstd would (compressed writes); `stage`: with partial_writes=stage. */
export async function openStore(path: string, readOnly = false, compress?: string, stage = false): Promise<Qcow2Backstore> {
  const img = await openImage(path, { readOnly });
  if (compress) enableWriteCompression(img, compress);
  if (compress && stage) enableStaging(img);
  return new Qcow2Backstore(img, 512);
}

/** Close, then let qemu-img judge: check clean (no leaks either) and contents equal to the model. */
export async function verifyWithQemu(path: string, model: Model, rawPath: string): Promise<void> {
  const check = qemuCheck(path);
  expect(check.status, `qemu-img check: ${check.stdout}${check.stderr}`).toBe(0);
  writeFileSync(rawPath, model.data);
  const cmp = qemuImg('compare', '-f', 'qcow2', '-F', 'raw', path, rawPath);
  expect(cmp.status, `qemu-img compare: ${cmp.stdout}${cmp.stderr}`).toBe(0);
  const list = qemuImg('snapshot', '-l', path).stdout;
  for (const name of model.snapshots.keys()) expect(list).toContain(` ${name} `);
}

/** Split a buffer into 1-3 iov pieces at sector boundaries (the kernel hands us scattered pages). */
function scatter(next: () => number, buf: Buffer): Buffer[] {
  const cut = Math.floor((next() * buf.length) / 512) * 512;
  return cut > 0 && cut < buf.length ? [buf.subarray(0, cut), buf.subarray(cut)] : [buf];
}

function randomRange(next: () => number, size: number, maxLen: number): [number, number] {
  const sectors = size / 512;
  const start = Math.floor(next() * sectors);
  const len = 1 + Math.floor(next() * Math.min(maxLen / 512, sectors - start));
  return [start * 512, len * 512];
}

export interface DriveOptions {
  ops: number;
  maxLen: number;
  snapshots: boolean;
  /** Check with qemu-img (after a close) every this many ops. */
  verifyEvery: number;
  rawPath: string;
  /** Write compressed (the handler's compress= option). */
  compress?: string;
  /** With compress: stage partial writes uncompressed (partial_writes=stage); before each reopen an online compaction compresses them. */
  stage?: boolean;
  /** Data for writes (default: random bytes, which do not compress). */
  data?: (next: () => number, n: number) => Buffer;
}

export async function drive(
  path: string,
  model: Model,
  next: () => number,
  opt: DriveOptions,
): Promise<{ snapshotsMade: number; reopens: number; recompressed: number }> {
  const stats = { recompressed: 0 };
  let store = await openStore(path, false, opt.compress, opt.stage);
  let snapCounter = 0;
  let reopens = 0;
  for (let op = 0; op < opt.ops; op++) {
    const r = next();
    const size = store.size;
    if (r < 0.4) {
      const [off, len] = randomRange(next, size, opt.maxLen);
      const data = (opt.data ?? randomBytes)(next, len);
      await store.write(off, scatter(next, data), { fua: next() < 0.1 });
      data.copy(model.data, off);
    } else if (r < 0.5) {
      // Concurrent writes to disjoint sectors, often in the same (unallocated) cluster.
      const base = Math.floor((next() * size) / 65536) * 65536;
      const jobs: Promise<void>[] = [];
      for (let k = 0; k < 8; k++) {
        const off = Math.min(size - 512, base + k * 1024 + Math.floor(next() * 2) * 512);
        const data = (opt.data ?? randomBytes)(next, 512);
        data.copy(model.data, off);
        jobs.push(store.write(off, [data], { fua: false }));
      }
      // Same offset may be chosen twice with different data: last write in issue order wins in the model,
      // so make the picks distinct by construction (k * 1024 + 0|512 never collide).
      await Promise.all(jobs);
    } else if (r < 0.6) {
      const [off, len] = randomRange(next, size, opt.maxLen * 4);
      await store.discard(off, len);
      model.data.fill(0, off, off + len);
    } else if (r < 0.68) {
      const [off, len] = randomRange(next, size, opt.maxLen * 4);
      await store.writeZeroes(off, len, { unmap: next() < 0.5 });
      model.data.fill(0, off, off + len);
    } else if (r < 0.74) {
      const [off, len] = randomRange(next, size, opt.maxLen);
      const got = Buffer.alloc(len);
      await store.read(off, scatter(next, got));
      expect(got.equals(model.data.subarray(off, off + len)), `read at ${off}+${len} (op ${op})`).toBe(true);
    } else if (r < 0.78) {
      await store.flush();
    } else if (r < 0.84 && opt.snapshots) {
      const name = `s${++snapCounter}`;
      await createSnapshot(store.image, name);
      model.snapshots.set(name, Buffer.from(model.data));
    } else if (r < 0.88 && opt.snapshots && model.snapshots.size > 0) {
      const names = [...model.snapshots.keys()];
      const name = names[Math.floor(next() * names.length)]!;
      await revertSnapshot(store.image, name);
      model.data = Buffer.from(model.snapshots.get(name)!);
    } else if (r < 0.92 && opt.snapshots && model.snapshots.size > 0) {
      const names = [...model.snapshots.keys()];
      const name = names[Math.floor(next() * names.length)]!;
      await deleteSnapshot(store.image, name);
      model.snapshots.delete(name);
      expect(listSnapshots(store.image).map((s) => s.name)).toEqual([...model.snapshots.keys()]);
    } else {
      if (opt.stage && opt.compress && model.snapshots.size === 0) {
        const r = await compactImage(store.image, opt.compress as CompressionType, { recompress: 'staged', chunk: 4 });
        stats.recompressed += r.recompressedClusters;
      }
      await store.close();
      store = await openStore(path, false, opt.compress, opt.stage);
      reopens++;
    }
    if (process.env.QCOW2_PARANOID) {
      const all = Buffer.alloc(store.size);
      await store.read(0, [all]);
      if (!all.equals(model.data)) {
        let i = 0;
        while (all[i] === model.data[i]) i++;
        throw new Error(`diverged after op ${op} (r=${r.toFixed(3)}) at byte ${i}`);
      }
    }
    if ((op + 1) % opt.verifyEvery === 0) {
      await store.close();
      await verifyWithQemu(path, model, opt.rawPath);
      store = await openStore(path, false, opt.compress, opt.stage);
    }
  }
  const whole = Buffer.alloc(store.size);
  await store.read(0, [whole]);
  expect(whole.equals(model.data)).toBe(true);
  await store.close();
  await verifyWithQemu(path, model, opt.rawPath);
  return { snapshotsMade: snapCounter, reopens, ...stats };
}
