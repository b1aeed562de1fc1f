/**
 * Fuzz the ALUA configfs reader (src/lio/alua-configfs.ts) and what the
 * disk builds from it: a fake configfs tree of two groups with their member
 * ports, one attribute file or member list mutated per case. configfs is
 * the kernel's, but its contents are what an admin's tools wrote. Every
 * case must end with
 *   - readAluaConfig returning (a malformed group is left out, never thrown),
 *     within the caps, with ids and states in range;
 *   - no port path that leaves the target tree (fabric and wwn plain names);
 *   - the local port one of an enabled member of the local group;
 *   - INQUIRY (standard and VPD 0x83) and REPORT TARGET PORT GROUPS over it
 *     answering GOOD or ILLEGAL REQUEST, never a HARDWARE ERROR.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_GROUPS, MAX_PORTS_PER_GROUP, readAluaConfig } from '../../../src/lio/alua-configfs.js';
import { AluaState } from '../../../src/scsi/alua.js';
import { ScsiDisk } from '../../../src/scsi/index.js';
import { IDENTITY, command, run, sense } from '../../scsi/harness.js';
import { RamStore } from '../../scsi/ram-store.js';
import { type FakeConfigfs, fakeAluaConfigfs } from '../../lio/fake-alua.js';
import { mutate } from '../lib/mutate.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

let fake: FakeConfigfs | undefined;
/** Files a case may mutate, relative to the fake root. */
let files: string[] = [];
const STATES = new Set<number>(Object.values(AluaState));

const target: FuzzTarget = {
  name: 'alua-configfs',
  description: 'the ALUA configfs reader and INQUIRY / REPORT TARGET PORT GROUPS over it, one configfs file mutated per case',
  cases: { short: 1500, long: 100000 },
  async setup() {
    fake = fakeAluaConfigfs([
      { name: 'gw-a', id: 1, ports: [{ fabric: 'iscsi', wwn: 'iqn.2003-01.org.x:gw', tpgt: 1, lun: 0, relativePortId: 1, protocolId: 5, enabled: true }] },
      { name: 'gw-b', id: 2, state: 1, ports: [{ fabric: 'loopback', wwn: 'naa.5001405aa0000001', tpgt: 1, lun: 3, relativePortId: 9, protocolId: 6 }] },
    ]);
    const dev = join('core', 'user_1', 'gw0', 'alua');
    files = [
      ...['gw-a', 'gw-b'].flatMap((g) => ['members', 'tg_pt_gp_id', 'alua_access_state', 'alua_access_type', 'alua_access_status', 'implicit_trans_secs', 'alua_support_standby'].map((f) => join(dev, g, f))),
      'iscsi/iqn.2003-01.org.x:gw/tpgt_1/enable',
      'iscsi/iqn.2003-01.org.x:gw/tpgt_1/lun/lun_0/statistics/scsi_port/indx',
      'loopback/naa.5001405aa0000001/tpgt_1/lun/lun_3/statistics/scsi_transport/proto_id',
    ];
  },
  async teardown() {
    if (fake) rmSync(fake.root, { recursive: true, force: true });
  },
  async runCase({ rng }) {
    const { root, deviceDir } = fake!;
    const file = join(root, rng.pick(files));
    const original = readFileSync(file);
    writeFileSync(file, mutate(rng, original, { count: rng.between(1, 4) }));
    try {
      const config = await readAluaConfig(deviceDir, root);
      if (config.groups.length > MAX_GROUPS) throw new FuzzFinding('too-many-groups', `${config.groups.length}`);
      for (const g of config.groups) {
        if (!Number.isInteger(g.id) || g.id < 0 || g.id > 0xffff) throw new FuzzFinding('bad-id', `${g.name}: ${g.id}`);
        if (!STATES.has(g.state)) throw new FuzzFinding('bad-state', `${g.name}: ${g.state}`);
        if (g.ports.length > MAX_PORTS_PER_GROUP) throw new FuzzFinding('too-many-ports', `${g.name}: ${g.ports.length}`);
        for (const p of g.ports) {
          if ([p.fabric, p.wwn].some((part) => part.includes('/') || part === '.' || part === '..')) {
            throw new FuzzFinding('path-escape', `${g.name}: ${p.fabric}/${p.wwn}`);
          }
          if (p.relativePortId < 0 || p.relativePortId > 0xffff || p.protocolId < 0 || p.protocolId > 0xf) {
            throw new FuzzFinding('bad-port', `${g.name}: ${JSON.stringify(p)}`);
          }
        }
      }
      const local = config.local;
      if (local !== undefined) {
        const group = config.localGroup;
        const port = group?.ports.find((p) => p.enabled && p.relativePortId === local.relativePortId);
        if (group?.id !== local.groupId || port === undefined) throw new FuzzFinding('bad-local', JSON.stringify(local));
      }
      const disk = new ScsiDisk(new RamStore(), IDENTITY, { portGroups: async () => config });
      await run(disk, command([0, 0, 0, 0, 0, 0]));
      for (const cdb of [
        [0x12, 0, 0, 0, 96, 0],
        [0x12, 1, 0x83, 1, 0, 0],
        [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        [0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
      ]) {
        const cmd = command(cdb, { inLength: 4096 });
        const status = await run(disk, cmd);
        if (status !== 0 && !(status === 2 && sense(cmd).key === 0x5)) {
          throw new FuzzFinding('scsi', `${cdb[0]!.toString(16)}: status ${status} sense ${JSON.stringify(sense(cmd))}`);
        }
      }
      return `groups:${config.groups.length} local:${local ? local.groupId : '-'}`;
    } finally {
      writeFileSync(file, original);
    }
  },
};

export default target;
