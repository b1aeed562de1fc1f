/** MODE SENSE (6) and (10) (SPC-5 6.13, 6.14). */
import type { ScsiCommand } from '../command.js';
import { writeU64 } from '../be64.js';
import type { LogicalUnit } from '../logical-unit.js';
import { MODE_PAGES, PageControl, findModePage } from '../mode-pages.js';
import { Asc, SenseKey } from '../sense.js';

const ALL_PAGES = 0x3f;
const ALL_SUBPAGES = 0xff;

/** Device-specific parameter for direct access devices (SBC-4 6.5.1). */
function deviceSpecific(lu: LogicalUnit): number {
  // WP when read-only; DPOFUA tells Linux it may send FUA writes.
  return (lu.store.readOnly ? 0x80 : 0) | 0x10;
}

export function modeSense6(lu: LogicalUnit, cmd: ScsiCommand): number {
  return modeSense(lu, cmd, false);
}

export function modeSense10(lu: LogicalUnit, cmd: ScsiCommand): number {
  return modeSense(lu, cmd, true);
}

function modeSense(lu: LogicalUnit, cmd: ScsiCommand, ten: boolean): number {
  const cdb = cmd.cdb;
  const dbd = (cdb[1] & 0x08) !== 0;
  const llbaa = ten && (cdb[1] & 0x10) !== 0;
  const pc = (cdb[2] >> 6) as PageControl;
  const pageCode = cdb[2] & 0x3f;
  const subpage = cdb[3];
  const allocation = ten ? cdb.readUInt16BE(7) : cdb[4];

  if (pc === PageControl.Saved) return lu.check(cmd, SenseKey.IllegalRequest, Asc.SavingParametersNotSupported);
  // We have no subpages: subpage 0, or "all subpages" (which then is just page 0 of each).
  if (subpage !== 0 && subpage !== ALL_SUBPAGES) return lu.invalidCdbField(cmd, 3);
  const pages = pageCode === ALL_PAGES ? MODE_PAGES : [findModePage(pageCode)];
  if (pages[0] === undefined) return lu.invalidCdbField(cmd, 2, 5);

  const buf = lu.reply(256);
  const headerLength = ten ? 8 : 4;
  let at = headerLength;
  let descriptorLength = 0;
  if (!dbd) {
    descriptorLength = llbaa ? 16 : 8;
    const blocks = lu.capacityBlocks;
    if (llbaa) {
      writeU64(buf, at, blocks);
      buf.writeUInt32BE(lu.blockSize, at + 12);
    } else {
      // Too many blocks for 32 bits: FFFFFFFFh tells the initiator to use READ CAPACITY (16).
      buf.writeUInt32BE(blocks > 0xffffffff ? 0xffffffff : blocks, at);
      buf.writeUIntBE(lu.blockSize, at + 5, 3);
    }
    at += descriptorLength;
  }
  for (const page of pages) {
    page!.build(lu, pc, buf, at);
    at += page!.length;
  }
  // MODE DATA LENGTH excludes itself.
  if (ten) {
    buf.writeUInt16BE(at - 2, 0);
    buf[3] = deviceSpecific(lu);
    buf[4] = llbaa && !dbd ? 0x01 : 0; // LONGLBA
    buf.writeUInt16BE(descriptorLength, 6);
  } else {
    buf[0] = at - 1;
    buf[2] = deviceSpecific(lu);
    buf[3] = descriptorLength;
  }
  return lu.dataIn(cmd, buf, Math.min(at, allocation));
}
