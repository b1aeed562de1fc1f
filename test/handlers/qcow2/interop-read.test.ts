/**
 * Images written by qemu-img / qemu-io read back byte for byte: v2 and v3,
 * several cluster sizes, zlib and zstd compressed clusters, zero clusters,
 * backing chains (qcow2 and raw bases), and internal snapshots made by
 * `qemu-img snapshot -c` (reverted by us, checked by qemu-img).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, snapshotList, snapshotRevert } from '../../../handlers/qcow2/api.js';
import { qemuCheck, qemuImgAvailable, qemuImgOk, qemuIoOk, randomBytes, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('interop');
afterAll(() => tmp.cleanup());

const SIZE = 4 << 20;

/** A raw image with random data, zero stretches, and compressible patterns. */
function makeRaw(name: string, seed: number): { path: string; data: Buffer } {
  const next = rng(seed);
  const data = Buffer.alloc(SIZE);
  for (let at = 0; at < SIZE; at += 32768) {
    const kind = Math.floor(next() * 4);
    if (kind === 0) randomBytes(next, 32768).copy(data, at);
    else if (kind === 1) data.fill(Math.floor(next() * 256), at, at + 32768);
    else if (kind === 2) data.write('qcow2 '.repeat(5461), at, 'latin1');
    // kind 3: zeros
  }
  const path = tmp.path(name);
  writeFileSync(path, data);
  return { path, data };
}

async function readAll(path: string, chunk = 96 * 1024): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    const out = Buffer.alloc(img.size);
    // Odd-sized, two-buffer reads exercise run splitting and iov slicing.
    for (let at = 0; at < img.size; at += chunk) {
      const len = Math.min(chunk, img.size - at);
      const a = out.subarray(at, at + Math.floor(len / 3 / 512) * 512);
      const b = out.subarray(at + a.length, at + len);
      await img.read(at, [a, b]);
    }
    return out;
  } finally {
    await img.close();
  }
}

describe.skipIf(!hasQemu)('reading images made by qemu-img', () => {
  const base = hasQemu ? makeRaw('base.raw', 1) : { path: '', data: Buffer.alloc(0) };

  for (const compat of ['0.10', '1.1']) {
    for (const cluster of ['512', '65536', '2M']) {
      it(`compat=${compat} cluster_size=${cluster}: plain`, async () => {
        const p = tmp.path(`plain-${compat}-${cluster}.qcow2`);
        qemuImgOk('convert', '-O', 'qcow2', '-o', `compat=${compat},cluster_size=${cluster}`, base.path, p);
        expect((await readAll(p)).equals(base.data)).toBe(true);
      });
    }
  }

  for (const [label, opts] of [
    ['zlib', 'cluster_size=65536'],
    ['zlib 4k', 'cluster_size=4096'],
    ['zstd', 'cluster_size=65536,compression_type=zstd'],
    ['zstd 2M', 'cluster_size=2M,compression_type=zstd'],
    ['zlib v2', 'compat=0.10'],
  ] as const) {
    it(`compressed clusters (${label})`, async () => {
      const p = tmp.path(`comp-${label.replace(/ /g, '-')}.qcow2`);
      qemuImgOk('convert', '-c', '-O', 'qcow2', '-o', opts, base.path, p);
      const check = JSON.parse(qemuImgOk('check', '--output=json', p)) as { 'compressed-clusters': number };
      expect(check['compressed-clusters']).toBeGreaterThan(0);
      expect((await readAll(p)).equals(base.data)).toBe(true);
    });
  }

  it('zero clusters (v3 zero flag) and a three-deep backing chain over a raw base', async () => {
    const l1 = tmp.path('chain1.qcow2');
    const l2 = tmp.path('chain2.qcow2');
    const l3 = tmp.path('chain3.qcow2');
    qemuImgOk('create', '-f', 'qcow2', '-b', base.path, '-F', 'raw', '-o', 'cluster_size=4096', l1);
    qemuImgOk('create', '-f', 'qcow2', '-b', 'chain1.qcow2', '-F', 'qcow2', '-o', 'cluster_size=65536', l2);
    qemuImgOk('create', '-f', 'qcow2', '-b', 'chain2.qcow2', '-F', 'qcow2', '-o', 'cluster_size=512', l3);
    const expected = Buffer.from(base.data);
    qemuIoOk('-f', 'qcow2', '-c', 'write -P 0x11 4096 8192', l1);
    expected.fill(0x11, 4096, 4096 + 8192);
    qemuIoOk('-f', 'qcow2', '-c', 'write -P 0x22 1000k 100k', l2);
    expected.fill(0x22, 1000 * 1024, 1100 * 1024);
    qemuIoOk('-f', 'qcow2', '-c', 'write -z 6144 512', l3); // zero flag hides both lower layers
    expected.fill(0, 6144, 6656);
    qemuIoOk('-f', 'qcow2', '-c', 'write -z 2M 128k', l2);
    expected.fill(0, 2 << 20, (2 << 20) + 128 * 1024);
    qemuIoOk('-f', 'qcow2', '-c', 'write -P 0x33 3000k 1k', l3);
    expected.fill(0x33, 3000 * 1024, 3001 * 1024);
    expect((await readAll(l3)).equals(expected)).toBe(true);
  });

  it('base shorter than the overlay reads zeros past its end', async () => {
    const small = tmp.path('small.raw');
    writeFileSync(small, Buffer.alloc(100 * 1024, 0x44));
    const top = tmp.path('over-small.qcow2');
    qemuImgOk('create', '-f', 'qcow2', '-b', small, '-F', 'raw', top, '1M');
    const got = await readAll(top);
    expect(got.subarray(0, 100 * 1024).every((b) => b === 0x44)).toBe(true);
    expect(got.subarray(100 * 1024).every((b) => b === 0)).toBe(true);
  });

  it('internal snapshots made by qemu-img: listed, reverted, image stays clean', async () => {
    const p = tmp.path('snap.qcow2');
    qemuImgOk('convert', '-O', 'qcow2', '-o', 'cluster_size=4096', base.path, p);
    qemuImgOk('snapshot', '-c', 'before', p);
    qemuIoOk('-f', 'qcow2', '-c', 'write -P 0x77 0 1M', p);
    const after = Buffer.from(base.data);
    after.fill(0x77, 0, 1 << 20);
    expect((await readAll(p)).equals(after)).toBe(true);
    expect((await snapshotList(p)).map((s) => s.name)).toEqual(['before']);
    await snapshotRevert(p, 'before');
    expect((await readAll(p)).equals(base.data)).toBe(true);
    expect(qemuCheck(p).status).toBe(0);
    const raw = tmp.path('snap-check.raw');
    qemuImgOk('convert', '-O', 'raw', p, raw);
    expect(readFileSync(raw).equals(base.data)).toBe(true);
  });
});
