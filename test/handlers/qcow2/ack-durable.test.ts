/**
 * What an acknowledged command leaves in the image FILE, with the daemon
 * still running and no flush: a second, independent reader of the file (our
 * own read-only open, qemu-img) must already see every acknowledged write,
 * discard and write-zeroes, since a killed process leaves exactly the file
 * contents (page cache) behind. crash.test.ts kills real processes; this
 * file pins the individual paths (new L2 table + L1 entry, L2 copy-on-write
 * after a snapshot, discard, write-zeroes, over a backing file) and the
 * metadata cache's dirty-span write-back.
 */
import { open, writeFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, imageInfo, openImage, snapshotCreate } from '../../../handlers/qcow2/api.js';
import { Qcow2Backstore } from '../../../handlers/qcow2/backstore.js';
import { MetadataCache } from '../../../handlers/qcow2/metadata-cache.js';
import { qemuCheck, qemuImgAvailable, randomBytes, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('ack-durable');
afterAll(() => tmp.cleanup());

const MiB = 1 << 20;
const CS = 65536;

/** What an independent reader of the file sees at `offset` right now. */
async function readBySecondOpener(path: string, offset: number, length: number): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    const buf = Buffer.alloc(length);
    await img.read(offset, [buf]);
    return buf;
  } finally {
    await img.close();
  }
}

/** qemu-img check on the live file: no corruption; leaks (queued frees) allowed. */
function expectNoCorruption(path: string): void {
  const r = qemuCheck(path);
  const report = JSON.parse(r.stdout || '{}') as { corruptions?: number };
  expect(r.status === 0 || r.status === 3, `qemu-img check ${r.status}\n${r.stdout}${r.stderr}`).toBe(true);
  expect(report.corruptions ?? 0).toBe(0);
}

async function openStore(path: string): Promise<Qcow2Backstore> {
  return new Qcow2Backstore(await openImage(path, { readOnly: false }), 512);
}

describe.skipIf(!hasQemu)('qcow2: acknowledged means in the file, before any flush', () => {
  const next = rng(99);

  it('allocating writes, including ones that need a new L2 table and L1 entry', async () => {
    const path = tmp.path('alloc.qcow2');
    // 64 KiB clusters: one L2 table maps 512 MiB, so 600 MiB needs a second one.
    await createImage(path, { size: 1024 * MiB, clusterSize: CS });
    const store = await openStore(path);
    try {
      const writes = [0, 5 * CS + 4096, 600 * MiB, 600 * MiB + 3 * CS - 512].map((offset) => ({ offset, data: randomBytes(next, 8192) }));
      await Promise.all(writes.map((w) => store.write(w.offset, [w.data], { fua: false })));
      for (const w of writes) expect((await readBySecondOpener(path, w.offset, w.data.length)).equals(w.data), `write at ${w.offset}`).toBe(true);
      expectNoCorruption(path);
      // Unsynced metadata is out: the header says so (a reboot now makes the next open rebuild refcounts).
      expect((await imageInfo(path)).dirty).toBe(true);
    } finally {
      await store.close();
    }
    expect((await imageInfo(path)).dirty, 'a clean close clears the dirty bit').toBe(false);
    expect(qemuCheck(path).status).toBe(0);
  });

  it('a write into an L2 table shared with a snapshot (table copy-on-write)', async () => {
    const path = tmp.path('cow.qcow2');
    await createImage(path, { size: 64 * MiB, clusterSize: CS });
    let store = await openStore(path);
    const before = randomBytes(next, CS);
    await store.write(0, [before], { fua: false });
    await store.close();
    await snapshotCreate(path, 's1');
    store = await openStore(path);
    try {
      const after = randomBytes(next, 4096);
      await store.write(CS + 4096, [after], { fua: false });
      await store.write(512, [after.subarray(0, 512)], { fua: false });
      expect((await readBySecondOpener(path, CS + 4096, 4096)).equals(after)).toBe(true);
      const first = Buffer.from(before);
      after.copy(first, 512, 0, 512);
      expect((await readBySecondOpener(path, 0, CS)).equals(first)).toBe(true);
      expectNoCorruption(path);
    } finally {
      await store.close();
    }
  });

  it('discard and write-zeroes read zeros at once; over a backing file too', async () => {
    const base = tmp.path('base.raw');
    await writeFile(base, Buffer.alloc(8 * MiB, 0x77));
    for (const backing of [undefined, base]) {
      const path = tmp.path(`zero-${backing ? 'backed' : 'plain'}.qcow2`);
      await createImage(path, { size: 8 * MiB, clusterSize: CS, ...(backing ? { backing, backingFormat: 'raw' } : {}) });
      const store = await openStore(path);
      try {
        await store.write(0, [randomBytes(next, 8 * CS)], { fua: false });
        await store.flush(); // the data is durable; only the discards are in question
        await store.discard(CS, 2 * CS); // whole clusters
        await store.discard(4 * CS + 512, 1024); // a partial cluster (written zeros)
        await store.writeZeroes(6 * CS, CS, { unmap: false }); // zero flag, cluster kept
        await store.discard(7 * MiB, CS); // backing data only: hidden by a zero entry (or nothing to do)
        expect((await readBySecondOpener(path, CS, 2 * CS)).every((b) => b === 0)).toBe(true);
        expect((await readBySecondOpener(path, 4 * CS + 512, 1024)).every((b) => b === 0)).toBe(true);
        expect((await readBySecondOpener(path, 6 * CS, CS)).every((b) => b === 0)).toBe(true);
        expect((await readBySecondOpener(path, 7 * MiB, CS)).every((b) => b === 0), `backing ${backing}`).toBe(true);
        expectNoCorruption(path);
      } finally {
        await store.close();
      }
      // The frees queued by the discards were applied at close: nothing leaks.
      expect(qemuCheck(path).status).toBe(0);
    }
  });
});

