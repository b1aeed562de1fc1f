/**
 * Fuzz target `ring-kernel`: a misbehaving kernel side. Garbage cmd_head /
 * cmd_tail at start, entries corrupted before the engine reads them, len_op
 * rewritten while a command is in flight, PAD/TMR entries with impossible
 * lengths or counts, cmd_head moved to garbage mid-run, random bytes over
 * the ring. The engine must either keep serving or stop with a clean
 * RingEngineError (EPROTO), write nothing into the ring after that, and
 * never spin (the driver's 10 s watchdog) or throw anything raw (an
 * uncaught exception fails the case).
 */
import { ScsiDisk } from '../../../src/scsi/index.js';
import type { ScsiCommand } from '../../../src/scsi/command.js';
import { RingEngine, RingEngineError } from '../../../src/tcmu/ring-engine.js';
import { CmdReq, Mailbox, Op, TmrEntry } from '../../../src/tcmu/ring-layout.js';
import { KernelSim } from '../../sim/kernel-sim.js';
import { IDENTITY } from '../../scsi/harness.js';
import { RamStore } from '../../scsi/ram-store.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding, type FuzzTarget, isCleanRefusal } from '../lib/target.js';
import { randomBuffer, randomCdb } from './scsi-oracle.js';

const ABUSES = ['tail-at-start', 'head-at-start', 'entry-corrupt', 'inflight-rewrite', 'pad-tmr', 'head-midrun', 'scribble'] as const;

function garbageOffset(rng: Rng, ringSize: number): number {
  return rng.pick([rng.u32(), ringSize, ringSize + 8, 4, 12, ringSize - 4, 0xfffffff8, rng.below(ringSize) & ~7]);
}

function garbageLenOp(rng: Rng, ringSize: number): number {
  const len = rng.pick([0, 8, ringSize, ringSize + 8, 0x7ffffff8, rng.u32() & ~7, rng.below(ringSize)]);
  return (len & ~7) | rng.pick([Op.Pad, Op.Cmd, Op.Tmr, 3, 7]);
}

const turn = () => new Promise((r) => setImmediate(r));

