/**
 * Crafted and damaged images (issue 16, findings 1-2 and 6): each finding
 * reproduced on an image made by qemu-img and then patched, and the wanted
 * behaviour asserted: writes that would destroy metadata are refused and the
 * image is marked corrupt; bad offsets are clean ECORRUPT errors naming the
 * image; nothing is left unhandled; backing chains are bounded; absurd
 * header claims are refused before anything big is allocated; check yields.
 */
import { copyFileSync, readdirSync, readlinkSync, renameSync } from 'node:fs';
import pino from 'pino';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import qcow2 from '../../../handlers/qcow2/index.js';
import { checkImage, imageInfo, openImage } from '../../../handlers/qcow2/api.js';
import { checkConsistency } from '../../../handlers/qcow2/check.js';
import { MAX_BACKING_DEPTH } from '../../../handlers/qcow2/image.js';
import type { OpenContext } from '../../../src/backstore/types.js';
import { bytesOf, COPIED, entry, geometry, hostOf, INCOMPAT_CORRUPT, incompatibleBits, u32, u64, writeAt } from './craft.js';
import { qemuImgAvailable, qemuImgOk, qemuIoOk, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('hostile');
afterAll(() => tmp.cleanup());

const logged: Array<Record<string, unknown>> = [];
const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
const ctx = (over: Partial<OpenContext> = {}): OpenContext => ({ blockSize: 512, readOnly: false, log, options: {}, ...over });

let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  logged.length = 0;
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
});

/** A qemu-made image with `writes` (qemu-io commands) applied. */
function qemuImage(name: string, opts: string, size: string, writes: string[] = []): string {
  const path = tmp.path(name);
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', opts, path, size);
  if (writes.length > 0) qemuIoOk(...writes.flatMap((w) => ['-c', w]), path);
  return path;
}

/** Descriptors this process holds on files under the test directory (other test files run in parallel). */
const openFds = () =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(tmp.dir);
    } catch {
      return false;
    }
  }).length;
const settle = () => new Promise((r) => setTimeout(r, 50));

