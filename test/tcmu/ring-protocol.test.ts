/**
 * A kernel side that breaks the ring protocol: the engine must stop with an
 * EPROTO error (which the LUN turns into a blocked, failed device) and never
 * spin. Each test ends within a bounded number of event-loop turns; a spin
 * would hang the worker and time the test out.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { RingEngine, RingEngineError } from '../../src/tcmu/ring-engine.js';
import { Mailbox, Op, TmrEntry } from '../../src/tcmu/ring-layout.js';
import { KernelSim } from '../sim/kernel-sim.js';
import { BLOCK, RamTarget, read10 } from './ram-target.js';
import { closedAfterEach } from './closed-after-each.js';
import { settle, waitFor } from './wait.js';

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

function create(ooo = true) {
  sim = live.track(KernelSim.create({ ringSize: 4096, dataSize: 1 << 20, ooo, readLen: true }));
  const errors: RingEngineError[] = [];
  const ram = new RamTarget(64, 'manual');
  engine = live.track(new RingEngine(sim.runnerMapping(), ram, { onError: (e) => errors.push(e as RingEngineError) }));
  return { sim, ram, engine, errors, u32: new Uint32Array(sim.runnerMapping().buffer) };
}

describe('a ring that breaks the protocol fails, never spins', () => {
  test.each([
    ['cmd_tail not 8-aligned', Mailbox.cmdTail, 13],
    ['cmd_tail beyond the ring', Mailbox.cmdTail, 1 << 20],
    ['cmd_head not 8-aligned', Mailbox.cmdHead, 4092],
    ['cmd_head beyond the ring', Mailbox.cmdHead, 0xfffffff8],
  ])('%s at start', (_name, field, value) => {
    const { sim, engine, errors } = create();
    sim.runnerMapping().storeRelease32(field, value);
    engine.start();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('EPROTO');
    expect(errors[0]!.message).toMatch(/not a valid ring offset/);
    expect(() => engine.start()).toThrow(/broken/);
  });

  test.each([true, false])('len_op rewritten to 0 on an in-flight entry (OOOC %s)', async (ooo) => {
    const { sim, ram, engine, errors, u32 } = create(ooo);
    engine.start();
    const pending = sim.submit(read10(0, 1), { inLength: BLOCK }).catch((e: Error) => e);
    await waitFor(() => ram.parked.length === 1, 'executing');
    const at = sim.entryOffsetOf(sim.cmdIdsInRing()[0]!)!;
    u32[(Mailbox.size + at) >>> 2] = 0;
    ram.releaseParked();
    await waitFor(() => errors.length === 1, 'engine error');
    expect(errors[0]!.message).toMatch(/len_op of the in-flight entry at \d+ (was rewritten|changed)/);
    expect(engine.stats.commands).toBe(0);
    sim.close();
    expect(await pending).toBeInstanceOf(Error);
  });

  test('len_op rewritten to a huge length on an in-flight entry', async () => {
    const { sim, ram, errors, u32, engine } = create(true);
    engine.start();
    void sim.submit(read10(0, 1), { inLength: BLOCK }).catch(() => undefined);
    await waitFor(() => ram.parked.length === 1, 'executing');
    u32[(Mailbox.size + sim.entryOffsetOf(sim.cmdIdsInRing()[0]!)!) >>> 2] = 0x7ffffff8 | Op.Cmd;
    ram.releaseParked();
    await waitFor(() => errors.length === 1, 'engine error');
    expect(errors[0]!.code).toBe('EPROTO');
  });

  test.each([
    ['an entry of length 0', 0 | Op.Cmd],
    ['an entry longer than the ring', 8192 | Op.Cmd],
    ['an unknown op', 64 | 5],
  ])('%s at the head', async (_name, lenOp) => {
    const { sim, engine, errors, u32 } = create();
    engine.start();
    // Play the kernel: one entry at offset 0, head moved past it.
    u32[Mailbox.size >>> 2] = lenOp;
    sim.runnerMapping().storeRelease32(Mailbox.cmdHead, 64);
    sim.runnerMapping().kick(); // the runner's own fd: wake its watch through the pair
    engine.start(); // resume: consumes at once
    await settle(5);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/ring broken/);
  });

  test('a TMR listing more ids than it holds', async () => {
    const { sim, engine, errors, u32 } = create();
    engine.start();
    u32[Mailbox.size >>> 2] = 40 | Op.Tmr;
    u32[(Mailbox.size + TmrEntry.cmdCnt) >>> 2] = 1_000_000;
    sim.runnerMapping().storeRelease32(Mailbox.cmdHead, 40);
    engine.start();
    await settle(5);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/TMR entry at 0 lists 1000000 ids/);
  });

  test('a broken engine writes nothing more into the ring', async () => {
    const { sim, ram, engine, errors, u32 } = create(true);
    engine.start();
    void sim.submit(read10(0, 1), { inLength: BLOCK }).catch(() => undefined);
    void sim.submit(read10(1, 1), { inLength: BLOCK }).catch(() => undefined);
    await waitFor(() => ram.parked.length === 2, 'executing');
    const ids = sim.cmdIdsInRing();
    u32[(Mailbox.size + sim.entryOffsetOf(ids[0]!)!) >>> 2] = 0;
    const tailBefore = u32[Mailbox.cmdTail >>> 2];
    ram.releaseParked();
    await waitFor(() => errors.length === 1, 'engine error');
    await settle(5);
    expect(u32[Mailbox.cmdTail >>> 2]).toBe(tailBefore);
    expect(engine.stats.commands).toBe(0);
  });
});