const target: FuzzTarget = {
  name: 'ring-kernel',
  description: 'a kernel side that breaks the ring protocol: the engine fails cleanly, never spins',
  cases: { short: 600, long: 20_000 },
  async runCase({ rng }) {
    const ringSize = rng.pick([1024, 4096]);
    const sim = KernelSim.create({ ringSize, dataSize: 128 * 1024, ooo: rng.chance(0.7), readLen: rng.chance(0.8), seed: rng.u32() });
    const u32 = new Uint32Array(sim.runnerMapping().buffer);
    const u8 = new Uint8Array(sim.runnerMapping().buffer);
    const disk = new ScsiDisk(new RamStore({ blocks: 64 }), IDENTITY);
    const parked: (() => void)[] = [];
    let hold = false;
    const execute = (cmd: ScsiCommand) => {
      if (!hold) return disk.execute(cmd);
      return new Promise<number>((resolve, reject) => parked.push(() => Promise.resolve(disk.execute(cmd)).then(resolve, reject)));
    };
    const errors: unknown[] = [];
    const engine = new RingEngine(sim.runnerMapping(), { execute }, { onError: (e) => errors.push(e) });
    const abuse = rng.pick(ABUSES);
    const pending: Promise<unknown>[] = [];
    const submit = (n: number) => {
      for (let i = 0; i < n; i++) {
        const c = randomBuffer(rng, randomCdb(rng, true, 64));
        const data = c.buffer === 'in' ? { inLength: c.length, iovSplit: c.split } : c.buffer === 'out' ? { out: c.out, iovSplit: c.split } : {};
        pending.push(sim.submit(c.cdb, data).catch((e: Error) => e));
      }
    };
    const at = (cmdId: number) => Mailbox.size + (sim.entryOffsetOf(cmdId) ?? 0);
    const kick = () => {
      if (errors.length === 0) engine.start(); // runs a batch, as a kernel kick would
    };
    try {
      switch (abuse) {
        case 'tail-at-start':
        case 'head-at-start':
          if (rng.chance(0.5)) submit(rng.between(1, 3));
          await turn();
          sim.runnerMapping().storeRelease32(abuse === 'tail-at-start' ? Mailbox.cmdTail : Mailbox.cmdHead, garbageOffset(rng, ringSize));
          engine.start();
          break;
        case 'entry-corrupt': {
          engine.start();
          submit(rng.between(1, 4));
          // Before the (microtask-deferred) kick: the engine reads the corrupted entry.
          const base = at(Math.max(...sim.cmdIdsInRing()));
          const field = rng.below(6);
          if (field === 0) u32[base >>> 2] = garbageLenOp(rng, ringSize);
          else if (field === 1) u32[(base + CmdReq.iovCnt) >>> 2] = rng.pick([50, 0xffffffff, rng.u32()]);
          else if (field === 2) u32[(base + CmdReq.iov + rng.pick([0, 4, 8, 12])) >>> 2] = rng.pick([1, 64, 0xffffffff, rng.u32()]);
          else if (field === 3) u32[(base + CmdReq.cdbOff + rng.pick([0, 4])) >>> 2] = rng.pick([1, 0xffffffff, rng.u32()]);
          else if (field === 4) u32[(base + CmdReq.iovBidiCnt) >>> 2] = rng.pick([1, 3, rng.u32()]);
          else u8[base + 4] = rng.below(256); // cmd_id: harmless to the engine, the sim may object
          break;
        }
        case 'inflight-rewrite': {
          engine.start();
          hold = true;
          const n = rng.between(1, 4);
          submit(n);
          for (let i = 0; i < 2000 && parked.length < n && errors.length === 0; i++) await turn();
          const ids = sim.cmdIdsInRing();
          if (ids.length > 0) {
            const base = at(rng.pick(ids));
            if (rng.chance(0.8)) u32[base >>> 2] = rng.chance(0.5) ? 0 : garbageLenOp(rng, ringSize);
            else u8[base + 4] = rng.below(256);
          }
          hold = false;
          for (const release of parked.splice(0)) release();
          break;
        }
        case 'pad-tmr': {
          engine.start();
          if (rng.chance(0.5)) submit(rng.between(1, 3));
          for (let i = 0; i < 50; i++) await turn();
          const head = sim.ringHead;
          const base = Mailbox.size + head;
          if (rng.chance(0.5)) {
            u32[base >>> 2] = (rng.pick([0, ringSize - head + 8, 0x7ffffff8, rng.u32()]) & ~7) | Op.Pad;
          } else {
            const len = rng.pick([40, 48, 64]);
            if (head + len <= ringSize) {
              u32[base >>> 2] = len | Op.Tmr;
              u32[(base + TmrEntry.cmdCnt) >>> 2] = rng.pick([0, 1, 4, 8, 1000, 0xffffffff]);
            }
          }
          sim.runnerMapping().storeRelease32(Mailbox.cmdHead, rng.chance(0.7) ? (head + 64) % ringSize : garbageOffset(rng, ringSize));
          kick();
          break;
        }
        case 'head-midrun':
          engine.start();
          submit(rng.between(1, 4));
          for (let i = 0; i < rng.below(30); i++) await turn();
          sim.runnerMapping().storeRelease32(Mailbox.cmdHead, garbageOffset(rng, ringSize));
          kick();
          break;
        case 'scribble': {
          engine.start();
          if (rng.chance(0.7)) submit(rng.between(1, 4));
          const from = Mailbox.size + (rng.below(ringSize) & ~3);
          const bytes = rng.bytes(Math.min(rng.between(1, 256), Mailbox.size + ringSize - from));
          u8.set(bytes, from);
          sim.runnerMapping().storeRelease32(Mailbox.cmdHead, rng.chance(0.5) ? sim.ringHead : rng.below(ringSize) & ~7);
          kick();
          break;
        }
      }
      // Bounded wait: served, failed, or left idle by the "kernel" (never a spin: that is the watchdog's).
      let settled = false;
      void Promise.all(pending).then(() => (settled = true));
      for (let i = 0; i < 3000 && !settled && errors.length === 0; i++) await turn();
      for (const err of errors) {
        if (!(err instanceof RingEngineError) || err.code !== 'EPROTO' || !isCleanRefusal(err)) {
          throw new FuzzFinding('raw-engine-error', `${abuse}: engine reported ${String((err as Error)?.stack ?? err)}`);
        }
      }
      if (errors.length > 0) {
        // A broken engine writes nothing more: release everything and watch the tail.
        const tail = u32[Mailbox.cmdTail >>> 2];
        hold = false;
        for (const release of parked.splice(0)) release();
        for (let i = 0; i < 20; i++) await turn();
        if (u32[Mailbox.cmdTail >>> 2] !== tail) throw new FuzzFinding('wrote-after-broken', `${abuse}: tail moved from ${tail} after the engine failed`);
        if (engine.stats.inFlight > 0 && (await Promise.race([engine.drain().then(() => 'drained'), turn().then(() => 'waiting')])) !== 'drained') {
          throw new FuzzFinding('drain-hangs', `${abuse}: drain() of a broken engine does not resolve`);
        }
        const reason = (errors[0] as Error).message.replace(/\d+/g, 'N').replace(/0xN[a-f0-9]*/g, 'X');
        return `${abuse}:failed:${reason.slice(0, 48)}`;
      }
      return `${abuse}:${settled ? 'served' : 'idle'}`;
    } finally {
      engine.close();
      sim.close();
    }
  },
};

export default target;
