/**
 * The simulator must catch a runner that breaks a ring rule. These tests
 * play deliberately broken runners by hand on the runner's mapping.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { CmdRsp, EntryHeader, Mailbox } from '../../src/tcmu/ring-layout.js';
import { read10 } from '../tcmu/ram-target.js';
import { settle, waitFor } from '../tcmu/wait.js';
import { KernelSim } from './kernel-sim.js';

let sim: KernelSim | undefined;
afterEach(() => sim?.close());

/** Hand-written runner: raw access to the runner side of the map. */
function rawRunner(s: KernelSim) {
  const m = s.runnerMapping();
  const u8 = new Uint8Array(m.buffer);
  const u16 = new Uint16Array(m.buffer);
  const u32 = new Uint32Array(m.buffer);
  const base = (at: number) => Mailbox.size + at;
  return {
    lenOf: (at: number) => u32[base(at) >>> 2]! & ~7,
    respond(at: number, cmdId: number, status = 0) {
      u8[base(at) + CmdRsp.scsiStatus] = status;
      u8[base(at) + EntryHeader.uflags] = 0;
      u16[(base(at) + EntryHeader.cmdId) >>> 1] = cmdId;
    },
    setLenOp(at: number, v: number) {
      u32[base(at) >>> 2] = v;
    },
    publish(tail: number) {
      m.storeRelease32(Mailbox.cmdTail, tail);
      m.kick();
    },
  };
}

async function twoCommands(ooo: boolean) {
  sim = KernelSim.create({ ringSize: 4096, dataSize: 65536, ooo, readLen: true });
  const a = sim.submit(read10(0, 1), { inLength: 512 });
  const b = sim.submit(read10(1, 1), { inLength: 512 });
  // Observe outcomes without unhandled rejections.
  const outcomes = [a, b].map((p) => p.then((r) => r, (e: Error) => e));
  const [idA, idB] = sim.cmdIdsInRing() as [number, number];
  return { outcomes, idA, idB, offA: sim.entryOffsetOf(idA)!, offB: sim.entryOffsetOf(idB)! };
}

describe('KernelSim ring accounting', () => {
  test('a correct hand-written OOOC completion is accepted', async () => {
    const { outcomes, idA, idB, offA } = await twoCommands(true);
    const r = rawRunner(sim!);
    // Complete B first, in the slot at the tail (OOOC).
    r.respond(offA, idB);
    r.publish(offA + r.lenOf(offA));
    await waitFor(() => sim!.completed === 1, 'first completion');
    const next = offA + r.lenOf(offA);
    r.respond(next, idA);
    r.publish(next + r.lenOf(next));
    const [ra, rb] = await Promise.all(outcomes);
    expect(sim!.broken).toBeUndefined();
    expect((ra as { cmdId: number }).cmdId).toBe(idA);
    expect((rb as { cmdId: number }).cmdId).toBe(idB);
  });

  test('completing a command twice breaks the ring', async () => {
    const { outcomes, idA, offA } = await twoCommands(true);
    const r = rawRunner(sim!);
    r.respond(offA, idA);
    r.publish(offA + r.lenOf(offA));
    await waitFor(() => sim!.completed === 1, 'first completion');
    const next = offA + r.lenOf(offA);
    r.respond(next, idA); // A again
    r.publish(next + r.lenOf(next));
    await waitFor(() => sim!.broken !== undefined, 'broken');
    expect(sim!.broken).toMatch(/cmd_id \d+ unknown or already completed/);
    expect(await outcomes[1]).toBeInstanceOf(Error);
  });

  test('touching len_op breaks the ring', async () => {
    const { outcomes, idA, offA } = await twoCommands(true);
    const r = rawRunner(sim!);
    const len = r.lenOf(offA);
    r.respond(offA, idA);
    r.setLenOp(offA, len | 0); // op CMD -> PAD, same length
    r.publish(offA + len);
    await waitFor(() => sim!.broken !== undefined, 'broken');
    expect(sim!.broken).toMatch(/len_op at ring offset 0 changed/);
    expect((await outcomes[0]) as Error).toBeInstanceOf(Error);
  });

  test('a tail inside an entry breaks the ring', async () => {
    const { offA, idA } = await twoCommands(true);
    const r = rawRunner(sim!);
    r.respond(offA, idA);
    r.publish(offA + 16);
    await waitFor(() => sim!.broken !== undefined, 'broken');
    expect(sim!.broken).toMatch(/lands inside the entry at 0/);
  });

  test('completing an entry the kernel never queued (tail beyond head) breaks the ring', async () => {
    const { idA, idB, offA, offB } = await twoCommands(true);
    const r = rawRunner(sim!);
    r.respond(offA, idA);
    r.respond(offB, idB);
    r.publish(offB + r.lenOf(offB) + 128);
    await waitFor(() => sim!.broken !== undefined, 'broken');
    expect(sim!.broken).toMatch(/passed cmd_head/);
  });

  test('without OOOC, answering the first slot for another command breaks the ring', async () => {
    const { offA, idB } = await twoCommands(false);
    const r = rawRunner(sim!);
    r.respond(offA, idB);
    r.publish(offA + r.lenOf(offA));
    await waitFor(() => sim!.broken !== undefined, 'broken');
    expect(sim!.broken).toMatch(/answered for cmd_id .* without OOOC/);
  });

  test('entries are sized like the kernel and PAD fills the wrap', async () => {
    sim = KernelSim.create({ ringSize: 1000, dataSize: 1 << 20, ooo: true, readLen: true, scatter: false });
    const r = rawRunner(sim);
    const outcomes: Promise<unknown>[] = [];
    for (let i = 0; i < 7; i++) outcomes.push(sim.submit(read10(i, 1), { inLength: 512 }));
    const ids = sim.cmdIdsInRing();
    expect(ids).toHaveLength(7);
    expect(r.lenOf(sim.entryOffsetOf(ids[0]!)!)).toBe(112 + 16); // 1 iov, 10-byte CDB
    // 7 * 128 = 896 used; the 8th cannot fit in the 104 bytes left: it waits.
    outcomes.push(sim.submit(read10(7, 1), { inLength: 512 }));
    expect(sim.waitingCount).toBe(1);
    // Complete all seven in order; the 8th is placed after a PAD at 896.
    let tail = 0;
    for (const id of ids) {
      r.respond(tail, id);
      tail += 128;
    }
    r.publish(tail);
    await waitFor(() => sim!.completed === 7, 'seven completions');
    await settle(5);
    expect(sim.padsWritten).toBe(1);
    expect(sim.entryOffsetOf(sim.cmdIdsInRing()[0]!)).toBe(0);
    // The runner must skip the PAD: complete the 8th with tail over PAD + entry.
    r.respond(0, sim.cmdIdsInRing()[0]!);
    r.publish(128);
    await Promise.all(outcomes);
    expect(sim.broken).toBeUndefined();
  });

  test('rejects a CDB whose length does not match its opcode', () => {
    sim = KernelSim.create({ ringSize: 4096, dataSize: 65536, ooo: true, readLen: true });
    expect(() => sim!.submitWith(Buffer.alloc(6, 0x28), {}, () => {})).toThrow(/needs 10 bytes/);
  });
});
