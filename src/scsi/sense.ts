/**
 * Sense data builder (SPC-5 4.4). Writes into the command's preallocated
 * 96-byte sense buffer, so building sense allocates nothing.
 *
 * Fixed format (0x70) is the default because every initiator understands
 * it; descriptor format (0x72) is used when the control mode page D_SENSE
 * bit is set, which is also the only way to carry a 64-bit INFORMATION
 * field (a miscompare offset or LBA above 2^32).
 */

export const enum SenseKey {
  NoSense = 0x0,
  NotReady = 0x2,
  MediumError = 0x3,
  HardwareError = 0x4,
  IllegalRequest = 0x5,
  UnitAttention = 0x6,
  DataProtect = 0x7,
  CopyAborted = 0xa,
  AbortedCommand = 0xb,
  Miscompare = 0xe,
}

/** Additional sense code + qualifier, packed as (asc << 8) | ascq. */
export const enum Asc {
  NoAdditionalSense = 0x0000,
  WriteError = 0x0c00,
  CopyTargetDeviceNotReachable = 0x0d02,
  UnrecoveredReadError = 0x1100,
  ParameterListLengthError = 0x1a00,
  MiscompareDuringVerify = 0x1d00,
  InvalidCommandOperationCode = 0x2000,
  LbaOutOfRange = 0x2100,
  InvalidFieldInCdb = 0x2400,
  InvalidFieldInParameterList = 0x2600,
  TooManyTargetDescriptors = 0x2606,
  UnsupportedTargetDescriptorTypeCode = 0x2607,
  TooManySegmentDescriptors = 0x2608,
  UnsupportedSegmentDescriptorTypeCode = 0x2609,
  WriteProtected = 0x2700,
  SpaceAllocationFailedWriteProtect = 0x2707,
  NotReadyToReadyChange = 0x2800,
  PowerOnResetOccurred = 0x2900,
  ModeParametersChanged = 0x2a01,
  CapacityDataHasChanged = 0x2a09,
  SavingParametersNotSupported = 0x3900,
  InternalTargetFailure = 0x4400,
}

/** Sense bytes that may be dirty from the previous command using this buffer. */
const SENSE_CLEAR_BYTES = 32;

/** Fixed format: 18 bytes (additional sense length 10). */
const FIXED_LENGTH = 18;
/** Descriptor format header length. */
const DESC_HEADER = 8;

/**
 * Start a sense record. Returns nothing; the optional pieces
 * (information, field pointer) are appended with the helpers below, which
 * work in either format by looking at byte 0.
 */
export function writeSense(buf: Buffer, descriptor: boolean, key: number, asc: number): void {
  buf.fill(0, 0, SENSE_CLEAR_BYTES);
  if (descriptor) {
    buf[0] = 0x72;
    buf[1] = key & 0x0f;
    buf[2] = asc >> 8;
    buf[3] = asc & 0xff;
    buf[7] = 0; // no descriptors yet
  } else {
    buf[0] = 0x70;
    buf[2] = key & 0x0f;
    buf[7] = FIXED_LENGTH - 8;
    buf[12] = asc >> 8;
    buf[13] = asc & 0xff;
  }
}

/** Total length of the sense record currently in `buf`. */
export function senseLength(buf: Buffer): number {
  return buf[0] === 0x72 ? DESC_HEADER + buf[7] : FIXED_LENGTH;
}

/** Append a descriptor of `len` bytes and return its offset. */
function appendDescriptor(buf: Buffer, type: number, len: number): number {
  const at = DESC_HEADER + buf[7];
  buf[at] = type;
  buf[at + 1] = len - 2;
  buf[7] += len;
  return at;
}

/**
 * Set the INFORMATION field (SPC-5 4.4.2.2). In fixed format it is only 32
 * bits wide; a larger value cannot be represented, so VALID stays 0 then
 * (SPC-5: "if the information exceeds four bytes ... VALID set to zero").
 */
export function setSenseInformation(buf: Buffer, info: number): void {
  if (buf[0] === 0x72) {
    const at = appendDescriptor(buf, 0x00, 12);
    buf[at + 2] = 0x80; // VALID
    buf.writeUInt32BE(Math.floor(info / 0x1_0000_0000), at + 4);
    buf.writeUInt32BE(info >>> 0, at + 8);
  } else if (info <= 0xffff_ffff) {
    buf[0] |= 0x80;
    buf.writeUInt32BE(info, 3);
  }
}

/**
 * Sense-key-specific field pointer (SPC-5 4.4.2.4.2): which byte (and bit)
 * of the CDB (`inCdb`) or of the parameter list is wrong. `bit` < 0 means
 * "whole byte" (BPV = 0).
 */
export function setSenseFieldPointer(buf: Buffer, inCdb: boolean, byte: number, bit: number): void {
  const sks = (inCdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0) | 0x80;
  let at: number;
  if (buf[0] === 0x72) {
    at = appendDescriptor(buf, 0x02, 8) + 4;
  } else {
    at = 15;
  }
  buf[at] = sks;
  buf.writeUInt16BE(byte & 0xffff, at + 1);
}
