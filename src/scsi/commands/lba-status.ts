/**
 * GET LBA STATUS (SBC-4 5.6), thin LUNs only: provisioning state of the
 * blocks from STARTING LOGICAL BLOCK ADDRESS on, from store.blockStatus.
 */
import type { ScsiCommand } from '../command.js';
import { readU64, writeU64 } from '../be64.js';
import type { LogicalUnit } from '../logical-unit.js';
import { maxUnmapBlocks } from '../block-limits.js';
import type { Extent } from '../../backstore/types.js';
import { IoKind } from '../sense-map.js';

const HEADER = 8;
const DESCRIPTOR = 16;

/** Provisioning status values (SBC-4 table 47). */
function provisioningStatus(state: Extent['state']): number {
  // 'zero' is allocated storage that reads as zeros: mapped, not deallocated.
  return state === 'deallocated' ? 0x1 : 0x0;
}

export function getLbaStatus(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const lba = readU64(cmd.cdb, 2);
  const allocation = cmd.cdb.readUInt32BE(10);
  if (lba >= lu.capacityBlocks) return lu.lbaOutOfRange(cmd);
  // Ask about a bounded window: the answer may end early (SBC-4 allows it;
  // the initiator asks again from where the last descriptor ended).
  const blocks = Math.min(lu.capacityBlocks - lba, maxUnmapBlocks(lu));
  return answer(lu, cmd, lba, blocks, allocation);
}

async function answer(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, allocation: number): Promise<number> {
  const bs = lu.blockSize;
  let extents: Extent[];
  try {
    extents = await lu.store.blockStatus(lba * bs, blocks * bs, lu.callOptions(cmd));
  } catch (err) {
    return lu.storeFailed(cmd, err, IoKind.Read);
  }
  const room = Math.floor((lu.scratch.length - HEADER) / DESCRIPTOR);
  const buf = lu.reply(lu.scratch.length);
  let count = 0;
  let next = lba;
  const end = lba + blocks;
  for (const extent of extents) {
    if (count === room || next >= end) break;
    const first = Math.floor(extent.offset / bs);
    const last = Math.min(end, Math.ceil((extent.offset + extent.length) / bs));
    // Descriptors must be contiguous from the starting LBA; clip overlaps.
    const from = Math.max(first, next);
    if (from !== next || last <= from) {
      if (last <= next) continue;
      break; // a gap: stop rather than report blocks we were not told about
    }
    const at = HEADER + count * DESCRIPTOR;
    const length = Math.min(last - from, 0xffffffff);
    writeU64(buf, at, from);
    buf.writeUInt32BE(length, at + 8);
    buf[at + 12] = provisioningStatus(extent.state);
    count++;
    next = from + length;
  }
  const total = HEADER + count * DESCRIPTOR;
  buf.writeUInt32BE(total - 4, 0); // PARAMETER DATA LENGTH excludes itself
  return lu.dataIn(cmd, buf, Math.min(total, allocation));
}
