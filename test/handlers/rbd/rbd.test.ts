/**
 * The rbd handler against a real Ceph cluster (scripts/ceph.sh): data goes
 * through librbd and is checked with the rbd CLI, a second client.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import rbdHandler from '../../../handlers/rbd/index.js';
import type { RbdImage } from '../../../handlers/rbd/librbd.js';
import { ConfigError } from '../../../src/backstore/config-error.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import { validateBackstore } from '../../../src/backstore/validate-backstore.js';
import type { ControlContext, LunStore, OpenContext } from '../../../src/backstore/types.js';
import { ScsiDisk } from '../../../src/scsi/index.js';
import { openContext, silentLog } from '../../backstore/context.js';
import { IDENTITY, be, command, run, sense } from '../../scsi/harness.js';
import { execFileSync } from 'node:child_process';
import { entityAddresses } from '../../../handlers/rbd/predecessor.js';
import { CONF, cephMissing, freshImage, rbdCli, startCluster, stopCluster } from './cluster.js';
import { withImage } from './session.js';
import { CEPH_THREAD, SCHED_BATCH, SCHED_OTHER, ioContextWakeupsPerRead, openAndWrite, threads } from './threads.js';
import { KernelSim, type SimResult } from '../../sim/kernel-sim.js';
import { CommandCounters } from '../../../src/tcmu/command-counters.js';
import { RingEngine } from '../../../src/tcmu/ring-engine.js';

const MiB = 1 << 20;
const opened: LunStore[] = [];

async function open(config: string, ctx: Partial<OpenContext> = {}): Promise<LunStore> {
  const store = toLunStore(validateBackstore(await rbdHandler.open(config, openContext({ options: { conf: CONF }, ...ctx })), 'rbd'));
  opened.push(store);
  return store;
}

/** What the rbd CLI (another librbd client) reads at [offset, offset+length). */
function exportRange(image: string, offset: number, length: number): Buffer {
  const path = join(tmpdir(), `rbd-export-${process.pid}-${image}`);
  rmSync(path, { force: true });
  rbdCli('export', '--no-progress', `rbd/${image}`, path);
  const data = readFileSync(path).subarray(offset, offset + length);
  rmSync(path, { force: true });
  return data;
}

/**
 * Of `tries` 64 KiB writes whose buffer is refilled right after the call
 * that submits it returns, how many stored refilled bytes (librbd sent the
 * caller's own memory, zero-copy, instead of a copy made in the call).
 */
async function writesSentFromCallerMemory(img: RbdImage, tries: number): Promise<number> {
  let sent = 0;
  for (let i = 0; i < tries; i++) {
    const data = Buffer.alloc(65536, 0xaa);
    const written = img.writev(i * data.length, [data]);
    data.fill(0x55);
    await written;
    const back = Buffer.alloc(data.length);
    await img.readv(i * data.length, [back]);
    if (back.includes(0x55)) sent++;
  }
  return sent;
}

/** The test cluster's ceph.conf plus `lines` in its [client] section, as a new file. */
function confWith(lines: string[]): string {
  const path = join(mkdtempSync(join(tmpdir(), 'rbd-conf-')), 'ceph.conf');
  writeFileSync(path, `${readFileSync(CONF, 'utf8')}\n[client]\n${lines.join('\n')}\n`);
  return path;
}

const pattern = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff));

