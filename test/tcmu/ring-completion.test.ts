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
import { onPool } from './on-pool.js';
import { settle, waitFor } from './wait.js';

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

/** Parks every command; the test completes each one on the event loop or elsewhere. */
class ParkingTarget implements ScsiTarget {
  readonly parked: { cmd: ScsiCommand; inRing: InRing | undefined; resolve: (status: number) => void }[] = [];
  execute(cmd: ScsiCommand): number | Promise<number> {
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

/** The engine's completion block: its lock word (with the handed-over list) and the list's links. */
function sharedBlock(engine: RingEngine): { words: Int32Array; handedOver: Int32Array } {
  return (engine as unknown as { cs: { words: Int32Array; handedOver: Int32Array } }).cs;
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
    // Those a pool thread completed while a batch held the ring were handed over to it.
    expect(engine.stats.completedElsewhere + engine.stats.handedOver).toBe(elsewhere);
    expect(elsewhere).toBeGreaterThan(total / 4);
    expect(engine.stats.inFlight).toBe(0);
  });

  test('completed on the event loop while a batch holds the ring: handed over, and answered GOOD when that batch ends', async () => {
    const { sim, target, engine, errors } = setup();
    const first = sim.submit(read10(0, 8), { inLength: 4096 });
    await waitFor(() => target.parked.length === 1, 'the read reaches the target');
    const parked = target.parked[0]!;
    parked.cmd.iov[0]!.fill(0x5a);
    // The next command's execute runs inside the batch that consumes it,
    // which holds the ring: completing the first one from there is what a
    // librbd thread meets when it finishes during a batch.
    let handedOver = -1;
    let answeredDuringBatch = true;
    target.execute = (cmd) => {
      handedOver = native().ringCompleteGood(parked.inRing!.ring, parked.inRing!.index, parked.inRing!.cmdId);
      answeredDuringBatch = sim.cmdIdsInRing().length < 2;
      cmd.dataInLength = 0;
      return 0;
    };
    const second = sim.submit(write10(8, 8), { out: Buffer.alloc(4096) });
    const [r1, r2] = await Promise.all([first, second]);
    expect(handedOver).toBe(1);
    expect(answeredDuringBatch).toBe(false);
    expect(r1.status).toBe(0);
    expect(r1.dataIn).toEqual(Buffer.alloc(4096, 0x5a));
    expect(r2.status).toBe(0);
    expect(errors).toEqual([]);
    expect(engine.stats).toMatchObject({ inFlight: 0, commands: 2, handedOver: 1, completedElsewhere: 0 });
  });

  test('pool threads that finish while a long batch holds the ring all hand their commands over; none is lost', async () => {
    const { sim, target, engine, errors } = setup();
    const count = 32;
    const results = Array.from({ length: count }, (_, i) => sim.submit(write10(i * 8, 8), { out: Buffer.alloc(4096, i) }));
    await waitFor(() => target.parked.length === count, 'the writes reach the target');
    const parked = target.parked.splice(0);
    const cs = sharedBlock(engine);
    const listLength = () => {
      let n = 0;
      for (let next = Atomics.load(cs.words, 0) >>> 2; next !== 0 && n <= count; n++) next = cs.handedOver[next - 1]! & 0xffff;
      return n;
    };
    let listed = 0;
    const pool: Promise<number>[] = [];
    target.execute = () => {
      // Inside the batch: queue the completions on the pool, and keep the
      // ring until every pool thread has handed its command over.
      for (const p of parked) pool.push(onPool(p.inRing!));
      const deadline = Date.now() + 10_000;
      while ((listed = listLength()) < count && Date.now() < deadline) {
        // The pool threads need the ring this batch holds.
      }
      return 0;
    };
    const last = sim.submit(write10(1000, 8), { out: Buffer.alloc(4096) });
    expect((await last).status).toBe(0);
    expect(listed).toBe(count);
    expect(await Promise.all(pool)).toEqual(Array(count).fill(1));
    expect((await Promise.all(results)).map((r) => r.status)).toEqual(Array(count).fill(0));
    expect(errors).toEqual([]);
    expect(engine.stats).toMatchObject({ inFlight: 0, commands: count + 1, handedOver: count, completedElsewhere: 0 });
  });

  test('handed over while the event loop completes another command (outside a batch): answered when it lets go', async () => {
    let during: (() => void) | undefined;
    // Runs inside the engine's completion, which holds the ring.
    class HookedCounters extends CommandCounters {
      override completed(...args: Parameters<CommandCounters['completed']>): void {
        const hook = during;
        during = undefined;
        hook?.();
        super.completed(...args);
      }
    }
    const { sim, target, engine, errors } = setup({}, 128, true, new HookedCounters());
    const results = [0, 1].map((i) => sim.submit(write10(i * 8, 8), { out: Buffer.alloc(4096, i) }));
    await waitFor(() => target.parked.length === 2, 'the writes reach the target');
    const [a, b] = target.parked;
    let handedOver = -1;
    during = () => (handedOver = native().ringCompleteGood(b!.inRing!.ring, b!.inRing!.index, b!.inRing!.cmdId));
    a!.resolve(0);
    expect((await Promise.all(results)).map((r) => r.status)).toEqual([0, 0]);
    expect(handedOver).toBe(1);
    expect(errors).toEqual([]);
    expect(engine.stats).toMatchObject({ inFlight: 0, commands: 2, handedOver: 1, completedElsewhere: 0 });
  });

  test('a handed-over list naming a slot with no such command fails the ring instead of answering anything', async () => {
    const { sim, target, engine, errors } = setup();
    void sim.submit(write10(0, 8), { out: Buffer.alloc(4096) }).catch(() => {});
    await waitFor(() => target.parked.length === 1, 'the write reaches the target');
    const cs = sharedBlock(engine);
    target.execute = () => {
      // What a broken addon could leave: slot 5 (free) with some cmd_id.
      cs.handedOver[5] = (999 << 16) | 0;
      Atomics.store(cs.words, 0, ((5 + 1) << 2) | 2);
      return new Promise<number>(() => {});
    };
    void sim.submit(write10(8, 8), { out: Buffer.alloc(4096) }).catch(() => {});
    await waitFor(() => errors.length === 1, 'the engine fails the ring');
    expect(errors[0]!.message).toMatch(/handed over by another thread names slot 5/);
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
