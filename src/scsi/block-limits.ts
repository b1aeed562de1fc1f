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

/**
 * The limits below are budgets in bytes, turned into logical blocks per LUN:
 * a LUN of 4 KiB blocks must not be allowed eight times the work of one of
 * 512-byte blocks in a single command. Each command of the advertised
 * maximum has to finish well inside the kernel's command timeout (TCMU
 * cmd_time_out and the Linux sd timeout: 30 s) on a slow disk, as an
 * initiator sends it in one piece. Measured on the development host with
 * scripts/bench-host/block-limits.mts (512-byte blocks, tmp files on ext4,
 * docs/ADMIN.md "Block limits" has the table):
 *   2 GiB  WRITE SAME of a non-zero block: file 7.7 s, qcow2 3.0 s (replicated
 *          writes, the one case whose cost grows with the data)
 *   2 GiB  UNMAP / WRITE SAME UNMAP: file 0.5 s, qcow2 0.1 s
 * and with the limits below (two runs): 256 MiB non-zero WRITE SAME file
 * 0.38-0.90 s, qcow2 0.28-0.31 s; UNMAP of 512 MiB of allocated data file
 * 0.12 s, qcow2 0.05 s; WRITE SAME UNMAP 0.06 s / 0.02 s. The TCG test VM
 * runs ~25x slower, still inside the timeout.
 * Linux splits larger discards and zeroings itself (blk-lib by
 * discard_max_bytes / write_zeroes_max_bytes, taken from this page), so a
 * smaller limit only means more commands, each far from the timeout.
 */
/**
 * 512 MiB: 2^20 blocks of 512 bytes, the most libiscsi's conformance suite
 * (Inquiry.BlockLimits) accepts as a sane explicit MAXIMUM UNMAP LBA COUNT.
 */
const MAX_UNMAP_BYTES = 512 << 20;
const MAX_WRITE_SAME_BYTES = 256 << 20;

/** MAXIMUM UNMAP LBA COUNT: the sum over the descriptors of one UNMAP. */
export function maxUnmapBlocks(lu: LogicalUnit): number {
  return Math.floor(MAX_UNMAP_BYTES / lu.blockSize);
}

/**
 * MAXIMUM WRITE SAME LENGTH. Linux takes its write_zeroes limit from here
 * and zeroes with WRITE SAME(16) (UNMAP set when LBPRZ is reported); ESXi's
 * VAAI block zeroing sends a few MiB at a time.
 */
export function maxWriteSameBlocks(lu: LogicalUnit): number {
  return Math.floor(MAX_WRITE_SAME_BYTES / lu.blockSize);
}

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
  // A store doing the compare itself (a cluster) may take less.
  const own = lu.store.compareAndWrite && lu.store.compareAndWriteLimit ? Math.floor(lu.store.compareAndWriteLimit / lu.blockSize) : CAW_FIELD_MAX;
  if (lu.maxTransferBlocks === 0) return Math.max(1, Math.min(CAW_FIELD_MAX, own));
  return Math.max(1, Math.min(CAW_FIELD_MAX, own, Math.floor(lu.maxTransferBlocks / 2)));
}
