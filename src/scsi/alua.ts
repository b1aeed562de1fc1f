/**
 * Asymmetric logical unit access (SPC-5 5.16) as the SCSI emulation sees it:
 * the target port groups the LUN is exported through, their access states,
 * and which port a command is taken to arrive on.
 *
 * LIO keeps the groups (configfs `alua/<group>/` of the device) and enforces
 * the access states itself, before a command reaches the runner; but TCMU
 * passes INQUIRY and REPORT TARGET PORT GROUPS to the runner, and does not
 * say which port a command came through. So the runner reports the groups
 * it is given, with the one local port the daemon picked (see
 * src/lio/alua-configfs.ts). A LUN without user-made groups reports no ALUA
 * (TPGS 0), which is what LIO's own default group would otherwise muddle.
 */

/** Asymmetric access states (SPC-5 table 47); the values configfs `alua_access_state` holds. */
export const AluaState = {
  ActiveOptimized: 0x0,
  ActiveNonOptimized: 0x1,
  Standby: 0x2,
  Unavailable: 0x3,
  Offline: 0xe,
  Transitioning: 0xf,
} as const;

/** The supported-state bits of a REPORT TARGET PORT GROUPS descriptor (byte 1). */
export const AluaSupports = {
  Transitioning: 0x80,
  Offline: 0x40,
  LbaDependent: 0x10,
  Unavailable: 0x08,
  Standby: 0x04,
  ActiveNonOptimized: 0x02,
  ActiveOptimized: 0x01,
} as const;

export interface TargetPortGroup {
  /** TARGET PORT GROUP identifier (16 bits). */
  id: number;
  /** One of AluaState. */
  state: number;
  /** AluaSupports bits. */
  supportedStates: number;
  /** STATUS CODE: 0 none, 1 altered by SET TARGET PORT GROUPS, 2 altered by implicit behaviour. */
  status: number;
  /** PREF: the group is a preferred path. */
  preferred: boolean;
  /** Relative target port identifiers of the group's ports. */
  relativePortIds: number[];
}

export interface TargetPortGroups {
  groups: TargetPortGroup[];
  /**
   * The port commands are taken to arrive on (VPD 0x83 target port
   * designators). Absent: no enabled port in any group, so no ALUA.
   */
  local?: {
    groupId: number;
    relativePortId: number;
    /** SCSI transport protocol identifier (SPC-5 table 444: 6 SAS, 5 iSCSI, 0 FC). */
    protocolId: number;
  };
  /** Seconds an implicit transition may take (extended RTPG header). */
  implicitTransitionSecs: number;
}

/** Reads the LUN's current groups; called per INQUIRY / REPORT TARGET PORT GROUPS (rare commands). */
export type TargetPortGroupSource = () => Promise<TargetPortGroups>;

/** The TPGS field of standard INQUIRY: 01b (implicit ALUA) when a local port is known. */
export function tpgsOf(groups: TargetPortGroups | undefined): number {
  return groups?.local !== undefined ? 0x1 : 0x0;
}
