/**
 * A TCMU device's ALUA target port groups as LIO keeps them in configfs:
 *   core/user_N/<dev>/alua/<group>/{tg_pt_gp_id,alua_access_state,members,...}
 * and, per member port, <fabric>/<wwn>/tpgt_T/lun/lun_L/statistics/... for
 * its relative port id and transport protocol.
 *
 * Only groups an admin made count: LIO's default_tg_pt_gp holds every LUN
 * of every device, whatever the admin intends, so reporting it would claim
 * ALUA for all LUNs. TCMU does not tell the runner which port a command
 * came through, so the "local" port is the first enabled member port (a
 * gateway's own target portal group; the remote gateways' portal groups in
 * a ceph-iscsi style layout are there but disabled). Every value is parsed
 * strictly and the lists are capped: configfs is the kernel's, but what is
 * in it is whatever the admin's tools wrote.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AluaState, AluaSupports, type TargetPortGroup, type TargetPortGroups } from '../scsi/alua.js';

export const CONFIGFS_TARGET_ROOT = '/sys/kernel/config/target';

/** Far above any real layout (a gateway per group, a few portals each); keeps REPORT TARGET PORT GROUPS within one reply buffer. */
export const MAX_GROUPS = 16;
export const MAX_PORTS_PER_GROUP = 32;
const DEFAULT_GROUP = 'default_tg_pt_gp';

export type AluaAccessType = 'none' | 'implicit' | 'explicit' | 'implicit and explicit';

export interface AluaMemberPort {
  fabric: string;
  wwn: string;
  tpgt: number;
  lun: number;
  relativePortId: number;
  protocolId: number;
  /** The portal group is enabled (fabrics without an `enable` switch, like tcm_loop, always are). */
  enabled: boolean;
}

export interface AluaGroupConfig extends TargetPortGroup {
  /** The configfs directory name. */
  name: string;
  accessType: AluaAccessType;
  implicitTransitionSecs: number;
  ports: AluaMemberPort[];
}

export interface AluaConfig extends TargetPortGroups {
  groups: AluaGroupConfig[];
  /** The group holding the local port. */
  localGroup?: AluaGroupConfig;
  /** Enabled ports in more than one group: the local one is a guess (the first). */
  ambiguous: boolean;
  /** Groups or ports beyond the caps, left out. */
  truncated: boolean;
}

const ACCESS_TYPES: Record<string, AluaAccessType> = {
  None: 'none',
  Implicit: 'implicit',
  Explicit: 'explicit',
  'Implicit and Explicit': 'implicit and explicit',
};
const STATUS_CODES: Record<string, number> = { None: 0, 'Altered by Explicit STPG': 1, 'Altered by Implicit ALUA': 2 };
const KNOWN_STATES = new Set<number>(Object.values(AluaState));
const SUPPORT_FILES: [string, number][] = [
  ['alua_support_transitioning', AluaSupports.Transitioning],
  ['alua_support_offline', AluaSupports.Offline],
  ['alua_support_lba_dependent', AluaSupports.LbaDependent],
  ['alua_support_unavailable', AluaSupports.Unavailable],
  ['alua_support_standby', AluaSupports.Standby],
  ['alua_support_active_nonoptimized', AluaSupports.ActiveNonOptimized],
  ['alua_support_active_optimized', AluaSupports.ActiveOptimized],
];
/** "loopback/naa.5001405aa0000001/tpgt_1/lun_0", "iscsi/iqn.2003-01.org.x:y/tpgt_1/lun_3" */
const MEMBER = /^([a-z0-9_]{1,32})\/([A-Za-z0-9][A-Za-z0-9._:,-]{0,222})\/tpgt_(\d{1,5})\/lun_(\d{1,5})$/;
/** configfs group names: what mkdir allowed, minus anything that could leave the directory. */
const GROUP_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

async function attr(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

function uint(text: string, max: number, what: string): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) > max) throw new Error(`${what}: expected an integer 0..${max}, read "${text.slice(0, 40)}"`);
  return Number(text);
}

async function readPort(targetRoot: string, line: string): Promise<AluaMemberPort | undefined> {
  const m = MEMBER.exec(line);
  if (!m) return undefined;
  const [, fabric, wwn, tpgtText, lunText] = m;
  const tpgt = uint(tpgtText!, 0xffff, 'tpgt');
  const lun = uint(lunText!, 0xffff, 'lun');
  const tpg = join(targetRoot, fabric!, wwn!, `tpgt_${tpgt}`);
  const stats = join(tpg, 'lun', `lun_${lun}`, 'statistics');
  const [indx, proto, enable] = await Promise.all([
    attr(join(stats, 'scsi_port', 'indx')),
    attr(join(stats, 'scsi_transport', 'proto_id')),
    attr(join(tpg, 'enable')).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '1'; // no enable switch (tcm_loop): always on
      throw err;
    }),
  ]);
  return {
    fabric: fabric!,
    wwn: wwn!,
    tpgt,
    lun,
    relativePortId: uint(indx, 0xffff, `${line}: scsi_port/indx`),
    protocolId: uint(proto, 0xf, `${line}: scsi_transport/proto_id`),
    enabled: enable === '1',
  };
}

