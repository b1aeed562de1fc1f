/**
 * REPORT TARGET PORT GROUPS (SPC-5 6.38). TCMU passes it to the runner
 * (only REPORT LUNS and the reservations stay in the kernel), while LIO
 * itself keeps the groups and enforces their states, so the answer is the
 * configuration the daemon reads from configfs (see ../alua.ts).
 */
import type { ScsiCommand } from '../command.js';
import type { LogicalUnit } from '../logical-unit.js';
import type { TargetPortGroups } from '../alua.js';

const LENGTH_ONLY_HEADER = 0x0;
const EXTENDED_HEADER = 0x1;

export function reportTargetPortGroups(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const format = cmd.cdb[1] >> 5;
  if (format !== LENGTH_ONLY_HEADER && format !== EXTENDED_HEADER) return lu.invalidCdbField(cmd, 1, 7);
  return lu.portGroups!().then(
    (groups) => answer(lu, cmd, groups, format === EXTENDED_HEADER),
    (err: unknown) => {
      lu.log?.warn({ err }, 'cannot read the ALUA target port groups for REPORT TARGET PORT GROUPS');
      return answer(lu, cmd, undefined, false);
    },
  );
}

/** Bytes of one group descriptor with `ports` relative port ids. */
const descriptorBytes = (ports: number) => 8 + 4 * ports;

function answer(lu: LogicalUnit, cmd: ScsiCommand, groups: TargetPortGroups | undefined, extended: boolean): number {
  // TPGS 00b in INQUIRY (no port of this LUN in a group): the command is
  // not supported, answered as an unsupported service action.
  if (groups?.local === undefined) return lu.invalidCdbField(cmd, 1, 4);
  const header = extended ? 8 : 4;
  const total = groups.groups.reduce((n, g) => n + descriptorBytes(g.relativePortIds.length), header);
  if (total > lu.scratch.length) {
    // The configfs reader caps groups and ports well below this; a bigger list is a bug there.
    throw new RangeError(`REPORT TARGET PORT GROUPS: ${total} bytes of groups exceed the reply buffer`);
  }
  const buf = lu.reply(total);
  // RETURN DATA LENGTH: the bytes after this field, the extended header's
  // included. (LIO's own emulation leaves those 4 out; Linux's ALUA handler
  // and sg_rtpg both take the field as "bytes that follow", and would then
  // drop the last port of the list.)
  buf.writeUInt32BE(total - 4, 0);
  if (extended) {
    buf[4] = 0x10; // FORMAT TYPE 001b
    buf[5] = Math.min(groups.implicitTransitionSecs, 0xff);
  }
  let at = header;
  for (const group of groups.groups) {
    buf[at] = (group.preferred ? 0x80 : 0) | (group.state & 0x0f);
    buf[at + 1] = group.supportedStates & 0xdf;
    buf.writeUInt16BE(group.id & 0xffff, at + 2);
    buf[at + 5] = group.status;
    buf[at + 7] = group.relativePortIds.length;
    group.relativePortIds.forEach((id, i) => buf.writeUInt16BE(id & 0xffff, at + 8 + 4 * i + 2));
    at += descriptorBytes(group.relativePortIds.length);
  }
  return lu.dataIn(cmd, buf, Math.min(total, cmd.cdb.readUInt32BE(6)));
}