describe.skipIf(!hasQemu)('qcow2 hostile images', () => {
  it('refcount table entry pointing at the L1 table: opened writable, the image is marked corrupt and nothing is written over the L1', async () => {
    const path = qemuImage('rt-l1.qcow2', 'cluster_size=65536', '64M', ['write -P 0x11 0 128k']);
    const g = geometry(path);
    writeAt(path, g.refcountTableOffset, u64(g.l1Offset));
    const l1Before = bytesOf(path, g.l1Offset, g.clusterSize);
    const store = await qcow2.open(path, ctx());
    expect(incompatibleBits(path) & INCOMPAT_CORRUPT).toBe(INCOMPAT_CORRUPT);
    await expect(store.write!(1 << 20, [Buffer.alloc(65536, 0x22)], { fua: false })).rejects.toMatchObject({ code: 'EROFS' });
    const back = Buffer.alloc(65536);
    await store.read(0, [back]);
    expect(back.equals(Buffer.alloc(65536, 0x11))).toBe(true);
    await store.close();
    expect(bytesOf(path, g.l1Offset, g.clusterSize).equals(l1Before)).toBe(true);
    const line = logged.find((l) => l.path === path);
    expect(String(line?.reason)).toMatch(/refcount-block .* overlaps the l1/);
  });

  it('refcount of the L1 cluster zeroed: the allocator would hand it out; the write is refused (ECORRUPT) and the image marked corrupt', async () => {
    const path = qemuImage('rc-zero.qcow2', 'cluster_size=65536,refcount_bits=16', '64M', ['write -P 0x11 0 64k']);
    const g = geometry(path);
    const block = hostOf(entry(path, g.refcountTableOffset, 0));
    const l1Cluster = g.l1Offset / g.clusterSize;
    writeAt(path, block + l1Cluster * 2, Buffer.alloc(2)); // refcount(L1 cluster) = 0
    const l1Before = bytesOf(path, g.l1Offset, g.clusterSize);
    const store = await qcow2.open(path, ctx());
    // 600 MiB: a second L2 table is needed, and the first free cluster is the L1's.
    await expect(store.write!(0, [Buffer.alloc(512, 0x33)], { fua: false })).resolves.toBeUndefined(); // in place, fine
    const err = await store.write!(40 << 20, [Buffer.alloc(65536, 0x33)], { fua: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ECORRUPT' });
    expect(String((err as Error).message)).toContain(path);
    await expect(store.write!(0, [Buffer.alloc(512)], { fua: false })).rejects.toMatchObject({ code: 'EROFS' });
    await store.close(); // the corrupt bit is written in the background; close waits for it
    expect(incompatibleBits(path) & INCOMPAT_CORRUPT).toBe(INCOMPAT_CORRUPT);
    expect(bytesOf(path, g.l1Offset, g.clusterSize).equals(l1Before)).toBe(true);
  });

  it('L2 entry whose data points at the refcount table: the in-place write is refused before any I/O', async () => {
    const path = qemuImage('l2-rt.qcow2', 'cluster_size=65536', '64M', ['write -P 0x11 0 64k']);
    const g = geometry(path);
    const l2 = hostOf(entry(path, g.l1Offset, 0));
    writeAt(path, l2, u64(COPIED | BigInt(g.refcountTableOffset)));
    const rtBefore = bytesOf(path, g.refcountTableOffset, g.clusterSize);
    const store = await qcow2.open(path, ctx());
    await expect(store.write!(0, [Buffer.alloc(4096, 0x44)], { fua: false })).rejects.toMatchObject({ code: 'ECORRUPT' });
    await store.close();
    expect(bytesOf(path, g.refcountTableOffset, g.clusterSize).equals(rtBefore)).toBe(true);
    expect(incompatibleBits(path) & INCOMPAT_CORRUPT).toBe(INCOMPAT_CORRUPT);
  });

  it('L2 entry with a host offset >= 2^53: reads and writes fail with a clean ECORRUPT naming the image, no I/O is issued', async () => {
    const path = qemuImage('l2-huge.qcow2', 'cluster_size=65536', '64M', ['write -P 0x11 0 128k']);
    const g = geometry(path);
    const l2 = hostOf(entry(path, g.l1Offset, 0));
    writeAt(path, l2, u64(COPIED | (1n << 53n)));
    const ro = await qcow2.open(path, ctx({ readOnly: true }));
    const err = await Promise.resolve(ro.read(0, [Buffer.alloc(4096)])).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ECORRUPT' });
    expect((err as Error).message).toMatch(new RegExp(`${path}.*0x20000000000000.*beyond the end`));
    // The neighbouring cluster still reads.
    const ok = Buffer.alloc(65536);
    await ro.read(65536, [ok]);
    expect(ok.equals(Buffer.alloc(65536, 0x11))).toBe(true);
    await ro.close();
    const rw = await qcow2.open(path, ctx());
    await expect(rw.write!(0, [Buffer.alloc(4096)], { fua: false })).rejects.toMatchObject({ code: 'ECORRUPT' });
    await rw.close();
  });

  it('a multi-cluster write whose lookup throws mid-range: started writes are awaited, no rejection is left unhandled', async () => {
    // 512 B clusters: one L2 table covers 32 KiB. Clusters 62..63 are written
    // by qemu; cluster 62 is then pointed at the refcount table (its in-place
    // write is refused), and L1 entry 1 is made unaligned (the lookup of
    // cluster 64 throws after the first job was started).
    const path = qemuImage('midthrow.qcow2', 'cluster_size=512', '1M', ['write -P 0x11 31744 1024']);
    const g = geometry(path);
    const l2 = hostOf(entry(path, g.l1Offset, 0));
    writeAt(path, l2 + 62 * 8, u64(COPIED | BigInt(g.refcountTableOffset)));
    writeAt(path, g.l1Offset + 8, u64(COPIED | 0x12345600n));
    const store = await qcow2.open(path, ctx());
    await expect(store.write!(31744, [Buffer.alloc(2048, 0x55)], { fua: false })).rejects.toMatchObject({ code: 'ECORRUPT' });
    await settle();
    expect(unhandled).toEqual([]);
    await store.close();
  });

  it('a self-referencing backing file is refused with a clear message, and no descriptors are left open', async () => {
    const path = tmp.path('self.qcow2');
    const other = tmp.path('self-tmp.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', path, '-F', 'qcow2', other, '1M');
    renameSync(other, path);
    const before = openFds();
    const err = await qcow2.open(path, ctx({ readOnly: true })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ECORRUPT' });
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(/backing chain loops/);
    expect(openFds()).toBe(before);
  });

  it(`a backing chain deeper than ${MAX_BACKING_DEPTH} images is refused; descriptors stay bounded and are released`, async () => {
    let prev = tmp.path('chain-0.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', prev, '1M');
    for (let i = 1; i <= MAX_BACKING_DEPTH; i++) {
      const next = tmp.path(`chain-${i}.qcow2`);
      qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', prev, '-F', 'qcow2', next, '1M');
      prev = next;
    }
    const before = openFds();
    await expect(qcow2.open(prev, ctx({ readOnly: true }))).rejects.toMatchObject({
      code: 'ENOTSUP',
      message: expect.stringMatching(new RegExp(`${prev}.*deeper than ${MAX_BACKING_DEPTH}`)),
    });
    expect(openFds()).toBe(before);
    // One image less is fine.
    const ok = await qcow2.open(tmp.path(`chain-${MAX_BACKING_DEPTH - 1}.qcow2`), ctx({ readOnly: true }));
    await ok.close();
  });

  it.each([
    ['l1_size', 36, u32(0x7fffffff), /l1_size 2147483647 exceeds the 32 MiB limit/],
    ['nb_snapshots', 60, u32(0xffffffff), /nb_snapshots 4294967295 exceeds the limit of 65536/],
    ['refcount_table_clusters', 56, u32(0x10000000), /refcount_table_clusters 268435456 exceeds the 8 MiB limit/],
    ['l1_table_offset', 40, u64(1n << 62n), /l1_table_offset .* larger than any usable image/],
  ])('a huge %s is refused before anything big is allocated', async (_field, at, value, message) => {
    const path = tmp.path(`huge-${at}.qcow2`);
    qemuImgOk('create', '-q', '-f', 'qcow2', path, '64M');
    writeAt(path, at, value);
    const before = process.memoryUsage().arrayBuffers;
    const err = await qcow2.open(path, ctx()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ECORRUPT' });
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(message);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
  });

  it('a snapshot table that claims more than the file holds is refused naming the field', async () => {
    const path = qemuImage('snaps.qcow2', 'cluster_size=65536', '16M', ['write -P 1 0 64k']);
    qemuImgOk('snapshot', '-c', 's1', path);
    // nb_snapshots 65536 entries of a table that ends at the end of the file.
    writeAt(path, 60, u32(65536));
    await expect(imageInfo(path)).rejects.toMatchObject({
      code: 'ECORRUPT',
      message: expect.stringMatching(/snapshot table runs past the end of the file/),
    });
  });

  it('a backing file name with a NUL byte is refused naming the field (found by the fuzz target)', async () => {
    const path = tmp.path('nul-backing.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', tmp.path('some-base.qcow2'), '-F', 'qcow2', path, '1M');
    const h = bytesOf(path, 0, 20);
    writeAt(path, Number(h.readBigUInt64BE(8)) + 2, Buffer.alloc(1));
    await expect(imageInfo(path)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/backing file name contains a NUL byte/) });
  });

  it('garbage and truncated images give StorageErrors naming the image, never raw Node errors', async () => {
    const base = tmp.path('trunc-src.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', base, '16M');
    for (const len of [0, 4, 71, 100, 300]) {
      const path = tmp.path(`trunc-${len}.qcow2`);
      copyFileSync(base, path);
      writeAt(path, 0, Buffer.alloc(0));
      const { truncateSync } = await import('node:fs');
      truncateSync(path, len);
      const err = await openImage(path, { readOnly: true }).then(
        (img) => img.close().then(() => undefined),
        (e: unknown) => e,
      );
      expect(err, `length ${len}`).toBeInstanceOf(Error);
      expect((err as Error & { code: string }).code).toMatch(/^E[A-Z]+$/);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).not.toMatch(/ERR_|Invalid typed array|out of range index/);
    }
  });

  it('check of a 2 MiB-cluster, refcount_bits=1 image is correct and gives the event loop back while it runs', async () => {
    const path = qemuImage('rb1.qcow2', 'cluster_size=2M,refcount_bits=1', '64G', ['write -P 0x5a 0 8M', 'write -P 0xa5 1G 4M']);
    // Same result as before the change: a clean image.
    expect(await checkImage(path)).toMatchObject({ corruptions: 0, leaks: 0 });
    // With a 0 ms slice the check yields after every chunk: count the turns.
    const img = await openImage(path, { readOnly: true });
    let turns = 0;
    let running = true;
    const spin = () => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const res = await img.lock.run(() => checkConsistency(img, undefined, { sliceMs: 0 }));
    running = false;
    await img.close();
    expect(res).toMatchObject({ corruptions: 0, leaks: 0 });
    // One refcount block covers 16 Mi clusters, scanned in 4096-entry chunks.
    expect(turns).toBeGreaterThan(1000);
  });
});
