/**
 * READ and WRITE (6/10/12/16), SBC-4 5.8-5.11, 5.39-5.42: the hot path.
 * Decoding is straight-line field reads; the iov goes to the store as is
 * (or as trimmed views when the initiator's buffer is larger than the
 * transfer); a synchronous store result completes without any promise.
 * DPO is a cache hint we may ignore; FUA is honoured on writes.
 */
import { STATUS_LEFT_TO_STORE, STORE_COMPLETES_IN_RING, ScsiStatus, type ScsiCommand } from '../command.js';
import { sliceIov } from '../../iov.js';
import { readU64 } from '../be64.js';
import { type LogicalUnit, PROCEED, goodStatus, isThenable } from '../logical-unit.js';
import { IoKind } from '../sense-map.js';

const FUA = 0x08;

export function read6(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  const lba = ((cdb[1] & 0x1f) << 16) | (cdb[2] << 8) | cdb[3];
  // SBC-4 5.8: in the 6-byte CDB a TRANSFER LENGTH of 0 means 256 blocks.
  return readBlocks(lu, cmd, lba, cdb[4] === 0 ? 256 : cdb[4], 4);
}

export function read10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return readBlocks(lu, cmd, cmd.cdb.readUInt32BE(2), cmd.cdb.readUInt16BE(7), 7);
}

export function read12(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return readBlocks(lu, cmd, cmd.cdb.readUInt32BE(2), cmd.cdb.readUInt32BE(6), 6);
}

export function read16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  return readBlocks(lu, cmd, readU64(cmd.cdb, 2), cmd.cdb.readUInt32BE(10), 10);
}

export function write6(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  const lba = ((cdb[1] & 0x1f) << 16) | (cdb[2] << 8) | cdb[3];
  // WRITE (6) has no FUA bit.
  return writeBlocks(lu, cmd, lba, cdb[4] === 0 ? 256 : cdb[4], 4, false);
}

export function write10(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  return writeBlocks(lu, cmd, cdb.readUInt32BE(2), cdb.readUInt16BE(7), 7, (cdb[1] & FUA) !== 0);
}

export function write12(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  return writeBlocks(lu, cmd, cdb.readUInt32BE(2), cdb.readUInt32BE(6), 6, (cdb[1] & FUA) !== 0);
}

export function write16(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const cdb = cmd.cdb;
  return writeBlocks(lu, cmd, readU64(cdb, 2), cdb.readUInt32BE(10), 10, (cdb[1] & FUA) !== 0);
}

function readBlocks(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, lengthByte: number): number | Promise<number> {
  const bytes = blocks * lu.blockSize;
  const bad = lu.validateIo(cmd, lba, blocks, lengthByte, bytes);
  if (bad !== PROCEED) return bad;
  if (blocks === 0) return ScsiStatus.Good; // SBC-4: zero blocks is no transfer, not an error
  let r: void | Promise<void>;
  try {
    r = lu.store.read(lba * lu.blockSize, sliceIov(cmd.iov, 0, bytes, cmd.iovLength), lu.readOptions(cmd, bytes));
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Read);
  }
  // Only a GOOD completion carries data-in (CHECK CONDITION sends none).
  cmd.dataInLength = bytes;
  if (r === STORE_COMPLETES_IN_RING) return STATUS_LEFT_TO_STORE;
  if (isThenable(r)) return r.then(goodStatus, (err) => lu.storeFailed(cmd, err, IoKind.Read));
  return ScsiStatus.Good;
}

/**
 * Shared by WRITE, WRITE AND VERIFY: checks, CAW lock wait, FUA policy.
 * `whole`: nothing follows the write (WRITE), so the store may complete the
 * command itself (CallOptions.inRing); WRITE AND VERIFY reads back after it.
 */
export function writeBlocks(
  lu: LogicalUnit,
  cmd: ScsiCommand,
  lba: number,
  blocks: number,
  lengthByte: number,
  fua: boolean,
  whole = true,
): number | Promise<number> {
  const bytes = blocks * lu.blockSize;
  const bad = lu.validateIo(cmd, lba, blocks, lengthByte, bytes);
  if (bad !== PROCEED) return bad;
  if (lu.store.readOnly) return lu.writeProtected(cmd);
  if (blocks === 0) return ScsiStatus.Good;
  if (lu.lock.held !== 0) {
    const busy = lu.lock.overlapping(lba, blocks);
    if (busy) return busy.then(() => writeBlocks(lu, cmd, lba, blocks, lengthByte, fua, whole));
  }
  let r: void | Promise<void>;
  try {
    // WCE=0 means the initiator was promised no volatile cache: every write is FUA.
    const opts = whole ? lu.commandWriteOptions(cmd, bytes, fua || !lu.wce) : lu.writeOptions(cmd, fua || !lu.wce);
    r = lu.store.write(lba * lu.blockSize, sliceIov(cmd.iov, 0, bytes, cmd.iovLength), opts);
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Write);
  }
  if (r === STORE_COMPLETES_IN_RING) return STATUS_LEFT_TO_STORE;
  if (isThenable(r)) return r.then(goodStatus, (err) => lu.storeFailed(cmd, err, IoKind.Write));
  return ScsiStatus.Good;
}
