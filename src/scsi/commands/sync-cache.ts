/**
 * SYNCHRONIZE CACHE (10) and (16) (SBC-4 5.24, 5.25). The store flushes as
 * a whole; the range is only validated. IMMED is accepted but we still
 * answer after the flush: the earlier answer IMMED allows is optional.
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { readU64 } from '../be64.js';
import { type LogicalUnit, goodStatus, isThenable } from '../logical-unit.js';
import { IoKind } from '../sense-map.js';

export function synchronizeCache10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return synchronize(lu, cmd, cmd.cdb.readUInt32BE(2), cmd.cdb.readUInt16BE(7));
}

export function synchronizeCache16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return synchronize(lu, cmd, readU64(cmd.cdb, 2), cmd.cdb.readUInt32BE(10));
}

function synchronize(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number): number | Promise<number> {
  // NUMBER OF LOGICAL BLOCKS 0 means "to the end of the medium".
  if (lba + blocks > lu.capacityBlocks || lba > lu.capacityBlocks) return lu.lbaOutOfRange(cmd);
  let r: void | Promise<void>;
  try {
    r = lu.store.flush(lu.callOptions(cmd));
  } catch (err) {
    // A failed flush means acknowledged writes may be lost: a write error.
    return lu.storeFailed(cmd, err, IoKind.Write);
  }
  if (isThenable(r)) return r.then(goodStatus, (err) => lu.storeFailed(cmd, err, IoKind.Write));
  return ScsiStatus.Good;
}
