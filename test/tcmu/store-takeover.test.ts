/**
 * A store that takes its READ and WRITE commands over (CallOptions.inRing,
 * STORE_COMPLETES_IN_RING), as the rbd handler does, through the real SCSI
 * layer and ring engine on the kernel simulator: no promise per command, and
 * every command finishes exactly once, whether another thread completes it
 * in the ring or the store settles it (GOOD, or an error turned into sense).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, test } from 'vitest';
import { StorageError } from '../../src/backstore/errors.js';
import { toLunStore } from '../../src/backstore/lun-store.js';
import type { Backstore, CallOptions, WriteOptions } from '../../src/backstore/types.js';
import { STATUS_LEFT_TO_STORE, STORE_COMPLETES_IN_RING, type InRing, type ScsiCommand, type ScsiTarget } from '../../src/scsi/command.js';
import { ScsiDisk } from '../../src/scsi/index.js';
import { RingEngine, type RingEngineOptions } from '../../src/tcmu/ring-engine.js';
import { KernelSim, type SimResult } from '../sim/kernel-sim.js';
import { IDENTITY } from '../scsi/harness.js';
import { closedAfterEach } from './closed-after-each.js';
import { onPool } from './on-pool.js';
import { read10, write10 } from './ram-target.js';
import { waitFor } from './wait.js';

const BLOCK = 512;
const live = closedAfterEach();

interface Taken {
  op: 'read' | 'write';
  offset: number;
  iov: readonly Buffer[];
  inRing: InRing;
}

/** Takes over every call given `inRing`; other calls run at once, or wait while `hold` is set. */
class TakeoverStore implements Backstore {
  readonly size = 1 << 20;
  readonly blockSize = BLOCK;
  readonly completesInRing = true;
  readonly writeCache = false;
  readonly data = Buffer.alloc(this.size);
  readonly taken: Taken[] = [];
  /** Plain (not taken over) calls made: what the core's own emulation asked. */
  plainCalls = 0;
  /** While set, plain reads wait for it. */
  hold: Promise<void> | undefined;

  read(offset: number, iov: readonly Buffer[], opts?: CallOptions): void | Promise<void> {
    if (opts?.inRing) return this.take('read', offset, iov, opts.inRing);
    this.plainCalls++;
    const copy = () => {
      let at = offset;
      for (const b of iov) at += this.data.copy(b, 0, at, at + b.length);
    };
    if (this.hold) return this.hold.then(copy);
    copy();
  }

  write(offset: number, iov: readonly Buffer[], opts: WriteOptions): void | Promise<void> {
    if (opts.inRing) return this.take('write', offset, iov, opts.inRing);
    this.plainCalls++;
    let at = offset;
    for (const b of iov) at += b.copy(this.data, at);
  }

  flush(): void {}
  close(): void {}

  private take(op: Taken['op'], offset: number, iov: readonly Buffer[], inRing: InRing): Promise<never> {
    this.taken.push({ op, offset, iov, inRing });
    expect(inRing.takenOver).toBe(STORE_COMPLETES_IN_RING);
    return inRing.takenOver;
  }
}

/** The disk, recording what each execute returned (a taken-over command must cost no promise). */
class RecordingTarget implements ScsiTarget {
  readonly returned: (number | Promise<number>)[] = [];
  constructor(private readonly disk: ScsiDisk) {}
  execute(cmd: ScsiCommand): number | Promise<number> {
    const result = this.disk.execute(cmd);
    this.returned.push(result);
    return result;
  }
}

function setup(enter?: RingEngineOptions['enter']) {
  const sim = live.track(KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true }));
  const store = new TakeoverStore();
  const target = new RecordingTarget(new ScsiDisk(toLunStore(store), IDENTITY));
  const engine = live.track(new RingEngine(sim.runnerMapping(), target, { completeElsewhere: true, enter }));
  engine.start();
  return { sim, store, engine, target };
}

/** Past the power-on unit attention (TEST UNIT READY until GOOD). */
async function ready(sim: KernelSim): Promise<void> {
  for (let i = 0; i < 3 && (await sim.submit(Buffer.alloc(6))).status !== 0; i++);
}

