/**
 * VERIFY (10)/(16) (SBC-4 5.33, 5.34) and WRITE AND VERIFY (10)/(16)
 * (SBC-4 5.43, 5.44).
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { readU64 } from '../be64.js';
import { type LogicalUnit, PROCEED } from '../logical-unit.js';
import { IoKind } from '../sense-map.js';
import { CompareMode, compareRange } from './compare-range.js';
import { writeBlocks } from './read-write.js';

export function verify10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return verify(lu, cmd, cmd.cdb.readUInt32BE(2), cmd.cdb.readUInt16BE(7), 7);
}

export function verify16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return verify(lu, cmd, readU64(cmd.cdb, 2), cmd.cdb.readUInt32BE(10), 10);
}

/**
 * BYTCHK (byte 1 bits 2-1): 00b read the medium only; 01b compare with a
 * data-out as long as the range; 11b compare every block with one data-out
 * block; 10b is reserved.
 */
function verify(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, lengthByte: number): number | Promise<number> {
  const bytchk = (cmd.cdb[1] >> 1) & 0x03;
  if (bytchk === 2) return lu.invalidCdbField(cmd, 1, 2);
  const mode = bytchk === 0 ? CompareMode.None : bytchk === 1 ? CompareMode.Full : CompareMode.EachBlock;
  const dataOut = mode === CompareMode.None || blocks === 0 ? 0 : mode === CompareMode.Full ? blocks * lu.blockSize : lu.blockSize;
  const bad = lu.validateIo(cmd, lba, blocks, lengthByte, dataOut);
  if (bad !== PROCEED) return bad;
  if (blocks === 0) return ScsiStatus.Good; // VERIFICATION LENGTH 0: nothing to verify
  return finishCompare(lu, cmd, lba, blocks, mode);
}

async function finishCompare(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, mode: CompareMode): Promise<number> {
  try {
    const at = await compareRange(lu, cmd, lba, blocks, mode);
    if (at === -2) return ScsiStatus.TaskAborted;
    // SBC-4: INFORMATION = offset of the first miscompared byte.
    if (at >= 0) return lu.miscompare(cmd, at);
    return ScsiStatus.Good;
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Read);
  }
}

export function writeAndVerify10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return writeAndVerify(lu, cmd, cmd.cdb.readUInt32BE(2), cmd.cdb.readUInt16BE(7), 7);
}

export function writeAndVerify16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return writeAndVerify(lu, cmd, readU64(cmd.cdb, 2), cmd.cdb.readUInt32BE(10), 10);
}

/**
 * The write is forced to FUA (verification must see the medium, not a
 * cache), then read back. With BYTCHK=1 the read-back is compared with the
 * data-out; with BYTCHK=0 reading it without a medium error is the check.
 */
async function writeAndVerify(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, lengthByte: number): Promise<number> {
  const written = await writeBlocks(lu, cmd, lba, blocks, lengthByte, true, false);
  if (written !== ScsiStatus.Good || blocks === 0) return written;
  const mode = (cmd.cdb[1] & 0x02) !== 0 ? CompareMode.Full : CompareMode.None;
  return finishCompare(lu, cmd, lba, blocks, mode);
}
