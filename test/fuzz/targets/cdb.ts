/**
 * Fuzz target `cdb`: random and mutated CDBs (every opcode the command table
 * knows, plus random ones, random lengths, fields, flags and buffers)
 * through the SCSI layer (ScsiDisk over a RAM store), twice in lockstep with
 * different data-in canaries (see scsi-oracle.ts). Every CHECK CONDITION
 * must carry well-formed sense; every GOOD must claim a produced length
 * within the buffer, and no byte it claims may be the canary.
 *
 * A case is a fresh disk and 1-6 CDBs, so (seed, case) replays it alone.
 */
import type { ScsiCommand } from '../../../src/scsi/command.js';
import { ScsiDisk } from '../../../src/scsi/index.js';
import { IDENTITY } from '../../scsi/harness.js';
import { RamStore } from '../../scsi/ram-store.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';
import { type CdbCase, canaryByte, judge, randomBuffer, randomCdb } from './scsi-oracle.js';

function makeCommand(c: CdbCase, side: 0 | 1): ScsiCommand {
  let data: Buffer;
  if (c.buffer === 'out') data = Buffer.from(c.out!);
  else {
    data = Buffer.alloc(c.length);
    for (let i = 0; i < data.length; i++) data[i] = canaryByte(side, i);
  }
  const iov = c.split ? [data.subarray(0, c.split[0]), data.subarray(c.split[0])] : c.length > 0 ? [data] : [];
  return { cdb: Buffer.from(c.cdb), iov, iovLength: c.length, bidiIov: [], sense: Buffer.alloc(96), dataInLength: 0, aborted: false };
}

function received(c: CdbCase, cmd: ScsiCommand, status: number): Buffer | undefined {
  if (c.buffer !== 'in' || status !== 0) return undefined;
  const n = cmd.dataInLength;
  if (!Number.isInteger(n) || n < 0 || n > cmd.iovLength) {
    throw new FuzzFinding('bad-data-in-length', `${c.name} [${c.cdb.toString('hex')}]: dataInLength ${n} for a ${cmd.iovLength}-byte buffer`);
  }
  return Buffer.concat(cmd.iov as Buffer[]).subarray(0, n);
}

const target: FuzzTarget = {
  name: 'cdb',
  description: 'random/mutated CDBs through the SCSI layer: well-formed sense, no stale data-in',
  cases: { short: 3000, long: 150_000 },
  async runCase({ rng }) {
    const blocks = rng.pick([16, 64, 256]);
    const opts = { blocks, blockSize: rng.pick([512, 4096]), thin: rng.chance(0.5), async: rng.chance(0.3), readOnly: rng.chance(0.1) };
    const sides = [0, 1].map(() => {
      const store = new RamStore(opts);
      return new ScsiDisk(store, IDENTITY);
    });
    const classes: string[] = [];
    const n = rng.between(1, 6);
    for (let k = 0; k < n; k++) {
      const c = randomBuffer(rng, randomCdb(rng, false, blocks));
      // A data-out command given a data-in buffer writes the canary as its
      // payload (the documented gap): the same canary on both sides keeps
      // the two disks identical.
      const sideB: 0 | 1 = c.buffer === 'in' && c.specDirection === 'out' ? 0 : 1;
      const cmdA = makeCommand(c, 0);
      const cmdB = makeCommand(c, sideB);
      const [sa, sb] = await Promise.all([sides[0]!.execute(cmdA), sides[1]!.execute(cmdB)]);
      classes.push(judge(c, { status: sa, sense: cmdA.sense, received: received(c, cmdA, sa) }, { status: sb, sense: cmdB.sense, received: received(c, cmdB, sb) }));
    }
    return classes[classes.length - 1]!;
  },
};

export default target;
