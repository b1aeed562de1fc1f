import { afterEach, describe, expect, test } from 'vitest';
import type { ScsiCommand, ScsiTarget } from '../../src/scsi/command.js';
import { RingEngine, RingEngineError, type RingEngineOptions } from '../../src/tcmu/ring-engine.js';
import { createSlots } from '../../src/tcmu/command-slot.js';
import { CmdReq, Mailbox, TmrType } from '../../src/tcmu/ring-layout.js';
import { KernelSim, type KernelSimOptions, type SimResult } from '../sim/kernel-sim.js';
import { BLOCK, RamTarget, inquiry, read10, write10, type Timing } from './ram-target.js';
import { closedAfterEach } from './closed-after-each.js';
import { settle, waitFor } from './wait.js';

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

function setup(
  simOpts: Partial<KernelSimOptions> = {},
  timing: Timing | 'manual' = 'sync',
  engineOpts: RingEngineOptions = {},
  target?: ScsiTarget,
) {
  sim = live.track(KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true, ...simOpts }));
  const ram = new RamTarget(8192, timing);
  engine = live.track(new RingEngine(sim.runnerMapping(), target ?? ram, engineOpts));
  engine.start();
  return { sim, ram, engine };
}

function pattern(blocks: number, seed: number): Buffer {
  const b = Buffer.alloc(blocks * BLOCK);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

function senseKey(r: SimResult): [number, number, number] {
  return [r.sense[2]! & 0x0f, r.sense[12]!, r.sense[13]!];
}

function shuffled(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let x = seed;
  for (let i = n - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe('RingEngine: data path', () => {
  test('writes then reads back through scattered multi-iov data', async () => {
    const { sim, ram } = setup({ scatter: true });
    const data = pattern(24, 1);
    const w = await sim.submit(write10(100, 24), { out: data, iovSplit: [512, 1536, 4096, 6144] });
    expect(w.status).toBe(0);
    expect(ram.ram.subarray(100 * BLOCK, 124 * BLOCK)).toEqual(data);
    const r = await sim.submit(read10(100, 24), { inLength: data.length, iovSplit: [4096, 512, 7680] });
    expect(r.status).toBe(0);
    expect(r.dataIn).toEqual(data);
  });

  test('the engine sees every iovec as a separate Buffer view', async () => {
    const seen: number[] = [];
    const ram = new RamTarget(64);
    const spy: ScsiTarget = {
      execute(cmd) {
        seen.push(cmd.iov.length, cmd.iovLength);
        return ram.execute(cmd);
      },
    };
    const { sim, engine } = setup({ scatter: false }, 'sync', {}, spy);
    await sim.submit(write10(0, 8), { out: pattern(8, 2), iovSplit: [512, 1024, 2560] });
    expect(seen).toEqual([3, 4096]);
    await sim.submit(inquiry(36), { inLength: 36 });
    expect(engine.stats.iovecs).toBe(4); // counted per command, for `status`
  });

  test('unknown opcode returns the target status and sense untouched', async () => {
    const { sim } = setup();
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x35 + 0x10; // 0x45: group 2, 10 bytes, not served by RamTarget
    const r = await sim.submit(cdb);
    expect(r.status).toBe(2);
    expect(senseKey(r)).toEqual([0x05, 0x20, 0x00]);
  });

  test('many commands with random async timing, ring wraps with PAD', async () => {
    const { sim, engine } = setup({ ringSize: 1000 }, 'random');
    const data = pattern(1, 3);
    const writes = Array.from({ length: 300 }, (_, i) => sim.submit(write10(i, 1), { out: Buffer.from(data.map((b) => b ^ i)) }));
    for (const w of await Promise.all(writes)) expect(w.status).toBe(0);
    const reads = await Promise.all(Array.from({ length: 300 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    reads.forEach((r, i) => expect(r.dataIn).toEqual(Buffer.from(data.map((b) => b ^ i))));
    expect(sim.padsWritten).toBeGreaterThan(10);
    expect(sim.broken).toBeUndefined();
    expect(engine.stats.commands).toBe(600);
    expect(engine.stats.inFlight).toBe(0);
  });

  test('commands already in the ring before start() are consumed', async () => {
    sim = live.track(KernelSim.create({ ringSize: 4096, dataSize: 1 << 20, ooo: true, readLen: true }));
    const pending = [sim.submit(read10(0, 1), { inLength: BLOCK }), sim.submit(read10(1, 1), { inLength: BLOCK })];
    await settle(5);
    engine = live.track(new RingEngine(sim.runnerMapping(), new RamTarget(16)));
    engine.start();
    for (const r of await Promise.all(pending)) expect(r.status).toBe(0);
  });
});

describe('RingEngine: completion order', () => {
  test('OOOC: completions in random order are all accepted', async () => {
    const { sim, ram, engine } = setup({ ooo: true }, 'manual');
    const n = 40;
    const results = Array.from({ length: n }, (_, i) => sim.submit(write10(i, 1), { out: pattern(1, i) }));
    await waitFor(() => ram.parked.length === n, 'all commands executing');
    ram.releaseParked(shuffled(n, 99));
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    for (let i = 0; i < n; i++) expect(ram.ram.subarray(i * BLOCK, (i + 1) * BLOCK)).toEqual(pattern(1, i));
    expect(sim.broken).toBeUndefined();
    expect(engine.stats.inFlight).toBe(0);
  });

  test('in-order mode: nothing is published until the oldest command completes', async () => {
    const { sim, ram } = setup({ ooo: false }, 'manual');
    const n = 10;
    const results = Array.from({ length: n }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    await waitFor(() => ram.parked.length === n, 'all commands executing');
    const parked = ram.parked.splice(0);
    for (let i = n - 1; i >= 1; i--) parked[i]!(); // everything but the oldest
    await settle();
    expect(sim.completed).toBe(0);
    parked[0]!();
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    expect(sim.broken).toBeUndefined();
  });

  test('in-order mode with random timing and wraps stays consistent', async () => {
    const { sim } = setup({ ooo: false, ringSize: 1200 }, 'random');
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => sim.submit(read10(i % 64, 2), { inLength: 2 * BLOCK })));
    expect(rs.every((r) => r.status === 0)).toBe(true);
    expect(sim.broken).toBeUndefined();
  });
});

describe('RingEngine: batching and back-pressure', () => {
  test('one kick per batch: ten synchronous commands in one tick', async () => {
    const { sim, engine } = setup({}, 'sync');
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    expect(rs).toHaveLength(10);
    expect(sim.kernelKicks).toBe(1);
    expect(sim.runnerKicks).toBe(1);
    expect(engine.stats.kicks).toBe(1);
  });

  test('commands queued while a batch runs go out with its kick; a ring that keeps filling still lets the batch end', async () => {
    // The first command queues two more while it executes, as an initiator
    // answering the last kick on another CPU does: the batch looks at the
    // head again and completes all three with one kick.
    const ram = new RamTarget(64);
    let extra: Promise<SimResult>[] = [];
    const queuing: ScsiTarget = {
      execute(cmd: ScsiCommand) {
        if (extra.length === 0) {
          extra = [1, 2].map((lba) => sim!.submit(read10(lba, 1), { inLength: BLOCK }));
          sim!.publishHeadNow();
        }
        return ram.execute(cmd);
      },
    };
    const { sim: s, engine: e } = setup({}, 'sync', {}, queuing);
    const first = await s.submit(read10(0, 1), { inLength: BLOCK });
    const more = await Promise.all(extra);
    expect([first, ...more].map((r) => r.status)).toEqual([0, 0, 0]);
    expect(e.stats.kicks).toBe(1);
    expect(e.stats.commands).toBe(3);

    // A target that queues one more command for each it executes never
    // leaves the ring empty: every batch still ends after a bounded number
    // of looks, kicks, and lets the event loop run (timers here).
    const { sim: s2, engine: e2 } = setup({}, 'sync', {}, {
      execute(cmd: ScsiCommand) {
        if (left > 0) {
          left--;
          queued.push(s2.submit(read10(left % 64, 1), { inLength: BLOCK }));
          s2.publishHeadNow();
        }
        return ram.execute(cmd);
      },
    });
    let left = 200;
    const queued: Promise<SimResult>[] = [];
    let timerRan = false;
    setTimeout(() => (timerRan = true), 0);
    await s2.submit(read10(0, 1), { inLength: BLOCK });
    await waitFor(() => queued.length === 200);
    expect((await Promise.all(queued)).every((r) => r.status === 0)).toBe(true);
    expect(e2.stats.commands).toBe(201);
    expect(e2.stats.kicks).toBeGreaterThan(1);
    expect(e2.stats.kicks).toBeLessThan(201);
    expect(timerRan).toBe(true);
    expect(s2.broken).toBeUndefined();
  });

  test.each(['immediate', 'microtask'] as const)('async completions settling together share one kick (%s)', async (coalesce) => {
    const { sim, engine } = setup({}, 'microtask', { coalesce });
    await Promise.all(Array.from({ length: 10 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    expect(sim.runnerKicks).toBe(1);
    expect(engine.stats.kicks).toBe(1);
  });

  test('enter wraps each pass that starts commands: every command starts inside it, once per batch, not per command', async () => {
    let inside = false;
    let entered = 0;
    const started: boolean[] = [];
    const ram = new RamTarget(64);
    const spy: ScsiTarget = {
      execute(cmd) {
        started.push(inside);
        return ram.execute(cmd);
      },
    };
    const enter = (consume: () => void) => {
      entered++;
      inside = true;
      try {
        consume();
      } finally {
        inside = false;
      }
    };
    const { sim, engine } = setup({}, 'sync', { enter }, spy);
    const before = entered;
    await Promise.all(Array.from({ length: 10 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    expect(started).toEqual(Array<boolean>(10).fill(true));
    expect(entered - before).toBe(1); // ten commands that arrived together: one batch
    expect(engine.stats.commands).toBe(10);
  });

  test('a batch run from a microtask only publishes: new entries wait for the event loop, so a busy LUN cannot starve it', async () => {
    // Command A, while executing, makes the "kernel" add B and queues a
    // macrotask. A completes in a microtask; if that batch consumed B, B
    // would run before the macrotask, and with I/O that always completes
    // inline the event loop would never get a turn.
    const ram = new RamTarget(64, 'microtask');
    let macrotaskRan = false;
    let macrotaskRanBeforeB: boolean | undefined;
    let second: Promise<SimResult> | undefined;
    const target: ScsiTarget = {
      execute(cmd) {
        if (cmd.cdb.readUInt32BE(2) === 0) {
          second = sim!.submit(read10(1, 1), { inLength: BLOCK });
          setImmediate(() => (macrotaskRan = true));
        } else {
          macrotaskRanBeforeB = macrotaskRan;
        }
        return ram.execute(cmd);
      },
    };
    const { sim: s } = setup({}, 'sync', {}, target);
    expect((await s.submit(read10(0, 1), { inLength: BLOCK })).status).toBe(0);
    await waitFor(() => second !== undefined, 'B submitted');
    expect((await second!).status).toBe(0);
    expect(macrotaskRanBeforeB).toBe(true);
  });

  test('maxInFlight exhaustion stops consuming, then recovers', async () => {
    const { sim, ram, engine } = setup({}, 'manual', { maxInFlight: 4 });
    const results = Array.from({ length: 10 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    await waitFor(() => ram.parked.length === 4, 'pool full');
    await settle();
    expect(ram.parked.length).toBe(4); // the other six wait in the ring
    expect(engine.stats.inFlight).toBe(4);
    expect(sim.cmdIdsInRing()).toHaveLength(10);
    while (sim.completed < 10) {
      ram.releaseParked();
      await waitFor(() => ram.parked.length > 0 || sim!.completed === 10, 'next wave');
    }
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    expect(engine.stats.maxInFlight).toBe(4);
  });

  test('a full ring makes the kernel queue; everything completes', async () => {
    const { sim, engine } = setup({ ringSize: 1024 }, 'random', { maxInFlight: 3 });
    const results = Array.from({ length: 200 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    expect(sim.waitingCount).toBeGreaterThan(150); // ring holds only 7 entries
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    expect(engine.stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(sim.broken).toBeUndefined();
  });

  test('drain() stops consuming and resolves when in-flight commands are done', async () => {
    const { sim, ram, engine } = setup({}, 'manual');
    const first = Array.from({ length: 5 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    await waitFor(() => ram.parked.length === 5, 'five executing');
    let drained = false;
    const drain = engine.drain().then(() => (drained = true));
    const late = sim.submit(read10(9, 1), { inLength: BLOCK });
    await settle();
    expect(drained).toBe(false);
    ram.releaseParked();
    await drain;
    expect(engine.stats.inFlight).toBe(0);
    for (const r of await Promise.all(first)) expect(r.status).toBe(0);
    await settle();
    expect(ram.parked.length).toBe(0); // the late command was not consumed
    expect(sim.cmdIdsInRing()).toHaveLength(1);
    engine.start(); // resume
    await waitFor(() => ram.parked.length === 1, 'late command consumed');
    ram.releaseParked();
    expect((await late).status).toBe(0);
  });
});

describe('RingEngine: READ_LEN', () => {
  test('short data-in is reported with read_len', async () => {
    const { sim } = setup({ readLen: true });
    const r = await sim.submit(inquiry(96), { inLength: 96 });
    expect(r.status).toBe(0);
    expect(r.readLen).toBe(36);
    expect(r.dataIn).toHaveLength(36);
    expect(r.dataIn!.subarray(8, 16).toString('latin1')).toBe('TCMU-TS ');
  });

  test('without the READ_LEN capability the full buffer is transferred', async () => {
    const { sim } = setup({ readLen: false });
    const r = await sim.submit(inquiry(96), { inLength: 96 });
    expect(r.readLen).toBeUndefined();
    expect(r.dataIn).toHaveLength(96);
  });

  test('full-length data-in sets no READ_LEN flag', async () => {
    const { sim } = setup({ readLen: true });
    const r = await sim.submit(inquiry(36), { inLength: 36 });
    expect(r.uflags).toBe(0);
    expect(r.readLen).toBeUndefined();
  });
});

describe('RingEngine: TMR', () => {
  test('an ABORT TASK marks the listed command aborted and is reported', async () => {
    const tmrs: [number, number[]][] = [];
    const { sim, ram } = setup({}, 'manual', { onTmr: (type, ids) => tmrs.push([type, ids]) });
    const results = Array.from({ length: 3 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    await waitFor(() => ram.parked.length === 3, 'executing');
    const victim = sim.cmdIdsInRing()[1]!;
    sim.submitTmr(TmrType.AbortTask, [victim]);
    await waitFor(() => tmrs.length === 1, 'TMR delivered');
    expect(tmrs[0]).toEqual([TmrType.AbortTask, [victim]]);
    ram.releaseParked();
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    expect(ram.abortedSeen).toHaveLength(1);
    expect(ram.abortedSeen[0]!.cdb.readUInt32BE(2)).toBe(1); // the second command
    expect(sim.broken).toBeUndefined();
  });

  test('a TMR fires the abort signal of exactly the commands it lists', async () => {
    const ram = new RamTarget(64, 'manual');
    const signals: AbortSignal[] = [];
    const cmds: ScsiCommand[] = [];
    const spy: ScsiTarget = {
      execute(cmd) {
        cmds.push(cmd);
        // Commands 0-3 take their signal at once; command 4 only after the TMR.
        if (cmds.length <= 4) signals.push(cmd.signal!);
        return ram.execute(cmd);
      },
    };
    const { sim } = setup({}, 'sync', {}, spy);
    const results = Array.from({ length: 5 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK }));
    await waitFor(() => ram.parked.length === 5, 'executing');
    const ids = sim.cmdIdsInRing();
    sim.submitTmr(TmrType.LunReset, [ids[1]!, ids[3]!, ids[4]!]);
    await waitFor(() => signals[1]!.aborted, 'TMR delivered');
    expect(signals.map((s) => s.aborted)).toEqual([false, true, false, true]);
    expect(signals[1]!.reason).toMatchObject({ code: 'ECANCELED', message: 'command aborted by LUN RESET' });
    // A signal first asked for after the TMR comes already aborted.
    expect(cmds[4]!.signal!.aborted).toBe(true);
    expect(cmds.map((c) => c.aborted)).toEqual([false, true, false, true, true]);
    ram.releaseParked();
    for (const r of await Promise.all(results)) expect(r.status).toBe(0);
    // The slots are reused with fresh, unaborted signals.
    ram.timing = 'sync';
    const again = await Promise.all(Array.from({ length: 5 }, (_, i) => sim.submit(read10(i, 1), { inLength: BLOCK })));
    for (const r of again) expect(r.status).toBe(0);
    expect(cmds.slice(5).every((c) => !c.aborted && !c.signal!.aborted)).toBe(true);
    expect(sim.broken).toBeUndefined();
  });

  test('a slot reuses its abort signal until it fires, then makes a new one', () => {
    const [slot] = createSlots(1);
    slot!.reset(1, 0, 0);
    const first = slot!.signal;
    slot!.reset(2, 0, 0);
    expect(slot!.signal).toBe(first); // no AbortSignal per command
    slot!.abort(TmrType.AbortTask);
    expect(first.aborted).toBe(true);
    expect(first.reason).toMatchObject({ code: 'ECANCELED', message: 'command aborted by ABORT TASK' });
    slot!.reset(3, 0, 0);
    const second = slot!.signal;
    expect(second).not.toBe(first);
    expect(second.aborted).toBe(false);
    slot!.reset(4, 0, 0);
    slot!.abort(TmrType.LunReset);
    expect(slot!.signal).toBe(second);
    expect(second.reason).toMatchObject({ message: 'command aborted by LUN RESET' });
  });

  test('an ABORT TASK naming a command no longer executing aborts nothing', async () => {
    const tmrs: number[][] = [];
    const seen: ScsiCommand[] = [];
    const ram = new RamTarget(64, 'sync');
    const spy: ScsiTarget = {
      execute(cmd) {
        seen.push(cmd);
        return ram.execute(cmd);
      },
    };
    const { sim } = setup({}, 'sync', { onTmr: (_type, ids) => tmrs.push(ids) }, spy);
    const done = await sim.submit(read10(0, 1), { inLength: BLOCK });
    sim.submitTmr(TmrType.AbortTask, [done.cmdId]);
    await waitFor(() => tmrs.length === 1, 'TMR delivered');
    expect(seen.every((c) => !c.aborted)).toBe(true);
  });

  test('TMR entries between commands are skipped by the tail (ring space reclaimed)', async () => {
    const { sim } = setup({ ringSize: 1000 }, 'sync');
    for (let round = 0; round < 30; round++) {
      sim.submitTmr(TmrType.LunReset, []);
      const r = await sim.submit(read10(round, 1), { inLength: BLOCK });
      expect(r.status).toBe(0);
    }
    sim.submitTmr(TmrType.AbortTaskSet, [1, 2, 3]);
    await settle(); // a trailing TMR alone is reclaimed with the next batch
    expect((await sim.submit(read10(0, 1), { inLength: BLOCK })).status).toBe(0);
    expect(sim.ringLastCleaned).toBe(sim.ringHead);
    expect(sim.broken).toBeUndefined();
  });
});

describe('RingEngine: failures', () => {
  /** Corrupt the just-queued entry before the (microtask-deferred) kick. */
  function corruptLatest(s: KernelSim, edit: (u32: Uint32Array, base: number) => void) {
    const id = Math.max(...s.cmdIdsInRing());
    const base = Mailbox.size + s.entryOffsetOf(id)!;
    edit(new Uint32Array(s.runnerMapping().buffer), base);
  }

  test.each([
    ['iov below the data area', (u32: Uint32Array, base: number) => (u32[(base + CmdReq.iov) >>> 2] = 64)],
    ['iov past the map', (u32: Uint32Array, base: number) => (u32[(base + CmdReq.iov + 4) >>> 2] = 1)],
    ['iov length past the map', (u32: Uint32Array, base: number) => (u32[(base + CmdReq.iov + 8) >>> 2] = 0x7fffffff)],
    ['CDB outside the map', (u32: Uint32Array, base: number) => (u32[(base + CmdReq.cdbOff + 4) >>> 2] = 2)],
    ['more iovecs than the entry holds', (u32: Uint32Array, base: number) => (u32[(base + CmdReq.iovCnt) >>> 2] = 50)],
  ])('%s -> the ring is broken: the engine stops and reports it', async (_name, edit) => {
    const errors: Error[] = [];
    const { sim, engine } = setup({}, 'sync', { onError: (e) => errors.push(e) });
    const bad = sim.submit(read10(0, 1), { inLength: BLOCK }).catch((e: Error) => e);
    corruptLatest(sim, edit);
    await waitFor(() => errors.length === 1, 'engine error');
    expect(errors[0]!.message).toMatch(/malformed.*ring broken/);
    expect((errors[0] as RingEngineError).code).toBe('EPROTO');
    expect(engine.stats.commands).toBe(0);
    sim.close();
    expect(await bad).toBeInstanceOf(Error); // never answered: the kernel would time it out
  });

  const throwing: ScsiTarget = {
    execute(cmd: ScsiCommand) {
      if (cmd.cdb[0] === 0x28) throw new Error('boom');
      if (cmd.cdb[0] === 0x2a) return Promise.reject(new Error('async boom'));
      if (cmd.cdb[0] === 0x12) return 999; // not a status byte
      return undefined as unknown as number; // neither status nor promise
    },
  };

  test.each([
    ['execute throws', read10(0, 1)],
    ['execute rejects', write10(0, 1)],
    ['execute returns a non-status', inquiry(36)],
    ['execute returns undefined', Buffer.from([0x00, 0, 0, 0, 0, 0])],
  ])('%s -> 04/44/00 and counted', async (_name, cdb) => {
    const { sim, engine } = setup({}, 'sync', {}, throwing);
    const isWrite = cdb[0] === 0x2a;
    const inLength = cdb[0] === 0x12 ? 36 : cdb[0] === 0x00 ? undefined : BLOCK;
    const r = await sim.submit(cdb, isWrite ? { out: Buffer.alloc(BLOCK) } : { inLength });
    expect(r.status).toBe(2);
    expect(senseKey(r)).toEqual([0x04, 0x44, 0x00]);
    expect(engine.stats.errors).toBe(1);
  });

  test('sense from one failed command does not leak into the next', async () => {
    let call = 0;
    const noisy: ScsiTarget = {
      execute(cmd) {
        if (call++ === 0) {
          cmd.sense.fill(0xee); // uses all 96 bytes
          return 2;
        }
        cmd.sense[0] = 0x70; // writes only a few bytes
        cmd.sense[2] = 0x06;
        return 2;
      },
    };
    const { sim } = setup({}, 'sync', {}, noisy);
    const first = await sim.submit(read10(0, 1), { inLength: BLOCK });
    expect(first.sense.every((b) => b === 0xee)).toBe(true);
    const second = await sim.submit(read10(0, 1), { inLength: BLOCK });
    expect(second.sense[2]).toBe(0x06);
    expect(second.sense.subarray(3).every((b) => b === 0)).toBe(true);
  });

  test('a mailbox that is not version 2 is refused', () => {
    sim = live.track(KernelSim.create({ ringSize: 4096, dataSize: 65536, ooo: true, readLen: true, mailboxVersion: 1 }));
    expect(() => new RingEngine(sim!.runnerMapping(), new RamTarget(1))).toThrow(/mailbox version 1/);
  });

  test('a malformed entry length stops the engine with an error', async () => {
    const errors: Error[] = [];
    const { sim } = setup({}, 'sync', { onError: (e) => errors.push(e) });
    const p = sim.submit(read10(0, 1), { inLength: BLOCK }).catch((e: Error) => e);
    const id = sim.cmdIdsInRing()[0]!;
    new Uint32Array(sim.runnerMapping().buffer)[(Mailbox.size + sim.entryOffsetOf(id)!) >>> 2] = (1 << 20) | 1;
    await waitFor(() => errors.length === 1, 'engine error');
    expect(errors[0]!.message).toMatch(/ring broken/);
    sim.close();
    expect(await p).toBeInstanceOf(Error);
  });
});
