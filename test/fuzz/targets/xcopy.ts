/**
 * Fuzz target `xcopy`: EXTENDED COPY parameter lists (valid ones, then
 * mutated: lengths, counts, descriptor types, designators, LBAs) between two
 * RAM disks that reach each other by NAA id, as the daemon's LUNs do. Every
 * outcome must be GOOD or a CHECK CONDITION the copy manager means
 * (ILLEGAL REQUEST, DATA PROTECT, COPY ABORTED), never an internal failure
 * or a throw; a refused list must leave both disks untouched.
 */
import type { ScsiCommand } from '../../../src/scsi/command.js';
import { ScsiDisk, type CopyEndpoint, type DiskIdentity } from '../../../src/scsi/index.js';
import { IDENTITY } from '../../scsi/harness.js';
import { RamStore } from '../../scsi/ram-store.js';
import { mutate } from '../lib/mutate.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

const NAA = ['6001405' + 'a'.repeat(25), '6001405' + 'b'.repeat(25), '6001405' + 'c'.repeat(25)];
const ALLOWED_KEYS = new Set([0x05, 0x07, 0x0a, 0x03]);

function be(value: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) % 256);
  return out;
}

function validList(rng: Rng, blocks: number): Buffer {
  const cscds = rng.between(1, 3);
  const c: number[] = [];
  for (let i = 0; i < cscds; i++) {
    const d = [0xe4, 0, 0, 0, 0x01, 0x03, 0, 16, ...Buffer.from(rng.pick(NAA), 'hex')];
    while (d.length < 32) d.push(0);
    c.push(...d);
  }
  const s: number[] = [];
  for (let i = rng.between(1, 3); i > 0; i--) {
    const n = rng.between(0, Math.min(blocks, 64));
    s.push(0x02, 0, 0, 0x18, ...be(rng.between(0, cscds - 1), 2), ...be(rng.between(0, cscds - 1), 2), 0, 0, ...be(n, 2));
    s.push(...be(rng.between(0, blocks - n), 8), ...be(rng.between(0, blocks - n), 8));
  }
  return Buffer.from([0, 0x18, ...be(c.length, 2), 0, 0, 0, 0, ...be(s.length, 4), 0, 0, 0, 0, ...c, ...s]);
}

const target: FuzzTarget = {
  name: 'xcopy',
  description: 'mutated EXTENDED COPY parameter lists between two disks: meant sense only, refusals change nothing',
  cases: { short: 2000, long: 100_000 },
  async runCase({ rng }) {
    const blocks = rng.pick([16, 64, 256]);
    const peers = new Map<string, CopyEndpoint>();
    const disks = NAA.slice(0, 2).map((naa) => {
      const store = new RamStore({ blocks, async: rng.chance(0.3), readOnly: rng.chance(0.1) });
      for (let i = 0; i < store.data.length; i++) store.data[i] = (i * 31 + naa.charCodeAt(8)) & 0xff;
      const identity: DiskIdentity = { ...IDENTITY, naa };
      const disk = new ScsiDisk(store, identity, { copyPeers: (n) => peers.get(n.toString('hex')) });
      peers.set(naa, disk.copyEndpoint());
      return { disk, store };
    });
    for (const d of disks) await d.disk.execute({ cdb: Buffer.alloc(6), iov: [], iovLength: 0, bidiIov: [], sense: Buffer.alloc(96), dataInLength: 0, aborted: false });
    const before = disks.map((d) => Buffer.from(d.store.data));
    let list = validList(rng, blocks);
    if (rng.chance(0.8)) list = mutate(rng, list);
    const declared = rng.chance(0.8) ? list.length : rng.between(0, list.length + 64);
    const out = Buffer.alloc(Math.max(list.length, rng.chance(0.9) ? list.length : declared));
    list.copy(out);
    const cmd: ScsiCommand = {
      cdb: Buffer.from([0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be(declared, 4), 0, 0]),
      iov: out.length ? [out] : [],
      iovLength: out.length,
      bidiIov: [],
      sense: Buffer.alloc(96),
      dataInLength: 0,
      aborted: false,
    };
    const status = await disks[0]!.disk.execute(cmd);
    if (status === 0) return 'good';
    if (status !== 2) throw new FuzzFinding('bad-status', `status ${status} for list ${list.toString('hex')}`);
    const key = cmd.sense[0] === 0x72 ? cmd.sense[1]! & 0xf : cmd.sense[2]! & 0xf;
    const asc = cmd.sense[0] === 0x72 ? cmd.sense[2]! : cmd.sense[12]!;
    const ascq = cmd.sense[0] === 0x72 ? cmd.sense[3]! : cmd.sense[13]!;
    if (!ALLOWED_KEYS.has(key)) throw new FuzzFinding('unexpected-sense', `sense ${key}/${asc}/${ascq} for list ${list.toString('hex')}`);
    // Refused before the copy (ILLEGAL REQUEST, DATA PROTECT, COPY ABORTED): nothing may have changed.
    if (key !== 0x03) {
      disks.forEach((d, i) => {
        if (!d.store.data.equals(before[i]!)) throw new FuzzFinding('refused-but-written', `disk ${i} changed after ${key}/${asc}/${ascq}: ${list.toString('hex')}`);
      });
    }
    return `sense:${key.toString(16)}/${asc.toString(16)}/${ascq.toString(16)}`;
  },
};

export default target;
