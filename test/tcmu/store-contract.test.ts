/**
 * The handler contract's concurrency and abort rules (src/backstore/types.ts,
 * "Concurrency" and "Aborts"), end to end: simulated kernel ring ->
 * RingEngine -> ScsiDisk -> toLunStore -> a probe Backstore. The probe
 * parks calls until the test releases them, records what each call got and
 * whether calls overlapped.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { afterTurns, seededRandom } from '../support/shuffled-settle.js';
import { toLunStore } from '../../src/backstore/lun-store.js';
import type { Backstore, CallOptions, WriteOptions } from '../../src/backstore/types.js';
import { ScsiDisk } from '../../src/scsi/index.js';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { TmrType } from '../../src/tcmu/ring-layout.js';
import { KernelSim, type SimResult } from '../sim/kernel-sim.js';
import { IDENTITY } from '../scsi/harness.js';
import { BLOCK, read10, write10 } from './ram-target.js';
import { closedAfterEach } from './closed-after-each.js';
import { settle, waitFor } from './wait.js';

const TASK_ABORTED = 0x40;

interface Call {
  name: string;
  lba: number;
  opts: CallOptions | undefined;
  finish: () => void;
}

interface ProbeOptions {
  abortable?: boolean;
  maxInFlight?: number;
  /** Reject with the signal's reason when it fires (default true). */
  honour?: boolean;
  /** Answer after a pseudo-random number of event-loop turns instead of parking. */
  random?: boolean;
}

class ProbeStore implements Backstore {
  readonly size = 4096 * BLOCK;
  readonly blockSize = BLOCK;
  readonly abortable?: boolean;
  readonly maxInFlight?: number;
  readonly data = Buffer.alloc(4096 * BLOCK);
  readonly calls: Call[] = [];
  readonly parked: Call[] = [];
  active = 0;
  maxActive = 0;
  private readonly nextRandom = seededRandom(99);

  constructor(private readonly opts: ProbeOptions = {}) {
    if (opts.abortable !== undefined) this.abortable = opts.abortable;
    if (opts.maxInFlight !== undefined) this.maxInFlight = opts.maxInFlight;
  }

  private run(name: string, offset: number, opts: CallOptions | undefined, work: () => void): Promise<void> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise<void>((resolve, reject) => {
      const signal = opts?.signal;
      const onAbort = () => {
        const i = this.parked.indexOf(call);
        if (i >= 0) this.parked.splice(i, 1);
        this.active--;
        reject(signal!.reason);
      };
      const call: Call = {
        name,
        lba: offset / BLOCK,
        opts,
        finish: () => {
          signal?.removeEventListener('abort', onAbort);
          work();
          this.active--;
          resolve();
        },
      };
      this.calls.push(call);
      if (signal && this.opts.honour !== false) signal.addEventListener('abort', onAbort, { once: true });
      if (this.opts.random) afterTurns(this.nextRandom() % 4, call.finish);
      else this.parked.push(call);
    });
  }

  release(): void {
    for (const call of this.parked.splice(0)) call.finish();
  }

  read(offset: number, iov: readonly Buffer[], opts?: CallOptions): Promise<void> {
    return this.run('read', offset, opts, () => {
      let at = offset;
      for (const b of iov) at += this.data.copy(b, 0, at, at + b.length);
    });
  }

  write(offset: number, iov: readonly Buffer[], opts: WriteOptions): Promise<void> {
    return this.run('write', offset, opts, () => {
      let at = offset;
      for (const b of iov) at += b.copy(this.data, at);
    });
  }

  close(): void {}
}

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

async function setup(probe: ProbeStore) {
  sim = live.track(KernelSim.create({ ringSize: 256 * 1024, dataSize: 8 << 20, ooo: true, readLen: true }));
  engine = live.track(new RingEngine(sim.runnerMapping(), new ScsiDisk(toLunStore(probe), IDENTITY)));
  engine.start();
  await sim.submit(Buffer.from([0, 0, 0, 0, 0, 0])); // the power-on unit attention
  return sim;
}

function pattern(lba: number): Buffer {
  return Buffer.alloc(BLOCK, (lba * 7 + 3) & 0xff);
}

/** Tracks which submissions have completed, so a test can show some have NOT. */
function tracked(promises: Promise<SimResult>[]): { settled: boolean[]; all: Promise<SimResult[]> } {
  const settled = promises.map(() => false);
  promises.forEach((p, i) => void p.then(() => (settled[i] = true)));
  return { settled, all: Promise.all(promises) };
}

