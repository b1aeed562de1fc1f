/**
 * UNMAP (SBC-4 5.32). Only offered on thin LUNs (the table hides it
 * otherwise, so a thick LUN answers INVALID COMMAND OPERATION CODE, like a
 * disk without the feature). Every descriptor is validated before the first
 * discard so a bad list changes nothing.
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { gather } from '../../iov.js';
import { readU64 } from '../be64.js';
import type { LogicalUnit } from '../logical-unit.js';
import { MAX_UNMAP_BLOCK_DESCRIPTORS, maxUnmapBlocks } from '../block-limits.js';
import { Asc, SenseKey } from '../sense.js';
import { IoKind } from '../sense-map.js';

const HEADER = 8;
const DESCRIPTOR = 16;

export function unmap(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const listLength = cmd.cdb.readUInt16BE(7);
  if (listLength === 0) return ScsiStatus.Good; // SBC-4: not an error, nothing to do
  if (listLength > cmd.iovLength) return lu.invalidCdbField(cmd, 7);
  if (listLength < HEADER) return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  if (lu.store.readOnly) return lu.writeProtected(cmd);

  const list = Buffer.alloc(listLength);
  gather(cmd.iov, 0, list, 0, listLength);
  // Descriptors beyond the parameter list are not there; a partial one is ignored (SBC-4 5.32.2).
  const declared = list.readUInt16BE(2);
  const count = Math.floor(Math.min(declared, listLength - HEADER) / DESCRIPTOR);
  if (count > MAX_UNMAP_BLOCK_DESCRIPTORS) return lu.invalidParameter(cmd, 2);

  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = HEADER + i * DESCRIPTOR;
    const lba = readU64(list, at);
    const blocks = list.readUInt32BE(at + 8);
    if (lba + blocks > lu.capacityBlocks) return lu.lbaOutOfRange(cmd);
    total += blocks;
  }
  if (total > maxUnmapBlocks(lu)) return lu.invalidParameter(cmd, HEADER + 8);
  return discardAll(lu, cmd, list, count);
}

async function discardAll(lu: LogicalUnit, cmd: ScsiCommand, list: Buffer, count: number): Promise<number> {
  const bs = lu.blockSize;
  try {
    for (let i = 0; i < count; i++) {
      const at = HEADER + i * DESCRIPTOR;
      const blocks = list.readUInt32BE(at + 8);
      if (blocks !== 0) await lu.store.discard(readU64(list, at) * bs, blocks * bs, lu.callOptions(cmd));
    }
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Write);
  }
  return ScsiStatus.Good;
}
