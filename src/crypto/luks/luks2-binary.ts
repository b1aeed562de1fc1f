/**
 * LUKS2 binary header: 4096 bytes, big-endian, at the start of each of the
 * two header copies (primary at 0, secondary at hdr_size), followed by the
 * JSON area (hdr_size - 4096 bytes, NUL padded).
 *
 *   0 magic ("LUKS\xba\xbe" primary, "SKUL\xba\xbe" secondary)  6 version=2
 *   8 hdr_size  16 seqid  24 label[48]  72 checksum_alg[32]  104 salt[64]
 *   168 uuid[40]  208 subsystem[48]  256 hdr_offset  448 csum[64]
 *
 * csum = checksum_alg over the whole copy (binary + JSON area) with the
 * csum field zeroed.
 */
import { createHash } from 'node:crypto';
import { cString } from './luks1.js';

export const LUKS2_MAGIC_PRIMARY = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
export const LUKS2_MAGIC_SECONDARY = Buffer.from([0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]);
export const BINARY_SIZE = 4096;
/** The only header copy sizes LUKS2 allows (16 KiB .. 4 MiB, powers of two). */
export const HDR_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096].map((k) => k * 1024);
const CSUM_AT = 448;
const CSUM_LEN = 64;

export interface Luks2Copy {
  hdrSize: number;
  seqid: bigint;
  label: string;
  uuid: string;
  /** The JSON text (up to the first NUL). */
  json: string;
}

/** Parse the fixed fields of a 4096-byte binary header; null with a reason when it is not a valid copy at `offset`. */
export function parseBinary(bin: Buffer, offset: number, where: string): { hdrSize: number; seqid: bigint; label: string; uuid: string; alg: string } | string {
  const magic = offset === 0 ? LUKS2_MAGIC_PRIMARY : LUKS2_MAGIC_SECONDARY;
  if (!bin.subarray(0, 6).equals(magic)) return 'bad magic';
  if (bin.readUInt16BE(6) !== 2) return `version ${bin.readUInt16BE(6)}`;
  const hdrSizeBig = bin.readBigUInt64BE(8);
  const hdrSize = HDR_SIZES.find((s) => BigInt(s) === hdrSizeBig);
  if (hdrSize === undefined) return `hdr_size ${hdrSizeBig} is not one of the LUKS2 sizes (16 KiB .. 4 MiB)`;
  if (bin.readBigUInt64BE(256) !== BigInt(offset)) return `hdr_offset ${bin.readBigUInt64BE(256)} does not match its position ${offset}`;
  try {
    const alg = cString(bin, 72, 32, where, 'checksum_alg');
    const label = cString(bin, 24, 48, where, 'label');
    const uuid = cString(bin, 168, 40, where, 'uuid');
    cString(bin, 208, 48, where, 'subsystem');
    return { hdrSize, seqid: bin.readBigUInt64BE(16), label, uuid, alg };
  } catch (err) {
    return (err as Error).message;
  }
}

/** The checksum of a whole copy (binary header + JSON area) with its csum field taken as zero. */
export function copyChecksum(copy: Buffer, alg: 'sha256'): Buffer {
  const h = createHash(alg);
  h.update(copy.subarray(0, CSUM_AT));
  h.update(Buffer.alloc(CSUM_LEN));
  h.update(copy.subarray(CSUM_AT + CSUM_LEN));
  return h.digest();
}

/** Verify a whole copy's checksum and extract its JSON text; a reason string when it does not verify. */
export function verifyCopy(copy: Buffer, alg: string): string | { json: string } {
  if (alg !== 'sha256') return `checksum algorithm ${JSON.stringify(alg)} (only sha256, what cryptsetup writes)`;
  const want = copyChecksum(copy, alg);
  const have = copy.subarray(CSUM_AT, CSUM_AT + want.length);
  if (!want.equals(have) || copy.subarray(CSUM_AT + want.length, CSUM_AT + CSUM_LEN).some((b) => b !== 0)) return 'checksum mismatch';
  const area = copy.subarray(BINARY_SIZE);
  const nul = area.indexOf(0);
  if (nul < 0) return 'the JSON area is not NUL-terminated';
  let json: string;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(area.subarray(0, nul));
  } catch {
    return 'the JSON area is not UTF-8';
  }
  return { json };
}

/** Write the binary header fields and the checksum into `copy` (binary + JSON area already filled). */
export function sealCopy(
  copy: Buffer,
  fields: { offset: number; hdrSize: number; seqid: bigint; label: string; uuid: string; salt: Buffer },
): void {
  copy.fill(0, 0, BINARY_SIZE);
  (fields.offset === 0 ? LUKS2_MAGIC_PRIMARY : LUKS2_MAGIC_SECONDARY).copy(copy, 0);
  copy.writeUInt16BE(2, 6);
  copy.writeBigUInt64BE(BigInt(fields.hdrSize), 8);
  copy.writeBigUInt64BE(fields.seqid, 16);
  copy.write(fields.label, 24, 47, 'latin1');
  copy.write('sha256', 72, 31, 'latin1');
  fields.salt.copy(copy, 104, 0, 64);
  copy.write(fields.uuid, 168, 39, 'latin1');
  copy.writeBigUInt64BE(BigInt(fields.offset), 256);
  copyChecksum(copy, 'sha256').copy(copy, CSUM_AT);
}
