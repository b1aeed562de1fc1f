/**
 * The Block Limits VPD page (SBC-4 6.6.4) limits, in one place because each
 * is both advertised (./commands/vpd.ts) and enforced by its command: an
 * initiator that stays within what the page says never sees an error, and
 * one that does not gets INVALID FIELD IN CDB / PARAMETER LIST, with
 * nothing changed on the medium.
 */
import type { LogicalUnit } from './logical-unit.js';

/**
 * MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. Linux sends one descriptor per
 * UNMAP; Windows and ESXi send a handful. 256 descriptors are a 4 KiB
 * parameter list, and every one is validated before the first discard.
 */
export const MAX_UNMAP_BLOCK_DESCRIPTORS = 256;

/** MAXIMUM UNMAP LBA COUNT (sum over the descriptors of one UNMAP). */
export const MAX_UNMAP_LBA_COUNT = 1 << 22;

/** MAXIMUM WRITE SAME LENGTH. */
export const MAX_WRITE_SAME_BLOCKS = 1 << 22;

/**
 * The NUMBER OF LOGICAL BLOCKS field of COMPARE AND WRITE is one byte, so
 * 255 is the most the CDB can ask for.
 */
const CAW_FIELD_MAX = 255;

/**
 * MAXIMUM COMPARE AND WRITE LENGTH. The data-out of a COMPARE AND WRITE of
 * N blocks is 2N blocks (verify then write instance), and the LUN
 * advertises MAXIMUM TRANSFER LENGTH (hw_max_sectors) as the most it takes
 * in one command, so N is at most half of that. (The in-kernel LIO
 * backstores say 1, the one block VMware ATS uses; a larger N costs
 * nothing here: the range lock covers any length.)
 */
export function maxCompareAndWriteBlocks(lu: LogicalUnit): number {
  if (lu.maxTransferBlocks === 0) return CAW_FIELD_MAX;
  return Math.max(1, Math.min(CAW_FIELD_MAX, Math.floor(lu.maxTransferBlocks / 2)));
}
