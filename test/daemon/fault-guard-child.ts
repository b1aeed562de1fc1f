/**
 * Child process for fault-guard.test.ts (a process of its own: the guard
 * takes over the process-level fault events, which the test runner watches
 * too). Three "LUNs" (ring engine + simulated kernel each) share the
 * process: A's handler leaves a promise rejection unhandled, C's throws from
 * a timer, B is healthy. Prints one JSON line with what happened.
 */
import { FaultGuard } from '../../src/daemon/fault-guard.js';
import type { ScsiCommand, ScsiTarget } from '../../src/scsi/command.js';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { KernelSim } from '../sim/kernel-sim.js';
import { BLOCK, RamTarget, read10, write10 } from '../tcmu/ram-target.js';

const guard = new FaultGuard(undefined);
guard.install();

function lun(id: string, misbehave?: (cmd: ScsiCommand) => void) {
  const sim = KernelSim.create({ ringSize: 16 * 1024, dataSize: 1 << 20, ooo: true, readLen: true });
  const ram = new RamTarget(256);
  const execute = (cmd: ScsiCommand) => {
    if (cmd.cdb[0] === 0x2a && misbehave) misbehave(cmd);
    return ram.execute(cmd);
  };
  // As Lun does: every command runs inside its LUN's fault context.
  const target: ScsiTarget = { execute: (cmd) => guard.within(owner, execute, cmd) };
  const engine = new RingEngine(sim.runnerMapping(), target);
  const state = { id, failed: undefined as string | undefined, sim, engine };
  const owner = {
    id,
    fail(err: unknown, source: string) {
      state.failed = `${source}: ${(err as Error).message}`;
      engine.close();
    },
  };
  engine.start();
  return state;
}

const a = lun('A', () => {
  // A handler bug: a promise it created rejects later and nobody listens.
  setImmediate(() => void Promise.reject(new Error('lost write-back')));
});
const b = lun('B');
const c = lun('C', () => {
  setTimeout(() => {
    throw new Error('timer threw');
  }, 1);
});

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 20_000 && !cond(); i++) await new Promise((r) => setImmediate(r));
};

await Promise.all([a, b, c].map((l) => l.sim.submit(write10(0, 1), { out: Buffer.alloc(BLOCK, 1) }).catch(() => undefined)));
await until(() => a.failed !== undefined && c.failed !== undefined);
// B keeps serving after A and C failed.
const results = await Promise.all(Array.from({ length: 50 }, (_, i) => b.sim.submit(read10(i, 1), { inLength: BLOCK })));
// A fault outside every LUN.
setImmediate(() => void Promise.reject(new Error('daemon-level bug')));
await until(() => guard.counts.unattributed === 1);
process.stdout.write(
  JSON.stringify({
    a: a.failed ?? null,
    b: b.failed ?? null,
    c: c.failed ?? null,
    bGood: results.filter((r) => r.status === 0).length,
    counts: guard.counts,
  }) + '\n',
);
for (const l of [a, b, c]) {
  l.engine.close();
  l.sim.close();
}
process.exit(0);
