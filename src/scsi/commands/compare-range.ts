/**
 * Read a block range back from the store in bounded chunks and compare it
 * with data-out bytes. Used by VERIFY, WRITE AND VERIFY and COMPARE AND
 * WRITE (all off the hot path, so the chunk buffer is allocated per call).
 */
import type { ScsiCommand } from '../command.js';
import { compareIov } from '../../iov.js';
import type { LogicalUnit } from '../logical-unit.js';

const CHUNK_BYTES = 1 << 20;

/**
 * How data-out maps onto the range: `Full` compares byte for byte (data-out
 * is as long as the range); `EachBlock` compares every block with the single
 * block of data-out (VERIFY BYTCHK=11b); `None` only reads (medium check).
 */
export const enum CompareMode {
  None = 0,
  Full = 1,
  EachBlock = 2,
}

/**
 * Returns -1 when everything matched, else the byte offset (from the start
 * of the range) of the first difference. Throws what the store throws;
 * returns -2 when the command was aborted meanwhile.
 */
export async function compareRange(lu: LogicalUnit, cmd: ScsiCommand, lba: number, blocks: number, mode: CompareMode): Promise<number> {
  const bs = lu.blockSize;
  const chunkBlocks = Math.max(1, Math.min(blocks, Math.floor(CHUNK_BYTES / bs)));
  const chunk = Buffer.allocUnsafe(chunkBlocks * bs);
  for (let done = 0; done < blocks; done += chunkBlocks) {
    if (cmd.aborted) return -2;
    const n = Math.min(chunkBlocks, blocks - done);
    const view = n === chunkBlocks ? chunk : chunk.subarray(0, n * bs);
    await lu.store.read((lba + done) * bs, [view], lu.callOptions(cmd));
    if (mode === CompareMode.Full) {
      const at = compareIov(cmd.iov, done * bs, view, 0, n * bs);
      if (at >= 0) return done * bs + at;
    } else if (mode === CompareMode.EachBlock) {
      for (let b = 0; b < n; b++) {
        const at = compareIov(cmd.iov, 0, view, b * bs, bs);
        if (at >= 0) return (done + b) * bs + at;
      }
    }
  }
  return -1;
}
