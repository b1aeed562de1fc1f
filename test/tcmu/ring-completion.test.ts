/**
 * Commands completed in the ring by another thread (completion-state.ts,
 * native/ring_completer.cc), against the kernel simulator. The addon's test
 * entry points stand in for librbd: ringCompleteGoodOnPool completes on a
 * libuv pool thread, ringCompleteGood on the calling one.
 */
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, test } from 'vitest';
import { native } from '../../src/native.js';
import type { InRing, ScsiCommand, ScsiTarget } from '../../src/scsi/command.js';
import { CommandCounters } from '../../src/tcmu/command-counters.js';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { KernelSim, type KernelSimOptions, type SimResult } from '../sim/kernel-sim.js';
import { read10, write10 } from './ram-target.js';
import { closedAfterEach } from './closed-after-each.js';
import { settle, waitFor } from './wait.js';

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

/** Parks every command; the test completes each one on the event loop or elsewhere. */
class ParkingTarget implements ScsiTarget {
  readonly parked: { cmd: ScsiCommand; inRing: InRing | undefined; resolve: (status: number) => void }[] = [];
  execute(cmd: ScsiCommand): Promise<number> {
    // A write's buffer is the initiator's own (as ScsiDisk says); a read fills all of it.
    cmd.dataInLength = cmd.iovLength;
    return new Promise((resolve) => this.parked.push({ cmd, inRing: cmd.inRing, resolve }));
  }
}

function setup(simOpts: Partial<KernelSimOptions> = {}, maxInFlight = 128, completeElsewhere = true, counters = new CommandCounters()) {
  sim = live.track(KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true, ...simOpts }));
  const target = new ParkingTarget();
  const errors: Error[] = [];
  engine = live.track(new RingEngine(sim.runnerMapping(), target, { maxInFlight, counters, completeElsewhere, onError: (err) => errors.push(err) }));
  engine.start();
  return { sim, target, engine, errors, counters };
}

function onPool(inRing: InRing): Promise<number> {
  return new Promise((resolve, reject) =>
    native().ringCompleteGoodOnPool(inRing.ring, inRing.index, inRing.cmdId, (err, done) => (err ? reject(err) : resolve(done))),
  );
}

