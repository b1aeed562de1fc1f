/**
 * A write that spans two L2 tables looks its clusters up one at a time and
 * starts its in-place writes only when the whole range is looked up. If the
 * second lookup has to load a table, the first cluster's host offset sits
 * in the write's hands for the length of that read. A flush that releases
 * that host cluster meanwhile (a discard freed it) must wait for the write,
 * or the allocator hands the cluster to another guest cluster and the late
 * in-place write lands in that cluster's data.
 */
import { afterAll, expect, it } from 'vitest';
import { createImage, openImage } from '../../../handlers/qcow2/api.js';
import { writeRange } from '../../../handlers/qcow2/write-path.js';
import { zeroRange } from '../../../handlers/qcow2/zero-path.js';
import { tempDir } from './qemu.js';

const tmp = tempDir('inplace-race');
afterAll(() => tmp.cleanup());

const CS = 4096;
/** With 4 KiB clusters an L2 table has 512 entries: guest cluster 511 ends table 0, 512 starts table 1. */
const LAST_OF_TABLE0 = 511;
const OTHER = 100;

type Image = Awaited<ReturnType<typeof openImage>>;

/** A point where a patched read of the image file stops: `hit` once a read gets there, which goes on (or fails with `failWith`) at `open()`. */
function gate(offset: number, failWith?: Error) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  let reached!: () => void;
  const hit = new Promise<void>((r) => (reached = r));
  return { offset, failWith, open, opened, hit, reached };
}

/** Make reads of `img` at each gate's offset stop there; returns the function that puts the plain read back. */
function holdReads(img: Image, ...gates: ReturnType<typeof gate>[]): () => void {
  const fileRead = img.fh.read.bind(img.fh);
  img.fh.read = (async (...args: Parameters<typeof fileRead>) => {
    const g = gates.find((x) => x.offset === args[3]);
    if (g) {
      g.reached();
      await g.opened;
      if (g.failWith) throw g.failWith;
    }
    return fileRead(...args);
  }) as typeof img.fh.read;
  return () => {
    img.fh.read = fileRead;
  };
}

it("a host cluster freed while an in-place write still holds its offset is not reused before that write lands", async () => {
  const path = tmp.path('race.qcow2');
  await createImage(path, { size: 8 << 20, clusterSize: CS });
  let img = await openImage(path, { readOnly: false });
  await writeRange(img, LAST_OF_TABLE0 * CS, [Buffer.alloc(2 * CS, 0x11)], 2 * CS);
  await img.close();

  img = await openImage(path, { readOnly: false }); // empty caches: every lookup loads its table
  const table1 = img.l2OffsetFor(1);
  const load1 = gate(table1); // the load of L2 table 1 waits until opened
  const restore = holdReads(img, load1);
  try {
    expect(table1).toBeGreaterThan(0);
    // The last sector of cluster 511 (in place) and the first of cluster 512 (table 1, held).
    const spanning = writeRange(img, (LAST_OF_TABLE0 + 1) * CS - 512, [Buffer.alloc(1024, 0x22)], 1024);
    await load1.hit;
    const freed = (await img.entryAt(LAST_OF_TABLE0)).host;
    expect(freed).toBeGreaterThan(0);
    // The guest discards cluster 511 (racing its own write there: either result is fine for
    // that sector) and flushes; then writes a cluster that takes the freed host cluster.
    await zeroRange(img, LAST_OF_TABLE0 * CS, CS, true);
    const flushed = img.flush();
    const other = flushed.then(() => writeRange(img, OTHER * CS, [Buffer.alloc(CS, 0x33)], CS));
    // Give the flush and the write every chance to finish before the held load does.
    const first = await Promise.race([other.then(() => 'other write'), new Promise((r) => setTimeout(() => r('timeout'), 300))]);
    load1.open();
    await Promise.all([spanning, other]);

    const back = Buffer.alloc(CS);
    await img.read(OTHER * CS, [back]);
    const reused = (await img.entryAt(OTHER)).host === freed;
    expect({ first, reused, intact: back.equals(Buffer.alloc(CS, 0x33)) }).toEqual({ first: 'timeout', reused: true, intact: true });
    // Cluster 512's half of the spanning write landed where it belongs.
    const head = Buffer.alloc(512);
    await img.read((LAST_OF_TABLE0 + 1) * CS, [head]);
    expect(head.equals(Buffer.alloc(512, 0x22))).toBe(true);
  } finally {
    restore();
    await img.close();
  }
});

it('a lookup that fails while a flush waits for the held hosts fails the write; the flush and the write\'s other clusters finish', async () => {
  const path = tmp.path('race-error.qcow2');
  await createImage(path, { size: 8 << 20, clusterSize: CS });
  let img = await openImage(path, { readOnly: false });
  // Clusters in L2 tables 0, 1 and 2 (so each table exists), and one to discard.
  for (const gc of [LAST_OF_TABLE0, 700, 1100, OTHER]) await writeRange(img, gc * CS, [Buffer.alloc(CS, 0x11)], CS);
  await img.close();

  img = await openImage(path, { readOnly: false });
  const load1 = gate(img.l2OffsetFor(1));
  const load2 = gate(img.l2OffsetFor(2), Object.assign(new Error('EIO: injected'), { code: 'EIO' }));
  const restore = holdReads(img, load1, load2);
  try {
    // From the last sector of 511 (in place) through table 1 (unallocated clusters but 700:
    // allocating writes, each needing the metadata lock) to the first sector of 1024 (table 2: fails).
    const from = (LAST_OF_TABLE0 + 1) * CS - 512;
    const to = 1024 * CS + 512;
    const spanning = writeRange(img, from, [Buffer.alloc(to - from, 0x22)], to - from);
    spanning.catch(() => {});
    await load1.hit; // 511's host is held
    await zeroRange(img, OTHER * CS, CS, true); // a free for the flush to apply
    const flushed = img.flush();
    await new Promise((r) => setTimeout(r, 100)); // the flush now holds the lock and waits for the held hosts
    load1.open(); // table 1's clusters start allocating writes: they wait for the lock
    await load2.hit;
    load2.open(); // table 2's lookup fails
    await expect(spanning).rejects.toThrow(/EIO/);
    await flushed;
    // The allocating writes started before the error finished before it was reported.
    const back = Buffer.alloc(CS);
    await img.read(800 * CS, [back]);
    expect(back.equals(Buffer.alloc(CS, 0x22))).toBe(true);
  } finally {
    restore();
    await img.close();
  }
}, 20_000);
