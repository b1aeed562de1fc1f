/**
 * Fuzz target `ring`: random CDBs end to end through the simulated kernel
 * (test/sim), the ring engine and ScsiDisk over a RAM store, on two
 * identical LUNs in lockstep whose data-in buffers start with different
 * canaries (see scsi-oracle.ts). What is compared is what the kernel would
 * copy to the initiator (the simulator applies READ_LEN as
 * tcmu_handle_completion does), so this checks the engine's data-in limit,
 * not only the SCSI layer's claim. Rings with and without READ_LEN and
 * OOOC; iovecs split at random.
 */
import { ScsiDisk } from '../../../src/scsi/index.js';
import { RingEngine } from '../../../src/tcmu/ring-engine.js';
import { KernelSim } from '../../sim/kernel-sim.js';
import { IDENTITY } from '../../scsi/harness.js';
import { RamStore } from '../../scsi/ram-store.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';
import { judge, randomBuffer, randomCdb } from './scsi-oracle.js';

const CANARY = [0xa5, 0x5a] as const;

const target: FuzzTarget = {
  name: 'ring',
  description: 'random CDBs through the simulated ring end to end: well-formed sense, no stale data-in reaches the initiator',
  cases: { short: 1000, long: 30_000 },
  async runCase({ rng }) {
    const blocks = rng.pick([16, 64]);
    const storeOpts = { blocks, blockSize: rng.pick([512, 4096]), thin: rng.chance(0.5), async: rng.chance(0.3) };
    const simOpts = { ringSize: 8192, dataSize: 256 * 1024, ooo: rng.chance(0.7), readLen: rng.chance(0.7), seed: rng.u32() };
    const sides = [0, 1].map(() => {
      const sim = KernelSim.create(simOpts);
      const errors: Error[] = [];
      const engine = new RingEngine(sim.runnerMapping(), new ScsiDisk(new RamStore(storeOpts), IDENTITY), { onError: (e) => errors.push(e) });
      engine.start();
      return { sim, engine, errors };
    });
    try {
      let last = 'empty';
      const n = rng.between(1, 6);
      for (let k = 0; k < n; k++) {
        const c = randomBuffer(rng, randomCdb(rng, true, blocks));
        // Data-in buffers beyond the simulated data area do not fit: keep them smaller.
        const sameCanary = c.buffer === 'in' && c.specDirection === 'out';
        const data = (side: 0 | 1) =>
          c.buffer === 'in'
            ? { inLength: c.length, iovSplit: c.split, canary: sameCanary ? CANARY[0] : CANARY[side] }
            : c.buffer === 'out'
              ? { out: c.out, iovSplit: c.split }
              : {};
        const [ra, rb] = await Promise.all(sides.map((s, side) => s.sim.submit(c.cdb, data(side as 0 | 1))));
        for (const s of sides) {
          if (s.errors.length > 0 || s.sim.broken !== undefined) {
            throw new FuzzFinding('ring-broken', `${c.name} [${c.cdb.toString('hex')}]: ${s.errors[0]?.message ?? s.sim.broken}`);
          }
        }
        last = judge(
          c,
          { status: ra!.status, sense: ra!.sense, received: ra!.dataIn },
          { status: rb!.status, sense: rb!.sense, received: rb!.dataIn },
        );
      }
      return last;
    } finally {
      for (const s of sides) {
        s.engine.close();
        s.sim.close();
      }
    }
  },
};

export default target;