describe('RingEngine: completions made on another thread', () => {
  test('a write completed on a pool thread reaches the kernel GOOD; its slot frees at the next collection', async () => {
    const { sim, target, engine } = setup();
    const result = sim.submit(write10(8, 8), { out: Buffer.alloc(4096, 7) });
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    const { inRing } = target.parked[0]!;
    expect(inRing).toBeDefined();
    expect(await onPool(inRing!)).toBe(1);
    const r = await result;
    expect(r.status).toBe(0);
    expect(r.uflags).toBe(0);
    expect(engine.stats.inFlight).toBe(1); // not collected yet: nothing woke the event loop
    engine.collectForeign();
    expect(engine.stats).toMatchObject({ inFlight: 0, commands: 1, completedElsewhere: 1 });
  });

  test('the latency counted is until the other thread completed it, not until the event loop noticed', async () => {
    const { sim, target, engine, counters } = setup();
    const before = performance.now();
    const result = sim.submit(write10(0, 8), { out: Buffer.alloc(4096) });
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    expect(await onPool(target.parked[0]!.inRing!)).toBe(1);
    const completed = performance.now();
    await result;
    await new Promise((resolve) => setTimeout(resolve, 100));
    engine.collectForeign();
    const WRITE = 1;
    expect(counters.commandCount(WRITE)).toBe(1);
    expect(counters.latencySumMs[WRITE]).toBeGreaterThanOrEqual(0);
    expect(counters.latencySumMs[WRITE]).toBeLessThanOrEqual(completed - before);
  });

  test('untimed counters (no metrics endpoint): the other thread leaves doneAt 0 and the command still counts', async () => {
    const { sim, target, engine, counters } = setup({}, 128, true, new CommandCounters(false));
    const result = sim.submit(write10(0, 8), { out: Buffer.alloc(4096) });
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    expect(await onPool(target.parked[0]!.inRing!)).toBe(1);
    expect((await result).status).toBe(0);
    const doneAt = (engine as unknown as { cs: { doneAt: Float64Array } }).cs.doneAt;
    expect(doneAt[0]).toBe(0);
    engine.collectForeign();
    expect([counters.commandCount(1), counters.latencySumMs[1]]).toEqual([1, 0]);
  });

  test('a read: what the store put in the data area is what the initiator gets', async () => {
    const { sim, target } = setup();
    const result = sim.submit(read10(0, 16), { inLength: 8192 });
    await waitFor(() => target.parked.length === 1, 'the read reaches the target');
    const { cmd, inRing } = target.parked[0]!;
    let i = 0;
    for (const part of cmd.iov) for (let k = 0; k < part.length; k++) part[k] = (i++ * 13) & 0xff;
    expect(native().ringCompleteGood(inRing!.ring, inRing!.index, inRing!.cmdId)).toBe(1);
    const r = await result;
    expect(r.status).toBe(0);
    expect(r.dataIn).toEqual(Buffer.from(Array.from({ length: 8192 }, (_, n) => (n * 13) & 0xff)));
  });

  test('many commands on a small ring (PAD entries at every wrap), each completed on the event loop or a pool thread, in random order', async () => {
    const { sim, target, engine, errors } = setup({ ringSize: 4096 }, 32);
    const total = 600;
    const results: Promise<SimResult>[] = [];
    let submitted = 0;
    let x = 99;
    const random = (n: number) => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x % n);
    let elsewhere = 0;
    // Until every command is answered: one the engine has not handed to the
    // target yet is in the sim's ring with nothing parked.
    while (submitted < total || sim.cmdIdsInRing().length > 0) {
      while (submitted < total && sim.cmdIdsInRing().length < 24) {
        const lba = random(1000);
        results.push(submitted % 3 === 0 ? sim.submit(read10(lba, 8), { inLength: 4096 }) : sim.submit(write10(lba, 8), { out: Buffer.alloc(4096, submitted & 0xff) }));
        submitted++;
      }
      await waitFor(() => target.parked.length > 0 || sim.cmdIdsInRing().length === 0, 'commands reach the target');
      if (target.parked.length === 0) continue;
      // Complete some of what is parked, each on the event loop or a pool
      // thread (those land in whatever order the pool runs them).
      const batch = target.parked.splice(0, Math.max(1, random(target.parked.length + 1)));
      await Promise.all(
        batch.map(async (p) => {
          if (random(2) === 0 && p.inRing !== undefined && (await onPool(p.inRing)) === 1) elsewhere++;
          else p.resolve(0);
        }),
      );
      engine.collectForeign();
    }
    const all = await Promise.all(results);
    expect(all.every((r) => r.status === 0)).toBe(true);
    expect(errors).toEqual([]);
    engine.collectForeign();
    expect(engine.stats.commands).toBe(total);
    expect(engine.stats.completedElsewhere).toBe(elsewhere);
    expect(elsewhere).toBeGreaterThan(total / 4);
    expect(engine.stats.inFlight).toBe(0);
  });

  test.each([
    ['a ring that completes in order', { ooo: false }, true],
    ['an engine not asked to (completeElsewhere false: a store without completesInRing)', {}, false],
  ])('not offered on %s', async (_, simOpts, completeElsewhere) => {
    const { sim, target } = setup(simOpts, 128, completeElsewhere);
    const result = sim.submit(write10(0, 8), { out: Buffer.alloc(4096) });
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    expect(target.parked[0]!.inRing).toBeUndefined();
    target.parked[0]!.resolve(0);
    expect((await result).status).toBe(0);
  });

  test('once drain() begins, every completion comes through the event loop, and the drain sees the last one', async () => {
    const { sim, target, engine } = setup();
    const result = sim.submit(write10(0, 8), { out: Buffer.alloc(4096) });
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    const drained = engine.drain();
    const { inRing, resolve } = target.parked[0]!;
    expect(await onPool(inRing!)).toBe(0); // refused: left to the event loop
    let done = false;
    void drained.then(() => (done = true));
    await settle();
    expect(done).toBe(false);
    resolve(0);
    await drained;
    expect((await result).status).toBe(0);
    expect(engine.stats).toMatchObject({ inFlight: 0, completedElsewhere: 0 });
  });

  test('after the mapping is closed, another thread writes nothing', async () => {
    const { sim, target, engine } = setup();
    void sim.submit(write10(0, 8), { out: Buffer.alloc(4096) }).catch(() => {}); // the sim rejects it when closed
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    const { inRing } = target.parked[0]!;
    engine.close();
    sim.runnerMapping().close();
    expect(await onPool(inRing!)).toBe(0);
  });

  test('an entry whose len_op changed in flight is left to the event loop, which fails the ring', async () => {
    const { sim, target, errors } = setup();
    void sim.submit(write10(0, 8), { out: Buffer.alloc(4096) }).catch(() => {});
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    const { inRing, resolve } = target.parked[0]!;
    const at = sim.entryOffsetOf(inRing!.cmdId)!;
    const ring = new Uint32Array(sim.runnerMapping().buffer);
    const cmdrOff = ring[1]!;
    ring[(cmdrOff + at) >>> 2] = ring[(cmdrOff + at) >>> 2]! + 8; // a longer entry than the one consumed
    expect(native().ringCompleteGood(inRing!.ring, inRing!.index, inRing!.cmdId)).toBe(0);
    resolve(0);
    await waitFor(() => errors.length === 1, 'the engine fails the ring');
    expect(errors[0]!.message).toMatch(/len_op/);
  });
});