async function readGroup(dir: string, name: string, targetRoot: string, truncate: () => void): Promise<AluaGroupConfig> {
  const at = (file: string) => attr(join(dir, file));
  const [id, state, status, type, pref, transSecs, members, ...support] = await Promise.all([
    at('tg_pt_gp_id'),
    at('alua_access_state'),
    at('alua_access_status'),
    at('alua_access_type'),
    at('preferred'),
    at('implicit_trans_secs'),
    at('members'),
    ...SUPPORT_FILES.map(([file]) => at(file)),
  ]);
  const stateValue = uint(state!, 0xf, `${name}: alua_access_state`);
  if (!KNOWN_STATES.has(stateValue)) throw new Error(`${name}: alua_access_state ${stateValue} is not an ALUA state`);
  const accessType = ACCESS_TYPES[type!];
  if (accessType === undefined) throw new Error(`${name}: unknown alua_access_type "${type!.slice(0, 40)}"`);
  const lines = members!.split('\n').filter((l) => l !== '');
  if (lines.length > MAX_PORTS_PER_GROUP) truncate();
  const ports = (await Promise.all(lines.slice(0, MAX_PORTS_PER_GROUP).map((line) => readPort(targetRoot, line)))).filter(
    (p): p is AluaMemberPort => p !== undefined,
  );
  return {
    name,
    id: uint(id!, 0xffff, `${name}: tg_pt_gp_id`),
    state: stateValue,
    status: STATUS_CODES[status!] ?? 0,
    accessType,
    preferred: pref === '1',
    implicitTransitionSecs: uint(transSecs!, 0xffff, `${name}: implicit_trans_secs`),
    supportedStates: SUPPORT_FILES.reduce((bits, [, bit], i) => (support[i] === '1' ? bits | bit : bits), 0),
    ports,
    relativePortIds: ports.map((p) => p.relativePortId),
  };
}

/**
 * The user-made ALUA groups of the device at `deviceDir`
 * (…/core/user_N/<dev>) and the local port. A group that vanishes or reads
 * malformed while this runs is left out (an admin editing the layout).
 */
export async function readAluaConfig(deviceDir: string, targetRoot = CONFIGFS_TARGET_ROOT): Promise<AluaConfig> {
  const aluaDir = join(deviceDir, 'alua');
  let truncated = false;
  let entries: string[];
  try {
    entries = await readdir(aluaDir);
  } catch (err) {
    // No alua directory: a kernel or a test bed without ALUA support.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { groups: [], implicitTransitionSecs: 0, ambiguous: false, truncated: false };
    throw err;
  }
  const names = entries.filter((n) => n !== DEFAULT_GROUP && GROUP_NAME.test(n)).sort();
  if (names.length > MAX_GROUPS) truncated = true;
  const read = await Promise.allSettled(
    names.slice(0, MAX_GROUPS).map((name) => readGroup(join(aluaDir, name), name, targetRoot, () => (truncated = true))),
  );
  const groups = read.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<AluaGroupConfig>).value);
  const withEnabledPort = groups.filter((g) => g.ports.some((p) => p.enabled));
  const localGroup = withEnabledPort[0];
  const localPort = localGroup?.ports.find((p) => p.enabled);
  return {
    groups,
    localGroup,
    local: localGroup && localPort ? { groupId: localGroup.id, relativePortId: localPort.relativePortId, protocolId: localPort.protocolId } : undefined,
    implicitTransitionSecs: localGroup?.implicitTransitionSecs ?? 0,
    ambiguous: withEnabledPort.length > 1,
    truncated,
  };
}

/**
 * Set a group's access state (an implicit transition). LIO refuses it with
 * EINVAL unless the group's access type includes implicit; it then raises
 * ASYMMETRIC ACCESS STATE CHANGED on every I_T nexus of the group's LUNs.
 */
export async function setAluaState(deviceDir: string, group: string, state: number): Promise<void> {
  if (!GROUP_NAME.test(group)) throw new Error(`invalid ALUA group name "${group}"`);
  await writeFile(join(deviceDir, 'alua', group, 'alua_access_state'), String(state));
}
