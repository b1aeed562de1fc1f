/** READ CAPACITY (10) and (16) (SBC-4 5.20, 5.21). */
import type { ScsiCommand } from '../command.js';
import { writeU64 } from '../be64.js';
import type { LogicalUnit } from '../logical-unit.js';

export function readCapacity10(lu: LogicalUnit, cmd: ScsiCommand): number {
  const buf = lu.reply(8);
  const last = Math.max(0, lu.capacityBlocks - 1);
  // FFFFFFFFh: "too big for this command, use READ CAPACITY (16)".
  buf.writeUInt32BE(last > 0xffffffff ? 0xffffffff : last, 0);
  buf.writeUInt32BE(lu.blockSize, 4);
  return lu.dataIn(cmd, buf, 8);
}

export function readCapacity16(lu: LogicalUnit, cmd: ScsiCommand): number {
  const allocation = cmd.cdb.readUInt32BE(10);
  const buf = lu.reply(32);
  writeU64(buf, 0, Math.max(0, lu.capacityBlocks - 1));
  buf.writeUInt32BE(lu.blockSize, 8);
  // Byte 12: no protection information. Byte 13: one logical block per
  // physical block (we know nothing truer about the store).
  if (lu.store.thin) {
    // LBPME: thin provisioned, UNMAP works. LBPRZ: discarded blocks read as
    // zeros, which the store contract guarantees for a thin discard unless the
    // store says otherwise (an encryption layer: zeros below decrypt to noise).
    buf[14] = 0x80 | (lu.store.discardZeroes ? 0x40 : 0);
  }
  return lu.dataIn(cmd, buf, Math.min(32, allocation));
}
