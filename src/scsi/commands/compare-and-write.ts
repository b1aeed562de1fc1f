/**
 * COMPARE AND WRITE (SBC-4 5.3): data-out holds N verify blocks followed
 * by N write blocks. The range is locked from before the read until the
 * write completes, so no other COMPARE AND WRITE or WRITE can slip in
 * between (VMware ATS and cluster lock managers rely on this).
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { sliceIov } from '../../iov.js';
import { readU64 } from '../be64.js';
import { type LogicalUnit, PROCEED } from '../logical-unit.js';
import { maxCompareAndWriteBlocks } from '../block-limits.js';
import { IoKind } from '../sense-map.js';
import { CompareMode, compareRange } from './compare-range.js';

export function compareAndWrite(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  const lba = readU64(cdb, 2);
  const blocks = cdb[13];
  // SBC-4: NUMBER OF LOGICAL BLOCKS 0 transfers and changes nothing; not an
  // error. A data-out sent with it does not fit the CDB: LIO's core refuses
  // such a write overflow with INVALID FIELD IN CDB (target_cmd_size_check),
  // and so do we (libiscsi's CompareAndWrite.Simple sends 256 blocks, which
  // the one-byte field wraps to 0, and expects exactly that).
  if (blocks === 0) return cmd.iovLength === 0 ? ScsiStatus.Good : lu.invalidCdbField(cmd, 13);
  // SBC-4 5.3: more than the Block Limits VPD's MAXIMUM COMPARE AND WRITE
  // LENGTH is INVALID FIELD IN CDB, checked before anything is read or written.
  if (blocks > maxCompareAndWriteBlocks(lu)) return lu.invalidCdbField(cmd, 13);
  const bad = lu.validateIo(cmd, lba, blocks, 13, 2 * blocks * lu.blockSize);
  if (bad !== PROCEED) return bad;
  if (lu.store.readOnly) return lu.writeProtected(cmd);
  return locked(lu, cmd, lba, blocks, (cdb[1] & 0x08) !== 0);
}

async function locked(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, fua: boolean): Promise<number> {
  const release = await lu.lock.acquire(lba, blocks);
  const bytes = blocks * lu.blockSize;
  let phase = IoKind.Read;
  try {
    // A store that compares and writes atomically itself (a cluster image
    // other clients write too): one call, our lock only orders local writes.
    const own = lu.store.compareAndWrite;
    if (own) {
      phase = IoKind.Write;
      const at = await own.call(lu.store, lba * lu.blockSize, sliceIov(cmd.iov, 0, 2 * bytes), lu.writeOptions(cmd, fua || !lu.wce));
      return at >= 0 ? lu.miscompare(cmd, at) : ScsiStatus.Good;
    }
    const at = await compareRange(lu, cmd, lba, blocks, CompareMode.Full);
    if (at === -2) return ScsiStatus.TaskAborted;
    if (at >= 0) return lu.miscompare(cmd, at);
    phase = IoKind.Write;
    await lu.store.write(lba * lu.blockSize, sliceIov(cmd.iov, bytes, bytes), lu.writeOptions(cmd, fua || !lu.wce));
    return ScsiStatus.Good;
  } catch (err) {
    return lu.storeFailed(cmd, err, phase);
  } finally {
    release();
  }
}