describe('aborts reach the store as an AbortSignal', () => {
  test('ABORT TASK fires the signal of exactly that command; honoured, it completes TASK ABORTED at once', async () => {
    const probe = new ProbeStore({ abortable: true });
    const sim = await setup(probe);
    const { settled, all } = tracked(Array.from({ length: 4 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    await waitFor(() => probe.parked.length === 4, 'four reads in the store');
    const ids = sim.cmdIdsInRing();
    sim.submitTmr(TmrType.AbortTask, [ids[1]!]);
    await waitFor(() => settled[1]!, 'the aborted read completed');
    await settle();
    expect(settled).toEqual([false, true, false, false]);
    expect(probe.calls.map((c) => c.opts?.signal?.aborted)).toEqual([false, true, false, false]);
    probe.release();
    const results = await all;
    expect(results.map((r) => r.status)).toEqual([0, TASK_ABORTED, 0, 0]);
    expect(sim.broken).toBeUndefined();
  });

  test('LUN RESET aborts every listed command', async () => {
    const probe = new ProbeStore({ abortable: true });
    const sim = await setup(probe);
    const writes = Array.from({ length: 3 }, (_, i) => sim.submit(write10(i, 1), { out: pattern(i) }));
    await waitFor(() => probe.parked.length === 3, 'three writes in the store');
    sim.submitTmr(TmrType.LunReset, sim.cmdIdsInRing());
    const results = await Promise.all(writes);
    expect(results.map((r) => r.status)).toEqual([TASK_ABORTED, TASK_ABORTED, TASK_ABORTED]);
    expect(probe.calls.every((c) => c.opts?.signal?.aborted === true)).toBe(true);
    expect(probe.data.subarray(0, 3 * BLOCK).every((b) => b === 0)).toBe(true); // none was written
  });

  test('a store that ignores the signal completes the command with its own status', async () => {
    const probe = new ProbeStore({ abortable: true, honour: false });
    const sim = await setup(probe);
    const { settled, all } = tracked([sim.submit(write10(5, 1), { out: pattern(5) })]);
    await waitFor(() => probe.parked.length === 1, 'write in the store');
    sim.submitTmr(TmrType.AbortTask, sim.cmdIdsInRing());
    await waitFor(() => probe.calls[0]!.opts?.signal?.aborted === true, 'signal fired');
    await settle();
    expect(settled).toEqual([false]); // the core never completes while the store holds the iov
    probe.release();
    expect((await all)[0]!.status).toBe(0);
    expect(probe.data.subarray(5 * BLOCK, 6 * BLOCK)).toEqual(pattern(5));
  });

  test('a store that does not declare abortable gets no signal (and no AbortController is made)', async () => {
    const probe = new ProbeStore();
    const sim = await setup(probe);
    const read = sim.submit(read10(0, 1), { inLength: BLOCK });
    const write = sim.submit(write10(1, 1), { out: pattern(1) });
    await waitFor(() => probe.parked.length === 2, 'both in the store');
    sim.submitTmr(TmrType.LunReset, sim.cmdIdsInRing());
    await settle();
    expect(probe.calls[0]!.opts).toBeUndefined();
    expect(probe.calls[1]!.opts).toEqual({ fua: true }); // no write cache: every write is FUA
    expect(Object.isFrozen(probe.calls[1]!.opts)).toBe(true); // the shared constant: no allocation
    probe.release();
    expect((await read).status).toBe(0);
    expect((await write).status).toBe(0);
  });
});

describe('maxInFlight: 1 through the whole stack', () => {
  test('a flood of 400 concurrent READs and WRITEs never overlaps in the store, in ring order, data intact', async () => {
    const probe = new ProbeStore({ maxInFlight: 1, random: true });
    const sim = await setup(probe);
    const lbas = Array.from({ length: 200 }, (_, i) => (i * 37) % 256);
    const submitted: string[] = [];
    const pending: Promise<SimResult>[] = [];
    for (const lba of lbas) {
      submitted.push(`write@${lba}`);
      pending.push(sim.submit(write10(lba, 1), { out: pattern(lba) }));
      submitted.push(`read@${lba}`);
      pending.push(sim.submit(read10(lba, 1), { inLength: BLOCK }));
    }
    const results = await Promise.all(pending);
    expect(results.every((r) => r.status === 0)).toBe(true);
    expect(probe.maxActive).toBe(1);
    // Serial and FIFO: each read ran after the write queued before it.
    expect(probe.calls.map((c) => `${c.name}@${c.lba}`)).toEqual(submitted);
    results.forEach((r, i) => {
      if (i % 2 === 1) expect(r.dataIn).toEqual(pattern(lbas[(i - 1) / 2]!));
    });
  });

  test('an aborted command waiting in the queue completes TASK ABORTED without reaching the store', async () => {
    const probe = new ProbeStore({ maxInFlight: 1 }); // queued stores get signals even without `abortable`
    const sim = await setup(probe);
    const { settled, all } = tracked(Array.from({ length: 3 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    await waitFor(() => probe.parked.length === 1, 'first read in the store');
    await settle();
    const ids = sim.cmdIdsInRing();
    expect(ids).toHaveLength(3);
    sim.submitTmr(TmrType.AbortTask, [ids[1]!]);
    await waitFor(() => settled[1]!, 'queued read aborted');
    expect(settled).toEqual([false, true, false]);
    probe.release();
    await waitFor(() => probe.parked.length === 1, 'third read in the store');
    probe.release();
    expect((await all).map((r) => r.status)).toEqual([0, TASK_ABORTED, 0]);
    expect(probe.calls.map((c) => c.lba)).toEqual([0, 2]);
  });
});
