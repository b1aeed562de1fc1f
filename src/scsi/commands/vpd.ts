/**
 * Vital product data pages (SPC-5 7.7, SBC-4 6.6). Each builder fills a
 * zeroed buffer and returns the page length including its 4-byte header.
 */
import type { LogicalUnit } from '../logical-unit.js';
import { MAX_UNMAP_BLOCK_DESCRIPTORS, maxCompareAndWriteBlocks, maxUnmapBlocks, maxWriteSameBlocks } from '../block-limits.js';
import { naaBytes } from '../identity.js';
import { writeU64 } from '../be64.js';
import { putAscii } from '../ascii.js';
import type { TargetPortGroups } from '../alua.js';

const SUPPORTED_PAGES = 0x00;
const UNIT_SERIAL = 0x80;
export const DEVICE_ID = 0x83;
const BLOCK_LIMITS = 0xb0;
const BLOCK_CHARACTERISTICS = 0xb1;
const LOGICAL_BLOCK_PROVISIONING = 0xb2;

/** Pages this LUN offers, ascending (B2 only when thin: it advertises unmap). */
function supportedPages(lu: LogicalUnit): number[] {
  const pages = [SUPPORTED_PAGES, UNIT_SERIAL, DEVICE_ID, BLOCK_LIMITS, BLOCK_CHARACTERISTICS];
  if (lu.store.thin) pages.push(LOGICAL_BLOCK_PROVISIONING);
  return pages;
}

/** Build VPD page `code` into `buf` (zeroed); -1 when not supported. `groups`: the LUN's ALUA port groups, if any. */
export function buildVpdPage(lu: LogicalUnit, code: number, buf: Buffer, groups?: TargetPortGroups): number {
  buf[0] = 0x00; // peripheral qualifier / device type
  buf[1] = code;
  let bodyLength: number;
  switch (code) {
    case SUPPORTED_PAGES: {
      const pages = supportedPages(lu);
      pages.forEach((p, i) => (buf[4 + i] = p));
      bodyLength = pages.length;
      break;
    }
    case UNIT_SERIAL: {
      const serial = lu.identity.serial.slice(0, 250);
      putAscii(buf, 4, serial.length, serial);
      bodyLength = serial.length;
      break;
    }
    case DEVICE_ID:
      bodyLength = deviceIdentification(lu, buf, groups?.local);
      break;
    case BLOCK_LIMITS:
      bodyLength = blockLimits(lu, buf);
      break;
    case BLOCK_CHARACTERISTICS:
      bodyLength = 0x3c;
      buf.writeUInt16BE(0x0001, 4); // MEDIUM ROTATION RATE 1: non-rotating (Linux then clears "rotational")
      break;
    case LOGICAL_BLOCK_PROVISIONING:
      if (!lu.store.thin) return -1;
      bodyLength = 4;
      // LBPU (UNMAP), LBPWS (WRITE SAME 16 + UNMAP), LBPWS10, LBPRZ=001b:
      // a deallocated block reads as zeros (the store contract for discard),
      // 000b when the store's discard does not zero (an encryption layer).
      buf[5] = 0x80 | 0x40 | 0x20 | ((lu.store.discardZeroes ? 0x1 : 0) << 2);
      buf[6] = 0x02; // PROVISIONING TYPE: thin
      break;
    default:
      return -1;
  }
  buf.writeUInt16BE(bodyLength, 2);
  return 4 + bodyLength;
}

/**
 * Designation descriptors (SPC-5 7.7.6): NAA, then T10 vendor id, both for
 * the logical unit; with ALUA, the relative target port and the target port
 * group of the local port (Linux's ALUA handler reads the group from here).
 */
function deviceIdentification(lu: LogicalUnit, buf: Buffer, port: TargetPortGroups['local']): number {
  let at = 4;
  const naa = naaBytes(lu.identity);
  buf[at] = 0x01; // PROTOCOL IDENTIFIER 0, CODE SET binary
  buf[at + 1] = 0x03; // PIV 0, ASSOCIATION logical unit, DESIGNATOR TYPE NAA
  buf[at + 3] = naa.length;
  naa.copy(buf, at + 4);
  at += 4 + naa.length;

  const serial = lu.identity.serial.slice(0, 200);
  buf[at] = 0x02; // CODE SET ASCII
  buf[at + 1] = 0x01; // ASSOCIATION logical unit, DESIGNATOR TYPE T10 vendor id
  buf[at + 3] = 8 + serial.length;
  putAscii(buf, at + 4, 8, lu.identity.vendor);
  putAscii(buf, at + 12, serial.length, serial);
  at += 4 + 8 + serial.length;

  if (port !== undefined) {
    at = targetPortDesignator(buf, at, port.protocolId, RELATIVE_TARGET_PORT, port.relativePortId);
    at = targetPortDesignator(buf, at, port.protocolId, TARGET_PORT_GROUP, port.groupId);
  }
  return at - 4;
}

const RELATIVE_TARGET_PORT = 0x4;
const TARGET_PORT_GROUP = 0x5;

/** A 4-byte binary designator of the target port (ASSOCIATION 01b, PIV 1): 16-bit value in its last two bytes. */
function targetPortDesignator(buf: Buffer, at: number, protocolId: number, type: number, value: number): number {
  buf[at] = ((protocolId & 0xf) << 4) | 0x01; // PROTOCOL IDENTIFIER, CODE SET binary
  buf[at + 1] = 0x80 | 0x10 | type; // PIV, ASSOCIATION target port, DESIGNATOR TYPE
  buf[at + 3] = 4;
  buf.writeUInt16BE(value & 0xffff, at + 6);
  return at + 8;
}

/** Block limits (SBC-4 6.6.4); page length 0x3C. */
function blockLimits(lu: LogicalUnit, buf: Buffer): number {
  // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 ("to the end") is refused.
  buf[4] = 0x01;
  buf[5] = maxCompareAndWriteBlocks(lu);
  // Optimal granularity: a 4 KiB page, the unit Linux and most stores work in.
  buf.writeUInt16BE(Math.max(1, 4096 / lu.blockSize), 6);
  buf.writeUInt32BE(lu.maxTransferBlocks, 8);
  buf.writeUInt32BE(lu.maxTransferBlocks, 12); // OPTIMAL TRANSFER LENGTH
  if (lu.store.thin) {
    buf.writeUInt32BE(maxUnmapBlocks(lu), 20);
    buf.writeUInt32BE(MAX_UNMAP_BLOCK_DESCRIPTORS, 24);
    // OPTIMAL UNMAP GRANULARITY: what the store frees in one piece (a qcow2 cluster), so
    // initiators align discards to it (Linux: discard_granularity).
    buf.writeUInt32BE(Math.max(1, lu.store.discardGranularity / lu.blockSize), 28);
  }
  writeU64(buf, 36, maxWriteSameBlocks(lu));
  return 0x3c;
}
