/** INQUIRY (SPC-5 6.7): standard data and the VPD page dispatch. */
import type { ScsiCommand } from '../command.js';
import type { LogicalUnit } from '../logical-unit.js';
import { putAscii } from '../ascii.js';
import { DEVICE_ID, buildVpdPage } from './vpd.js';
import { type TargetPortGroups, tpgsOf } from '../alua.js';

/** Standard data length: 58 fixed bytes + 4 version descriptors (8 bytes). */
const STANDARD_LENGTH = 66;

/**
 * VERSION 06h (SPC-4) and version descriptors SAM-5 (00A0h), SPC-4 (0460h),
 * SBC-3 (04C0h), no particular revision claimed: exactly what the in-kernel
 * LIO backstores report (target_core_spc.c; they add the transport's
 * descriptor, which a TCMU runner is not told), so a LUN looks the same to
 * initiators whether the kernel or this runner emulates it. Not SPC-5 (07h):
 * libiscsi's conformance suite (iscsi-test-cu, Debian 12 libiscsi-bin 1.19)
 * fails any VERSION other than 04h-06h, and nothing an initiator enables
 * depends on 07h: Linux gates READ CAPACITY(16) and VPD pages on SPC-3 (05h)
 * or later (scsi_level = VERSION + 1). SBC-3 is the command set of the
 * SPC-4 generation; the SBC-4 additions used here (NDOB, WSNZ) are
 * advertised where initiators look for them (CDB usage data, VPD B0).
 */
const VERSION = 0x06;
const VERSION_DESCRIPTORS = [0x00a0, 0x0460, 0x04c0];

export function inquiry(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  const evpd = (cdb[1] & 0x01) !== 0;
  // SPC-5: a page code with EVPD=0 is an error.
  if (!evpd && cdb[2] !== 0) return lu.invalidCdbField(cmd, 2);
  const source = lu.portGroups;
  // Only standard data (TPGS) and the device identification page (target port designators) show the groups.
  if (source === undefined || (evpd && cdb[2] !== DEVICE_ID)) return answer(lu, cmd, undefined);
  // The groups are read per INQUIRY: LIO raises INQUIRY DATA HAS CHANGED
  // when an admin moves the LUN to another group, and the initiator's next
  // INQUIRY must see the move. A source that fails reports no ALUA.
  return source().then(
    (groups) => answer(lu, cmd, groups),
    (err: unknown) => {
      lu.log?.warn({ err }, 'cannot read the ALUA target port groups; INQUIRY reports none');
      return answer(lu, cmd, undefined);
    },
  );
}

function answer(lu: LogicalUnit, cmd: ScsiCommand, groups: TargetPortGroups | undefined): number {
  const cdb = cmd.cdb;
  const allocation = cdb.readUInt16BE(3);
  if ((cdb[1] & 0x01) === 0) {
    const buf = lu.reply(STANDARD_LENGTH);
    buf[0] = 0x00; // peripheral qualifier 0 (connected), type 0 direct access block device
    buf[1] = 0x00; // not removable
    buf[2] = VERSION;
    buf[3] = 0x12; // HISUP=1, RESPONSE DATA FORMAT=2
    buf[4] = STANDARD_LENGTH - 5; // ADDITIONAL LENGTH counts the bytes after byte 4
    // 3PC: EXTENDED COPY; TPGS (bits 5-4): implicit ALUA when the LUN is in a port group; no protection information
    buf[5] = 0x08 | (tpgsOf(groups) << 4);
    buf[6] = 0x00;
    buf[7] = 0x02; // CMDQUE: full task management model
    putAscii(buf, 8, 8, lu.identity.vendor);
    putAscii(buf, 16, 16, lu.identity.product);
    putAscii(buf, 32, 4, lu.identity.revision);
    for (let i = 0; i < VERSION_DESCRIPTORS.length; i++) buf.writeUInt16BE(VERSION_DESCRIPTORS[i], 58 + 2 * i);
    return lu.dataIn(cmd, buf, Math.min(STANDARD_LENGTH, allocation));
  }
  const length = buildVpdPage(lu, cdb[2], lu.reply(lu.scratch.length), groups);
  if (length < 0) return lu.invalidCdbField(cmd, 2);
  return lu.dataIn(cmd, lu.scratch, Math.min(length, allocation));
}