/** A 10-byte READ or WRITE CDB. */
function cdb10(op: number, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

/**
 * `store` served through the ring engine on the kernel simulator, with
 * completions from librbd's threads allowed, past the power-on unit
 * attention; closed after `fn`.
 */
async function throughRing(store: LunStore, fn: (sim: KernelSim, engine: RingEngine, counters: CommandCounters) => Promise<void>): Promise<void> {
  const sim = KernelSim.create({ ringSize: 64 * 1024, dataSize: 8 << 20, ooo: true, readLen: true });
  const counters = new CommandCounters();
  const engine = new RingEngine(sim.runnerMapping(), new ScsiDisk(store, IDENTITY), { counters, completeElsewhere: store.completesInRing });
  engine.start();
  try {
    // A unit attention may come first (power on): TEST UNIT READY until GOOD.
    for (let i = 0; i < 3 && (await sim.submit(Buffer.alloc(6))).status !== 0; i++);
    await fn(sim, engine, counters);
  } finally {
    await engine.drain();
    engine.close();
    sim.close();
  }
}

describe.skipIf(cephMissing !== undefined)('rbd handler on a real cluster', () => {
  beforeAll(() => {
    startCluster();
  }, 300_000);
  afterAll(async () => {
    for (const s of opened.splice(0)) await s.close();
    stopCluster();
  }, 120_000);

  it('reads back multi-buffer writes, and another client sees them after flush', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`);
    expect(store.size).toBe(64 * MiB);
    expect(store.writeCache).toBe(false); // cache=none by default: a write settles once the OSDs hold it
    const data = pattern(3 * 4096, 7);
    // iov split across an object boundary (4 MiB objects) and unevenly
    const at = 4 * MiB - 4096;
    await store.write(at, [data.subarray(0, 1000 * 4 + 96), data.subarray(4096, 3 * 4096)], { fua: false });
    const back = [Buffer.alloc(512), Buffer.alloc(3 * 4096 - 512)];
    await store.read(at, back);
    expect(Buffer.concat(back).equals(data)).toBe(true);
    await store.flush();
    expect(exportRange(image, at, data.length).equals(data)).toBe(true);
  });

  it('writeZeroes zeroes and discard deallocates; both visible to another client', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`);
    await store.write(0, [Buffer.alloc(2 * MiB, 0xab)], { fua: true });
    await store.writeZeroes(4096, 8192, { unmap: false });
    await store.discard(MiB, MiB);
    const back = Buffer.alloc(3 * 4096);
    await store.read(0, [back]);
    expect(back.subarray(0, 4096).every((b) => b === 0xab)).toBe(true);
    expect(back.subarray(4096).every((b) => b === 0)).toBe(true);
    expect(store.thin).toBe(true);
    expect(store.discardZeroes).toBe(false);
    await store.flush();
    expect(exportRange(image, 4096, 8192).every((b) => b === 0)).toBe(true);
  });

  it('COMPARE AND WRITE through the SCSI layer: match writes, miscompare gives 0E/1D/00 with the offset and writes nothing', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`);
    expect(store.compareAndWriteLimit).toBe(512);
    const disk = new ScsiDisk(store, IDENTITY);
    await run(disk, command([0, 0, 0, 0, 0, 0])); // power-on unit attention
    const old = pattern(512, 1);
    await store.write(10 * 512, [old], { fua: false });
    const caw = (lba: number, n: number) => [0x89, 0, ...be(lba, 8), 0, 0, 0, n, 0, 0];

    const wrong = Buffer.from(old);
    wrong[77] ^= 0xff;
    const miss = command(caw(10, 1), { out: Buffer.concat([wrong, pattern(512, 2)]) });
    expect(await run(disk, miss)).toBe(2);
    expect(sense(miss)).toEqual({ key: 0x0e, asc: 0x1d, ascq: 0 });
    expect(miss.sense.readUInt32BE(3)).toBe(77); // INFORMATION: offset of the first difference
    await store.flush();
    expect(exportRange(image, 10 * 512, 512).equals(old)).toBe(true);

    const hit = command(caw(10, 1), { out: Buffer.concat([old, pattern(512, 3)]), split: [100, 700] });
    expect(await run(disk, hit)).toBe(0);
    await store.flush();
    expect(exportRange(image, 10 * 512, 512).equals(pattern(512, 3))).toBe(true);

    // librbd compares one sector: more is refused before anything is read
    const two = command(caw(10, 2), { out: Buffer.alloc(2048) });
    expect(await run(disk, two)).toBe(2);
    expect(sense(two)).toEqual({ key: 0x05, asc: 0x24, ascq: 0 });
  });

  it('a snapshot opens read-only and shows the data as it was', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`);
    await store.write(0, [Buffer.alloc(4096, 1)], { fua: true });
    rbdCli('snap', 'create', `rbd/${image}@s1`);
    await store.write(0, [Buffer.alloc(4096, 2)], { fua: true });
    const snap = await open(`rbd/${image}@s1`);
    expect(snap.readOnly).toBe(true);
    const back = Buffer.alloc(4096);
    await snap.read(0, [back]);
    expect(back.every((b) => b === 1)).toBe(true);
    await expect(Promise.resolve().then(() => snap.write(0, [back], { fua: false }))).rejects.toMatchObject({ code: 'EROFS' });
  });

  it('a LUN size larger than the image is refused; a smaller one is served', async () => {
    const image = freshImage('8M');
    await expect(open(`rbd/${image}`, { size: 16 * MiB })).rejects.toThrow(/grow it with "rbd resize"/);
    const small = await open(`rbd/${image}`, { size: 4 * MiB });
    expect(small.size).toBe(4 * MiB);
  });

  it('follows `rbd resize` by another client: the daemon is told the new size, and resize to it then succeeds', async () => {
    const image = freshImage('16M');
    const sizes: number[] = [];
    const store = await open(`rbd/${image}`, { onMediumResized: (n) => sizes.push(n) });
    rbdCli('resize', '--no-progress', `rbd/${image}`, '--size', '32M');
    for (let i = 0; i < 100 && sizes.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(sizes).toEqual([32 * MiB]);
    await store.resize(32 * MiB);
    expect(store.size).toBe(32 * MiB);
    await store.write(31 * MiB, [Buffer.alloc(4096, 9)], { fua: true });
    await expect(Promise.resolve().then(() => store.resize(64 * MiB))).rejects.toMatchObject({ code: 'ENOSPC' });
  });

  it('clear errors for a missing image, pool, conf or user', async () => {
    await expect(open('rbd/no-such-image')).rejects.toThrow(/rbd_open\(no-such-image\).*ENOENT/);
    await expect(open('nopool/x')).rejects.toThrow(/rados_ioctx_create\(nopool\).*ENOENT/);
    await expect(open('rbd/x', { options: { conf: '/nonexistent/ceph.conf' } })).rejects.toThrow(ConfigError);
    await expect(open('rbd/x', { options: { conf: CONF, id: 'nobody', osd_op_timeout: '5' } })).rejects.toThrow(/client.nobody/);
  }, 60_000);

  it('many overlapping calls on one image all complete (one completion channel for the process)', async () => {
    const image = freshImage();
    const a = await open(`rbd/${image}`);
    const b = await open(`rbd/${freshImage()}`);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 256; i++) {
      const store = i % 2 ? a : b;
      jobs.push(Promise.resolve(store.write(i * 8192, [pattern(8192, i)], { fua: false })));
    }
    await Promise.all(jobs);
    for (let i = 0; i < 256; i += 37) {
      const back = Buffer.alloc(8192);
      await (i % 2 ? a : b).read(i * 8192, [back]);
      expect(back.equals(pattern(8192, i))).toBe(true);
    }
  });

  it('cache=writeback reports a write cache; flush makes writes visible to another client', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`, { options: { conf: CONF, cache: 'writeback' } });
    expect(store.writeCache).toBe(true);
    await store.write(8192, [pattern(4096, 5)], { fua: false });
    await store.flush();
    expect(exportRange(image, 8192, 4096).equals(pattern(4096, 5))).toBe(true);
  });

  it('cache=writethrough reports no write cache; a completed write is on the cluster without a flush, and re-reads come back', async () => {
    const image = freshImage();
    const store = await open(`rbd/${image}`, { options: { conf: CONF, cache: 'writethrough' } });
    expect(store.writeCache).toBe(false);
    await store.write(12288, [pattern(4096, 6)], { fua: false });
    expect(exportRange(image, 12288, 4096).equals(pattern(4096, 6))).toBe(true);
    for (let i = 0; i < 2; i++) {
      const back = Buffer.alloc(4096);
      await store.read(12288, [back]);
      expect(back.equals(pattern(4096, 6))).toBe(true);
    }
  });

  it("a restarted daemon fences its predecessor: the old client's lock is broken and it is blocklisted; another gateway's lock is handed over, not broken", async () => {
    const image = freshImage();
    const runDir = mkdtempSync(join(tmpdir(), 'rbd-lun-run-'));
    // The predecessor: it took the exclusive lock with a write and recorded its address.
    const before = await open(`rbd/${image}`, { runtimeDir: runDir });
    await before.write(0, [pattern(4096, 1)], { fua: false });
    const recorded = readFileSync(join(runDir, 'rbd-client'), 'utf8').trim();
    expect(recorded).toMatch(/:\d+\/\d+/);

    // The new process on the same runtime directory breaks that lock at open.
    const after = await open(`rbd/${image}`, { runtimeDir: runDir });
    await after.write(4096, [pattern(4096, 2)], { fua: false });
    expect(readFileSync(join(runDir, 'rbd-client'), 'utf8').trim()).not.toBe(recorded);
    const blocklist = execFileSync('ceph', ['-c', CONF, 'osd', 'blocklist', 'ls'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(blocklist).toContain([...entityAddresses(recorded)][0]);

    // Had the predecessor been alive, it is fenced: its next write fails
    // retryably (ABORTED COMMAND) and is not applied; it reconnects, and the
    // initiator's retry goes through the new connection.
    await expect(before.write(8192, [pattern(4096, 3)], { fua: false })).rejects.toMatchObject({ code: 'ETIMEDOUT', message: expect.stringMatching(/blocklisted/) });
    await before.write(8192, [pattern(4096, 3)], { fua: false });

    // Another gateway (its own runtime directory): librbd hands the lock over; nobody is fenced.
    const other = await open(`rbd/${image}`, { runtimeDir: mkdtempSync(join(tmpdir(), 'rbd-lun-run-')) });
    await other.write(12288, [pattern(4096, 4)], { fua: false });
    await after.write(16384, [pattern(4096, 5)], { fua: false });
    const back = Buffer.alloc(5 * 4096);
    await other.read(0, [back]);
    expect(back.equals(Buffer.concat([1, 2, 3, 4, 5].map((n) => pattern(4096, n))))).toBe(true);
  }, 120_000);

  it('knows who holds the exclusive lock: nobody before a write, then the writer, and the other gateway sees another holder', async () => {
    const image = freshImage();
    const a = await open(`rbd/${image}`);
    const b = await open(`rbd/${image}`);
    expect(await a.exclusiveLockHolder!()).toBe('none');
    await a.write(0, [pattern(4096, 1)], { fua: false });
    expect(await a.exclusiveLockHolder!()).toBe('this');
    expect(await b.exclusiveLockHolder!()).toBe('other');
    // A write through the other gateway takes the lock over (librbd's cooperative hand-over).
    await b.write(4096, [pattern(4096, 2)], { fua: false });
    expect(await b.exclusiveLockHolder!()).toBe('this');
    expect(await a.exclusiveLockHolder!()).toBe('other');
  });

  it('GET LBA STATUS comes from the object map: written objects mapped, the rest deallocated', async () => {
    const image = freshImage('64M');
    const store = await open(`rbd/${image}`);
    expect(store.hasBlockStatus).toBe(true);
    await store.write(8 * MiB + 51200, [pattern(4096, 6)], { fua: false });
    await store.write(40 * MiB, [pattern(8192, 7)], { fua: false });
    expect(await store.blockStatus(0, 64 * MiB)).toEqual([
      { offset: 0, length: 8 * MiB, state: 'deallocated' },
      { offset: 8 * MiB, length: 4 * MiB, state: 'mapped' },
      { offset: 12 * MiB, length: 28 * MiB, state: 'deallocated' },
      { offset: 40 * MiB, length: 4 * MiB, state: 'mapped' },
      { offset: 44 * MiB, length: 20 * MiB, state: 'deallocated' },
    ]);
    expect(await store.blockStatus(9 * MiB, 4096)).toEqual([{ offset: 9 * MiB, length: 4096, state: 'mapped' }]);
    expect(await store.blockStatus(13 * MiB, 8192)).toEqual([{ offset: 13 * MiB, length: 8192, state: 'deallocated' }]);
  });

  it('tcmu-ts snapshot create/list/revert/delete map to RBD snapshots of the image', async () => {
    const image = freshImage();
    const ops = rbdHandler.control!.operations;
    const ctx: ControlContext = { mode: 'online', config: `rbd/${image}`, options: { conf: CONF }, log: silentLog };
    let store = await open(`rbd/${image}`);
    await store.write(0, [pattern(4096, 1)], { fua: true });
    await store.close();
    await ops['snapshot.create']!.run(ctx, { name: 's1' });
    expect(rbdCli('snap', 'ls', `rbd/${image}`)).toMatch(/\ss1\s/);
    const listed = (await ops['snapshot.list']!.run(ctx, {})).value as { name: string; size: number }[];
    expect(listed).toMatchObject([{ name: 's1', size: 64 * MiB }]);

    store = await open(`rbd/${image}`);
    await store.write(0, [pattern(4096, 2)], { fua: true });
    await store.close();
    await ops['snapshot.revert']!.run(ctx, { name: 's1' });
    store = await open(`rbd/${image}`);
    const back = Buffer.alloc(4096);
    await store.read(0, [back]);
    expect(back.equals(pattern(4096, 1))).toBe(true);

    await ops['snapshot.delete']!.run(ctx, { name: 's1' });
    expect(rbdCli('snap', 'ls', `rbd/${image}`)).not.toMatch(/s1/);
    await expect(ops['snapshot.delete']!.run(ctx, { name: 's1' })).rejects.toThrow(/rbd_snap_remove\(s1\).*ENOENT/);
    await expect(ops['snapshot.create']!.run(ctx, { name: 'bad name' })).rejects.toThrow(/snapshot name "bad name"/);
  }, 120_000);

  it("through the ring: READ and WRITE complete on librbd's threads (CallOptions.inRing); the data checks out, here and from another client", async () => {
    const image = freshImage('16M');
    const store = await open(`rbd/${image}`);
    expect(store.completesInRing).toBe(true);
    await throughRing(store, async (sim, engine, counters) => {
      const bs = store.blockSize;
      const extent = 32 * 1024;
      const expected = Buffer.alloc(64 * extent);
      // One command at a time: each completion then finds the event loop
      // idle and is made on librbd's thread (with many at once the loop is
      // often busy consuming them and is handed the completions; the
      // simulator tests cover that mix).
      const writes: SimResult[] = [];
      for (let i = 0; i < 64; i++) {
        const data = pattern(extent, i);
        data.copy(expected, i * extent);
        writes.push(await sim.submit(cdb10(0x2a, (i * extent) / bs, extent / bs), { out: data }));
      }
      expect(writes.map((r) => r.status)).toEqual(Array(64).fill(0));
      const reads: SimResult[] = [];
      for (let i = 0; i < 64; i++) reads.push(await sim.submit(cdb10(0x28, (i * extent) / bs, extent / bs), { inLength: extent }));
      expect(reads.map((r) => r.status)).toEqual(Array(64).fill(0));
      expect(Buffer.concat(reads.map((r) => r.dataIn!)).equals(expected)).toBe(true);
      engine.collectForeign();
      // Most of them completed on librbd's threads; a completion that found
      // the event loop holding the ring was handed over to it.
      expect(engine.stats.completedElsewhere).toBeGreaterThan(64);
      expect(engine.stats.inFlight).toBe(0);
      expect(counters.commandCount(0) + counters.commandCount(1)).toBe(128);
      expect(exportRange(image, 0, expected.length).equals(expected)).toBe(true);
    });
  }, 120_000);

  it('through the ring: a READ or WRITE that librbd fails (the image shrank under the LUN) gets sense on the event loop, and the LUN serves on', async () => {
    const image = freshImage('16M');
    const store = await open(`rbd/${image}`);
    await throughRing(store, async (sim, engine) => {
      const bs = store.blockSize;
      // Another client shrinks the image to 8 MiB; the LUN still says 16.
      rbdCli('resize', '--allow-shrink', '--size', '8M', `rbd/${image}`);
      const beyond = (12 * MiB) / bs;
      // librbd learns of the shrink from its header watch: retry until it has.
      let read = await sim.submit(cdb10(0x28, beyond, 8), { inLength: 8 * bs });
      for (let i = 0; i < 50 && read.status === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        read = await sim.submit(cdb10(0x28, beyond, 8), { inLength: 8 * bs });
      }
      const write = await sim.submit(cdb10(0x2a, beyond, 8), { out: Buffer.alloc(8 * bs, 1) });
      // librbd refuses I/O that starts past the end with EINVAL: ILLEGAL REQUEST.
      for (const r of [read, write]) {
        expect(r.status).toBe(2);
        expect(r.sense[2]! & 0x0f).toBe(0x05);
      }
      const data = pattern(8 * bs, 3);
      expect((await sim.submit(cdb10(0x2a, 8, 8), { out: data })).status).toBe(0);
      const back = await sim.submit(cdb10(0x28, 8, 8), { inLength: 8 * bs });
      expect(back.status).toBe(0);
      expect(back.dataIn!.equals(data)).toBe(true);
      engine.collectForeign();
      expect(engine.stats.inFlight).toBe(0);
    });
  }, 120_000);

  it('thread_policy=batch: every thread librados and librbd start runs under SCHED_BATCH; the daemon\'s threads keep their policy', async () => {
    await openAndWrite('batch', freshImage(), (run) => {
      const names = run.cephThreads.map(([name]) => name);
      expect(names).toContain('io_context_pool');
      expect(names.some((n) => n.startsWith('msgr-worker-'))).toBe(true);
      expect(names).toContain('taskfin_librbd');
      expect(run.cephThreads.filter(([, policy]) => policy !== SCHED_BATCH)).toEqual([]);
      // The pool thread that ran connect and open went back to SCHED_OTHER.
      const now = threads();
      for (const [tid, [name, policy]] of run.before) {
        if (now.has(tid)) expect([name, now.get(tid)![1]]).toEqual([name, policy]);
      }
      expect([...now.values()].filter(([name, policy]) => !CEPH_THREAD.test(name) && policy !== SCHED_OTHER)).toEqual([]);
    });
  });

  it('thread_policy=normal: the threads librados and librbd start run under the daemon\'s own policy', async () => {
    await openAndWrite('normal', freshImage(), (run) => {
      expect(run.cephThreads.map(([name]) => name)).toContain('io_context_pool');
      expect(run.cephThreads.filter(([, policy]) => policy !== SCHED_OTHER)).toEqual([]);
    });
  });

  it('dispatch=inline: librbd dispatches each request on the submitting thread, so its io_context thread wakes once per read less than with dispatch=queued', async () => {
    const queued = await ioContextWakeupsPerRead('queued', freshImage(), 100);
    const inline = await ioContextWakeupsPerRead('inline', freshImage(), 100);
    console.log(`io_context_pool wake-ups per read: queued ${queued.toFixed(2)}, inline ${inline.toFixed(2)}`);
    expect(queued - inline).toBeGreaterThan(0.7);
  });

  it('writes are copied by librbd even when ceph.conf asks for zero-copy writes, so a write librbd fails gets its error instead of hanging', async () => {
    const image = freshImage('8M');
    const conf = confWith(['rbd_disable_zero_copy_writes = false']);
    try {
      await withImage(image, { conf }, async (img) => {
        expect(await writesSentFromCallerMemory(img, 20)).toBe(0);
        // librbd 16 with zero-copy writes never completes this one.
        await expect(img.writev(12 * MiB, [Buffer.alloc(4096, 1)])).rejects.toMatchObject({ code: 'EINVAL' });
      });
    } finally {
      rmSync(dirname(conf), { recursive: true, force: true });
    }
  });
});