describe('qcow2 metadata cache: write-back of dirty spans', () => {
  it('writes only the 512-byte sectors holding changed bytes, and nothing when clean', async () => {
    const path = tmp.path('cache.bin');
    const table = 65536;
    await writeFile(path, Buffer.alloc(2 * table, 0x11));
    const fh = await open(path, 'r+');
    try {
      const cache = new MetadataCache(fh, table, 4);
      const t = await cache.get(table);
      // Someone else's bytes in the file (a marker), different from the cached copy:
      // a write-back that rewrote the whole table would destroy them.
      await fh.write(Buffer.alloc(table, 0x22), 0, table, table);
      t.fill(0xaa, 1000, 1008); // one entry in sector 1
      cache.markDirty(table, 1000, 1008);
      t.fill(0xbb, 3000, 3008); // another in sector 5: one span, sectors 1..5
      cache.markDirty(table, 3000, 3008);
      expect(cache.dirtyCount).toBe(1);
      const changesBefore = cache.changes;
      await cache.writeDirty();
      expect(cache.dirtyCount).toBe(0);
      expect(cache.changes).toBe(changesBefore);
      const onDisk = Buffer.alloc(table);
      await fh.read(onDisk, 0, table, table);
      // Sectors 1..5 (bytes 512..3071) come from the cache, the rest is untouched.
      expect(onDisk.subarray(0, 512).every((b) => b === 0x22)).toBe(true);
      expect(onDisk.subarray(512, 3072).equals(t.subarray(512, 3072))).toBe(true);
      expect(onDisk.subarray(3072).every((b) => b === 0x22)).toBe(true);
      // Clean: a second write-back writes nothing.
      await fh.write(Buffer.alloc(table, 0x33), 0, table, table);
      await cache.writeDirty();
      await fh.read(onDisk, 0, table, table);
      expect(onDisk.every((b) => b === 0x33)).toBe(true);
      // A freshly installed table is dirty as a whole.
      cache.install(0, Buffer.alloc(table, 0x44));
      await cache.writeDirty();
      await fh.read(onDisk, 0, table, 0);
      expect(onDisk.every((b) => b === 0x44)).toBe(true);
    } finally {
      await fh.close();
    }
  });

  it('commands completing together share metadata write-backs (group commit)', async () => {
    const path = tmp.path('group.qcow2');
    await createImage(path, { size: 256 * MiB, clusterSize: CS });
    const img = await openImage(path, { readOnly: false });
    const store = new Qcow2Backstore(img, 512);
    let writeBacks = 0;
    const writeMetadata = img.writeMetadata.bind(img);
    img.writeMetadata = () => (writeBacks++, writeMetadata());
    try {
      const n = 256;
      const buf = Buffer.alloc(4096, 1);
      await Promise.all(Array.from({ length: n }, (_, i) => store.write(i * CS, [buf], { fua: false })));
      await store.flush();
      writeBacks = 0;
      // The discards start in the same turn and do cache-only work (no data
      // I/O), so every one finds the first write-back still waiting to start.
      await Promise.all(Array.from({ length: n }, (_, i) => store.discard(i * CS, CS)));
      expect(writeBacks).toBe(1);
    } finally {
      await store.close();
    }
  });
});