/** [sense key, ASC, ASCQ] of fixed-format sense. */
function senseOf(r: SimResult): [number, number, number] {
  return [r.sense[2]! & 0x0f, r.sense[12]!, r.sense[13]!];
}

describe('a store that takes commands over (STORE_COMPLETES_IN_RING)', () => {
  test('completed in the ring by another thread: the initiator gets the data GOOD, and nothing settles it again', async () => {
    const { sim, store, engine } = setup();
    await ready(sim);
    const result = sim.submit(read10(8, 8), { inLength: 8 * BLOCK });
    await waitFor(() => store.taken.length === 1, 'the read reaches the store');
    const { iov, inRing, op, offset } = store.taken[0]!;
    expect([op, offset]).toEqual(['read', 8 * BLOCK]);
    for (const b of iov) b.fill(0x5a);
    expect(await onPool(inRing)).toBe(1);
    const r = await result;
    expect(r.status).toBe(0);
    expect(r.dataIn!.equals(Buffer.alloc(8 * BLOCK, 0x5a))).toBe(true);
    engine.collectForeign();
    expect(engine.stats).toMatchObject({ inFlight: 0, completedElsewhere: 1 });
  });

  test('settled GOOD by the store: a read delivers its data, a write completes, both on the event loop; no promise for either', async () => {
    const { sim, store, engine, target } = setup();
    await ready(sim);
    const before = engine.stats.commands;
    const executed = target.returned.length;
    const read = sim.submit(read10(0, 4), { inLength: 4 * BLOCK });
    const write = sim.submit(write10(16, 2), { out: Buffer.alloc(2 * BLOCK, 9) });
    await waitFor(() => store.taken.length === 2, 'both reach the store');
    const takenRead = store.taken.find((t) => t.op === 'read')!;
    const takenWrite = store.taken.find((t) => t.op === 'write')!;
    expect(Buffer.concat(takenWrite.iov as Buffer[]).equals(Buffer.alloc(2 * BLOCK, 9))).toBe(true);
    for (const b of takenRead.iov) b.fill(0x33);
    takenRead.inRing.settle(undefined);
    takenWrite.inRing.settle(undefined);
    const [r, w] = await Promise.all([read, write]);
    expect([r.status, w.status]).toEqual([0, 0]);
    expect(r.dataIn!.equals(Buffer.alloc(4 * BLOCK, 0x33))).toBe(true);
    expect(engine.stats).toMatchObject({ inFlight: 0, completedElsewhere: 0, commands: before + 2 });
    expect(store.plainCalls).toBe(0);
    expect(target.returned.slice(executed)).toEqual([STATUS_LEFT_TO_STORE, STATUS_LEFT_TO_STORE]);
  });

  test('settled with an error: the error becomes sense as for a rejected call (reads 03/11/00, writes 03/0C/00, ENOSPC 07/27/07)', async () => {
    const { sim, store, engine } = setup();
    await ready(sim);
    const read = sim.submit(read10(0, 1), { inLength: BLOCK });
    const write = sim.submit(write10(1, 1), { out: Buffer.alloc(BLOCK) });
    const full = sim.submit(write10(2, 1), { out: Buffer.alloc(BLOCK) });
    await waitFor(() => store.taken.length === 3, 'all three reach the store');
    const byOffset = (offset: number) => store.taken.find((t) => t.offset === offset)!.inRing;
    byOffset(0).settle(new StorageError('EIO', 'test: read failed'));
    byOffset(BLOCK).settle(new StorageError('EIO', 'test: write failed'));
    byOffset(2 * BLOCK).settle(new StorageError('ENOSPC', 'test: out of space'));
    const [r, w, f] = await Promise.all([read, write, full]);
    expect([r.status, w.status, f.status]).toEqual([2, 2, 2]);
    expect(senseOf(r)).toEqual([0x03, 0x11, 0x00]);
    expect(senseOf(w)).toEqual([0x03, 0x0c, 0x00]);
    expect(senseOf(f)).toEqual([0x07, 0x27, 0x07]);
    expect(engine.stats.inFlight).toBe(0);
  });

  test('a store error mapping that throws fails the command (04/44/00) instead of leaving it hanging', async () => {
    const { sim, store } = setup();
    await ready(sim);
    const write = sim.submit(write10(0, 1), { out: Buffer.alloc(BLOCK) });
    await waitFor(() => store.taken.length === 1, 'the write reaches the store');
    const { inRing } = store.taken[0]!;
    inRing.storeFailed = () => {
      throw new Error('test: mapping bug');
    };
    inRing.settle(new StorageError('EIO', 'test'));
    const w = await write;
    expect(w.status).toBe(2);
    expect(senseOf(w)).toEqual([0x04, 0x44, 0x00]);
  });

  test("settle runs in the engine's batch context (the daemon's fault context for the LUN), as a promise reaction would", async () => {
    const context = new AsyncLocalStorage<string>();
    const { sim, store } = setup((consume) => context.run('this LUN', consume));
    await ready(sim);
    const write = sim.submit(write10(0, 1), { out: Buffer.alloc(BLOCK) });
    await waitFor(() => store.taken.length === 1, 'the write reaches the store');
    const { inRing } = store.taken[0]!;
    const failed = inRing.storeFailed;
    let seen: string | undefined;
    inRing.storeFailed = (cmd, err) => {
      seen = context.getStore();
      return failed(cmd, err);
    };
    expect(context.getStore()).toBeUndefined();
    inRing.settle(new StorageError('EIO', 'test'));
    expect((await write).status).toBe(2);
    expect(seen).toBe('this LUN');
  });

  test('a target that answers "left to the store" on a ring that takes no completions from other threads gets its command failed (04/44/00), not hung', async () => {
    const sim = live.track(KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true }));
    const target: ScsiTarget = { execute: (cmd) => (cmd.cdb[0] === 0x2a ? STATUS_LEFT_TO_STORE : Promise.resolve(STATUS_LEFT_TO_STORE)) };
    const engine = live.track(new RingEngine(sim.runnerMapping(), target, { completeElsewhere: false }));
    engine.start();
    const [sync, async] = await Promise.all([sim.submit(write10(0, 1), { out: Buffer.alloc(BLOCK) }), sim.submit(read10(0, 1), { inLength: BLOCK })]);
    for (const r of [sync, async]) {
      expect(r.status).toBe(2);
      expect(senseOf(r)).toEqual([0x04, 0x44, 0x00]);
    }
    expect(engine.stats.inFlight).toBe(0);
  });

  test('a WRITE that waited for a COMPARE AND WRITE lock and was then taken over finishes once, through the store', async () => {
    const { sim, store, engine, target } = setup();
    await ready(sim);
    store.data.fill(0, 0, BLOCK);
    let release!: () => void;
    store.hold = new Promise((resolve) => (release = resolve));
    // COMPARE AND WRITE of block 0 (the core's read-compare-write: a plain
    // read, held, under the LBA lock); then a WRITE of the same block.
    const caw = Buffer.alloc(16);
    caw[0] = 0x89;
    caw[13] = 1;
    const cawResult = sim.submit(caw, { out: Buffer.concat([Buffer.alloc(BLOCK), Buffer.alloc(BLOCK, 0xc4)]) });
    await waitFor(() => store.plainCalls === 1, 'the compare read reaches the store');
    const write = sim.submit(write10(0, 1), { out: Buffer.alloc(BLOCK, 0xee) });
    // The WRITE waits for the lock: nothing reaches the store yet.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.taken).toHaveLength(0);
    store.hold = undefined;
    release();
    expect((await cawResult).status).toBe(0);
    await waitFor(() => store.taken.length === 1, 'the write reaches the store after the lock');
    expect(store.data.subarray(0, BLOCK).equals(Buffer.alloc(BLOCK, 0xc4))).toBe(true);
    // The promise of the waiting WRITE resolved to "left to the store": the
    // engine did not complete it.
    await expect(target.returned.at(-1)).resolves.toBe(STATUS_LEFT_TO_STORE);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(engine.stats.inFlight).toBe(1);
    store.taken[0]!.inRing.settle(undefined);
    expect((await write).status).toBe(0);
    expect(engine.stats.inFlight).toBe(0);
  });
});
