/**
 * WRITE SAME (10) and (16) (SBC-4 5.45, 5.46). A zero block (or NDOB)
 * becomes one writeZeroes call, deallocating when UNMAP is set and the
 * LUN is thin; any other block is replicated over the range in bounded
 * chunks. NUMBER OF LOGICAL BLOCKS 0 ("to the end of the medium") is
 * refused with INVALID FIELD IN CDB, as VPD B0 announces with WSNZ=1:
 * an unbounded write is a footgun and Linux never sends it.
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { gather, iovIsZero } from '../../iov.js';
import { readU64 } from '../be64.js';
import { type LogicalUnit, PROCEED } from '../logical-unit.js';
import { maxWriteSameBlocks } from '../block-limits.js';
import { IoKind } from '../sense-map.js';

/** Largest buffer used to replicate a non-zero block. */
const REPLICATE_CHUNK_BYTES = 1 << 20;

export function writeSame10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  return writeSame(lu, cmd, cdb.readUInt32BE(2), cdb.readUInt16BE(7), 7, (cdb[1] & 0x08) !== 0, false);
}

export function writeSame16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  return writeSame(lu, cmd, readU64(cdb, 2), cdb.readUInt32BE(10), 10, (cdb[1] & 0x08) !== 0, (cdb[1] & 0x01) !== 0);
}

function writeSame(
  lu: LogicalUnit,
  cmd: ScsiCommand,
  lba: number,
  blocks: number,
  lengthByte: number,
  unmap: boolean,
  noDataOut: boolean,
): number | Promise<number> {
  if (blocks === 0 || blocks > maxWriteSameBlocks(lu)) return lu.invalidCdbField(cmd, lengthByte);
  if (lba + blocks > lu.capacityBlocks) return lu.lbaOutOfRange(cmd);
  // The data-out is one logical block (none with NDOB).
  const bad = lu.validateIo(cmd, lba, 0, lengthByte, noDataOut ? 0 : lu.blockSize);
  if (bad !== PROCEED) return bad;
  if (lu.store.readOnly) return lu.writeProtected(cmd);
  const zero = noDataOut || iovIsZero(cmd.iov, 0, lu.blockSize);
  return run(lu, cmd, lba, blocks, zero, unmap);
}

async function run(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, zero: boolean, unmap: boolean): Promise<number> {
  for (let busy = lu.lock.overlapping(lba, blocks); busy; busy = lu.lock.overlapping(lba, blocks)) await busy;
  const bs = lu.blockSize;
  try {
    if (zero) {
      await lu.store.writeZeroes(lba * bs, blocks * bs, lu.writeZeroesOptions(cmd, unmap && lu.store.thin));
      return ScsiStatus.Good;
    }
    const chunkBlocks = Math.max(1, Math.min(blocks, Math.floor(REPLICATE_CHUNK_BYTES / bs)));
    const chunk = Buffer.allocUnsafe(chunkBlocks * bs);
    gather(cmd.iov, 0, chunk, 0, bs);
    for (let filled = bs; filled < chunk.length; filled *= 2) chunk.copy(chunk, filled, 0, Math.min(filled, chunk.length - filled));
    const fua = lu.writeOptions(cmd, !lu.wce);
    for (let done = 0; done < blocks; done += chunkBlocks) {
      if (cmd.aborted) return ScsiStatus.TaskAborted;
      const n = Math.min(chunkBlocks, blocks - done);
      await lu.store.write((lba + done) * bs, [n === chunkBlocks ? chunk : chunk.subarray(0, n * bs)], fua);
    }
    return ScsiStatus.Good;
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Write);
  }
}
