/**
 * RECEIVE COPY RESULTS (LID1) (SPC-4 6.18, opcode 84h), service action 03h
 * OPERATING PARAMETERS: the limits of EXTENDED COPY (./extended-copy.ts).
 * Copies complete before EXTENDED COPY does, so there is no copy status or
 * held data to report: SNLID=1 (no list identifier needed) and the other
 * service actions are not offered.
 */
import type { ScsiCommand } from '../command.js';
import type { LogicalUnit } from '../logical-unit.js';
import { COPY_LIMITS } from './extended-copy.js';

/** 44 fixed bytes + the implemented descriptor type codes. */
const LENGTH = 44 + COPY_LIMITS.implementedDescriptors.length;

export function receiveCopyOperatingParameters(lu: LogicalUnit, cmd: ScsiCommand): number {
  // LIST IDENTIFIER: none is ever held, so only 0 makes sense.
  if (cmd.cdb[2] !== 0) return lu.invalidCdbField(cmd, 2);
  const allocation = cmd.cdb.readUInt32BE(10);
  const buf = lu.reply(LENGTH);
  buf.writeUInt32BE(LENGTH - 4, 0); // AVAILABLE DATA
  buf[4] = 0x01; // SNLID
  buf.writeUInt16BE(COPY_LIMITS.maxCscdDescriptors, 8);
  buf.writeUInt16BE(COPY_LIMITS.maxSegmentDescriptors, 10);
  buf.writeUInt32BE(COPY_LIMITS.maxDescriptorListLength, 12);
  buf.writeUInt32BE(COPY_LIMITS.maxSegmentBytes, 16);
  // 20..31: MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: none.
  buf.writeUInt16BE(1, 34); // TOTAL CONCURRENT COPIES
  buf[36] = 1; // MAXIMUM CONCURRENT COPIES
  buf[37] = 31 - Math.clz32(lu.blockSize); // DATA SEGMENT GRANULARITY (log2): one block
  buf[43] = COPY_LIMITS.implementedDescriptors.length;
  COPY_LIMITS.implementedDescriptors.forEach((code, i) => (buf[44 + i] = code));
  return lu.dataIn(cmd, buf, Math.min(LENGTH, allocation));
}
