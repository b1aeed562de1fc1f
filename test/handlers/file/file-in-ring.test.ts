/**
 * The file handler completing whole READ/WRITE commands in the TCMU ring on
 * the reaper thread of its second io_uring (native/io_ring_reaper.cc),
 * through the kernel simulator's ring and the real SCSI disk: the data
 * checks out in the file and back through the ring, results the reaper
 * does not own (short reads, errors) still complete on the event loop with
 * sense data, and closing with operations in flight neither hangs nor
 * crashes.
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fileHandler from '../../../handlers/file/index.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import type { Backstore } from '../../../src/backstore/types.js';
import { native } from '../../../src/native.js';
import { sharedInRingUringIo } from '../../../src/io/uring-io.js';
import { ScsiDisk } from '../../../src/scsi/index.js';
import { CommandCounters } from '../../../src/tcmu/command-counters.js';
import { RingEngine } from '../../../src/tcmu/ring-engine.js';
import { openContext } from '../../backstore/context.js';
import { IDENTITY } from '../../scsi/harness.js';
import { KernelSim, type SimResult } from '../../sim/kernel-sim.js';

const dir = fs.mkdtempSync(join(tmpdir(), 'tcmu-file-in-ring-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const MiB = 1 << 20;
const READ_10 = 0x28;
const WRITE_10 = 0x2a;

function cdb(op: number, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

async function serve(path: string, size: number) {
  const store: Backstore = await fileHandler.open(path, openContext({ size, options: { create: '1' } }));
  const lun = toLunStore(store);
  const sim = KernelSim.create({ ringSize: 64 * 1024, dataSize: 8 << 20, ooo: true, readLen: true });
  const counters = new CommandCounters();
  const engine = new RingEngine(sim.runnerMapping(), new ScsiDisk(lun, IDENTITY), { counters, completeElsewhere: lun.completesInRing });
  engine.start();
  // A unit attention may come first (power on): TEST UNIT READY until GOOD.
  for (let i = 0; i < 3 && (await sim.submit(Buffer.alloc(6))).status !== 0; i++);
  const close = async () => {
    await engine.drain();
    engine.close();
    sim.close();
    await lun.close();
  };
  return { store, lun, sim, engine, counters, close };
}

describe('file: commands completed in the ring by the io_uring reaper', () => {
  it('writes and large reads complete on the reaper thread; the file and the initiator see the same bytes', async () => {
    const path = join(dir, 'lun.img');
    const { lun, sim, engine, counters, close } = await serve(path, 16 * MiB);
    expect(lun.completesInRing).toBe(true);
    try {
      // 64 KiB writes are not made inline (that is for whole pages up to
      // 16 KiB), and buffered writes go to an io-wq worker; 512 KiB reads
      // are always offloaded. One command at a time, so that each completion
      // finds the event loop idle (with many at once the loop often holds
      // the ring and takes the completion itself).
      const extent = 64 * 1024;
      const expected = Buffer.alloc(64 * extent);
      const writes: SimResult[] = [];
      for (let i = 0; i < 64; i++) {
        const data = pattern(extent, i);
        data.copy(expected, i * extent);
        writes.push(await sim.submit(cdb(WRITE_10, (i * extent) / 512, extent / 512), { out: data }));
      }
      expect(writes.map((r) => r.status)).toEqual(Array(64).fill(0));
      const big = 512 * 1024;
      const reads: SimResult[] = [];
      for (let at = 0; at < expected.length; at += big) reads.push(await sim.submit(cdb(READ_10, at / 512, big / 512), { inLength: big }));
      expect(reads.map((r) => r.status)).toEqual(Array(reads.length).fill(0));
      expect(Buffer.concat(reads.map((r) => r.dataIn!)).equals(expected)).toBe(true);
      engine.collectForeign();
      expect(engine.stats.completedElsewhere).toBeGreaterThan(64);
      expect(engine.stats.inFlight).toBe(0);
      expect(counters.commandCount(0) + counters.commandCount(1)).toBe(64 + reads.length);
      expect(fs.readFileSync(path).subarray(0, expected.length).equals(expected)).toBe(true);
    } finally {
      await close();
    }
  }, 60_000);

  it('a read the reaper cannot finish (the file was cut short under the LUN) completes on the event loop with MEDIUM ERROR', async () => {
    const path = join(dir, 'short.img');
    const { sim, engine, close } = await serve(path, 16 * MiB);
    try {
      fs.truncateSync(path, MiB);
      const r = await sim.submit(cdb(READ_10, (4 * MiB) / 512, 1024), { inLength: 512 * 1024 });
      expect(r.status).toBe(2); // CHECK CONDITION
      expect(r.sense![2]! & 0x0f).toBe(0x03); // MEDIUM ERROR
      engine.collectForeign();
      expect(engine.stats.completedElsewhere).toBe(0);
      expect(engine.stats.inFlight).toBe(0);
    } finally {
      await close();
    }
  }, 60_000);

  it('a read-only LUN completes in the ring too (reads)', async () => {
    const path = join(dir, 'ro.img');
    fs.writeFileSync(path, pattern(2 * MiB, 5));
    const store = await fileHandler.open(path, openContext({ size: 2 * MiB, readOnly: true }));
    expect(store.completesInRing).toBe(true);
    await store.close();
  });
});

describe('reaper io_uring (NativeIoRing with completesInRing)', () => {
  it('plain records come back through onCompletions with their result; watch() is refused; close joins the thread', async () => {
    const ring = native().ioRingCreate(8, true);
    expect(ring.completesInRing).toBe(true);
    expect(ring.sqEntries).toBe(7); // one slot kept for the stop request
    expect(() => ring.watch(() => {}, () => {})).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => ring.registerCompletion({} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const path = join(dir, 'reaper.img');
    fs.writeFileSync(path, pattern(8192, 1));
    const fd = fs.openSync(path, 'r+');
    const area = new ArrayBuffer(8192);
    const id = ring.registerBuffer(area);
    const got: number[][] = [];
    ring.onCompletions((batch, n) => {
      for (let i = 0; i < n; i++) got.push([batch[3 * i]!, batch[3 * i + 1]!, batch[3 * i + 2]!]);
    });
    const stage = Float64Array.from([
      ...[2, fd, 0, 1, 1, -1, 0, 0, id, 0, 4096], // read on a worker
      ...[0, 987654, 0, 2, 1, -1, 0, 0, id, 4096, 8], // closed fd: -EBADF
      ...[0, fd, 0, 3, 1, 12, 0, 1, id, 0, 8], // names a completion never registered: -EINVAL at once
    ]);
    const out = new Int32Array(2 + 2 * 8);
    ring.run(stage, 3, out);
    expect([out[0], out[2], out[3]]).toEqual([1, 3, -22]); // only the invalid one, at once
    const deadline = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(got.sort((a, b) => a[0]! - b[0]!)).toEqual([
      [1, 4096, 0],
      [2, -9, 0],
    ]);
    expect(Buffer.from(area, 0, 4096).equals(pattern(8192, 1).subarray(0, 4096))).toBe(true);
    // Close with a read in flight: the reaper stops, nothing is delivered after.
    ring.run(Float64Array.from([2, fd, 0, 4, 1, -1, 0, 0, id, 0, 8192]), 1, out);
    ring.close();
    ring.close();
    fs.closeSync(fd);
    const before = got.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(got.length).toBe(before);
  });

  it('a plain ring refuses completions it could never make', () => {
    const ring = native().ioRingCreate(4);
    expect(ring.completesInRing).toBe(false);
    expect(() => ring.onCompletions(() => {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    ring.close();
  });

  it('the shared one exists here (io_uring available) and is not the plain shared ring', () => {
    const io = sharedInRingUringIo();
    expect(io).not.toBeNull();
    expect(io!.completesInRing).toBe(true);
  });
});
