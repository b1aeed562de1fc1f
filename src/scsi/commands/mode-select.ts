/**
 * MODE SELECT (6) and (10) (SPC-5 6.11, 6.12). The parameter list is
 * validated completely before anything is applied, so a rejected list
 * changes nothing. Only bits the changeable mask allows may differ from
 * the current values (SPC-5 6.11: otherwise INVALID FIELD IN PARAMETER LIST).
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { gather } from '../../iov.js';
import { type LogicalUnit, goodStatus, isThenable } from '../logical-unit.js';
import { PageControl, findModePage, type ModePage } from '../mode-pages.js';
import { Asc, SenseKey } from '../sense.js';
import { IoKind } from '../sense-map.js';

export function modeSelect6(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return modeSelect(lu, cmd, false);
}

export function modeSelect10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return modeSelect(lu, cmd, true);
}

function modeSelect(lu: LogicalUnit, cmd: ScsiCommand, ten: boolean): number | Promise<number> {
  const cdb = cmd.cdb;
  const lengthByte = ten ? 7 : 4;
  const listLength = ten ? cdb.readUInt16BE(7) : cdb[4];
  // PF=0 would mean vendor-specific page formats; we only speak SPC pages.
  if ((cdb[1] & 0x10) === 0) return lu.invalidCdbField(cmd, 1, 4);
  // SP=1 asks to save the pages; nothing is saveable.
  if ((cdb[1] & 0x01) !== 0) return lu.invalidCdbField(cmd, 1, 0);
  if (listLength === 0) return ScsiStatus.Good;
  if (listLength > cmd.iovLength) return lu.invalidCdbField(cmd, lengthByte);

  const list = Buffer.alloc(listLength);
  gather(cmd.iov, 0, list, 0, listLength);
  const headerLength = ten ? 8 : 4;
  if (listLength < headerLength) return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  const descriptorLength = ten ? list.readUInt16BE(6) : list[3];
  const longLba = ten && (list[4] & 0x01) !== 0;
  if (headerLength + descriptorLength > listLength) {
    return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  }
  const bad = checkBlockDescriptors(lu, list, headerLength, descriptorLength, longLba);
  if (bad >= 0) return lu.invalidParameter(cmd, bad);

  const accepted: { page: ModePage; at: number }[] = [];
  const current = Buffer.alloc(256);
  const changeable = Buffer.alloc(256);
  for (let at = headerLength + descriptorLength; at < listLength; ) {
    if (at + 2 > listLength) return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    if ((list[at] & 0x40) !== 0) return lu.invalidParameter(cmd, at, 6); // SPF: we have no subpages
    const page = findModePage(list[at] & 0x3f);
    if (!page) return lu.invalidParameter(cmd, at, 5);
    if (list[at + 1] + 2 !== page.length) return lu.invalidParameter(cmd, at + 1);
    if (at + page.length > listLength) return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    current.fill(0, 0, page.length);
    changeable.fill(0, 0, page.length);
    page.build(lu, PageControl.Current, current, 0);
    page.build(lu, PageControl.Changeable, changeable, 0);
    // Bytes 0-1 are the header (PS is reserved in MODE SELECT, code and length checked above).
    for (let i = 2; i < page.length; i++) {
      const wrong = (list[at + i] ^ current[i]) & ~changeable[i];
      if (wrong !== 0) return lu.invalidParameter(cmd, at + i, 31 - Math.clz32(wrong & 0xff));
    }
    accepted.push({ page, at });
    at += page.length;
  }

  const cacheWasOn = lu.wce;
  for (const { page, at } of accepted) page.apply(lu, list, at);
  // Turning the write cache off promises that data already acknowledged is
  // durable too, so empty the cache before reporting success.
  if (cacheWasOn && !lu.wce) {
    try {
      const r = lu.store.flush();
      if (isThenable(r)) return r.then(goodStatus, (err) => lu.storeFailed(cmd, err, IoKind.Write));
    } catch (err) {
      return lu.storeFailed(cmd, err, IoKind.Write);
    }
  }
  return ScsiStatus.Good;
}

/**
 * Block descriptors may be resent as MODE SENSE returned them; the block
 * length must stay ours (we cannot reformat). NUMBER OF BLOCKS is ignored:
 * changing capacity is a resize, not a mode parameter. Returns the offset
 * of a bad byte or -1.
 */
function checkBlockDescriptors(lu: LogicalUnit, list: Buffer, start: number, length: number, longLba: boolean): number {
  const size = longLba ? 16 : 8;
  if (length % size !== 0) return start - 1; // the BLOCK DESCRIPTOR LENGTH field's last byte
  for (let at = start; at < start + length; at += size) {
    const blockLength = longLba ? list.readUInt32BE(at + 12) : list.readUIntBE(at + 5, 3);
    if (blockLength !== lu.blockSize) return longLba ? at + 12 : at + 5;
  }
  return -1;
}
