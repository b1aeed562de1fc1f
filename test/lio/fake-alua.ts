/**
 * A configfs tree with a TCMU device's ALUA groups and their member ports,
 * laid out as LIO shows them (core/user_1/<dev>/alua/<group>/..., and per
 * port <fabric>/<wwn>/tpgt_N/{enable,lun/lun_M/statistics/...}).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AluaMemberPort } from '../../src/lio/alua-configfs.js';

/** A member port; `enabled` undefined: the fabric has no enable switch (tcm_loop). */
export type FakePort = Omit<AluaMemberPort, 'enabled'> & { enabled?: boolean };

export interface FakeGroup {
  name: string;
  id: number;
  state?: number;
  type?: string;
  ports: FakePort[];
}

export interface FakeConfigfs {
  /** …/target */
  root: string;
  /** …/target/core/user_1/<dev> */
  deviceDir: string;
}

export function fakeAluaConfigfs(groups: FakeGroup[], device = 'gw0'): FakeConfigfs {
  const root = mkdtempSync(join(tmpdir(), 'tcmu-ts-alua-'));
  const deviceDir = join(root, 'core', 'user_1', device);
  mkdirSync(join(deviceDir, 'alua', 'default_tg_pt_gp'), { recursive: true });
  writeGroup(deviceDir, { name: 'default_tg_pt_gp', id: 0, type: 'Implicit and Explicit', ports: [] });
  for (const group of groups) writeGroup(deviceDir, group);
  for (const port of groups.flatMap((g) => g.ports)) {
    const tpg = join(root, port.fabric, port.wwn, `tpgt_${port.tpgt}`);
    const stats = join(tpg, 'lun', `lun_${port.lun}`, 'statistics');
    mkdirSync(join(stats, 'scsi_port'), { recursive: true });
    mkdirSync(join(stats, 'scsi_transport'), { recursive: true });
    writeFileSync(join(stats, 'scsi_port', 'indx'), `${port.relativePortId}\n`);
    writeFileSync(join(stats, 'scsi_transport', 'proto_id'), `${port.protocolId}\n`);
    if (port.enabled !== undefined) writeFileSync(join(tpg, 'enable'), port.enabled ? '1\n' : '0\n');
  }
  return { root, deviceDir };
}

export function writeGroup(deviceDir: string, group: FakeGroup): void {
  const dir = join(deviceDir, 'alua', group.name);
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    tg_pt_gp_id: String(group.id),
    alua_access_state: String(group.state ?? 0),
    alua_access_status: 'None',
    alua_access_type: group.type ?? 'Implicit',
    preferred: '0',
    implicit_trans_secs: '0',
    members: group.ports.map((p) => `${p.fabric}/${p.wwn}/tpgt_${p.tpgt}/lun_${p.lun}\n`).join(''),
    alua_support_transitioning: '1',
    alua_support_offline: '1',
    alua_support_lba_dependent: '0',
    alua_support_unavailable: '1',
    alua_support_standby: '1',
    alua_support_active_nonoptimized: '1',
    alua_support_active_optimized: '1',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), `${text}\n`);
}

/** A tcm_loop port (no enable switch, SAS protocol id 6), as on the test bed. */
export const loopPort = (wwn: string, relativePortId: number): FakePort => ({ fabric: 'loopback', wwn, tpgt: 1, lun: 0, relativePortId, protocolId: 6 });
