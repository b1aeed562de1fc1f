/**
 * Find and parse the LUKS header of a device: LUKS1, or LUKS2 with both
 * copies checked (checksums verified). When both LUKS2 copies are valid the
 * one with the higher seqid wins (cryptsetup's rule); when one is damaged
 * the other is used and the damage logged by the caller through `warnings`.
 * Nothing is ever written here.
 */
import { corrupt, LuksError } from './errors.js';
import { DEFAULT_LIMITS, type LuksLimits } from './limits.js';
import { LUKS_MAGIC, LUKS1_HEADER_SIZE, parseLuks1 } from './luks1.js';
import { BINARY_SIZE, HDR_SIZES, LUKS2_MAGIC_SECONDARY, parseBinary, verifyCopy } from './luks2-binary.js';
import { parseLuks2Json } from './luks2-json.js';
import type { LuksHeader } from './model.js';

/** Reads `length` bytes at `offset` of the device (both inside it, the caller guarantees). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

export interface HeaderSource {
  read: ReadAt;
  /** Device size in bytes. */
  size: number;
  /** Names the image or LUN in every message. */
  where: string;
  limits?: LuksLimits;
}

export interface ReadHeaderResult {
  header: LuksHeader;
  /** Non-fatal findings (a damaged header copy), for the log. */
  warnings: string[];
}

interface Copy {
  offset: number;
  hdrSize: number;
  seqid: bigint;
  label: string;
  uuid: string;
  json: string;
}

async function loadCopy(src: HeaderSource, offset: number): Promise<Copy | string> {
  if (offset + BINARY_SIZE > src.size) return 'past the end of the device';
  const bin = await src.read(offset, BINARY_SIZE);
  const fields = parseBinary(bin, offset, src.where);
  if (typeof fields === 'string') return fields;
  if (offset + fields.hdrSize > src.size) return `its ${fields.hdrSize}-byte header runs past the end of the device`;
  const copy = Buffer.concat([bin, await src.read(offset + BINARY_SIZE, fields.hdrSize - BINARY_SIZE)]);
  const verified = verifyCopy(copy, fields.alg);
  if (typeof verified === 'string') return verified;
  return { offset, hdrSize: fields.hdrSize, seqid: fields.seqid, label: fields.label, uuid: fields.uuid, json: verified.json };
}

/** Whether the device starts with a LUKS magic (either version), without validating anything. */
export function looksLikeLuks(first: Buffer): boolean {
  return first.length >= 6 && (first.subarray(0, 6).equals(LUKS_MAGIC) || first.subarray(0, 6).equals(LUKS2_MAGIC_SECONDARY));
}

export async function readLuksHeader(src: HeaderSource): Promise<ReadHeaderResult> {
  const limits = src.limits ?? DEFAULT_LIMITS;
  const { where } = src;
  if (src.size < LUKS1_HEADER_SIZE) throw corrupt(where, `the device (${src.size} bytes) is too small for a LUKS header`);
  const first = await src.read(0, Math.min(BINARY_SIZE, src.size - (src.size % 512)));
  const primaryMagic = first.subarray(0, 6).equals(LUKS_MAGIC);
  const version = first.readUInt16BE(6);
  if (primaryMagic && version === 1) return { header: parseLuks1(first, src.size, where, limits), warnings: [] };
  if (primaryMagic && version !== 2) throw new LuksError('ENOTSUP', `${where}: LUKS version ${version} is not supported (1 and 2 are)`);

  const warnings: string[] = [];
  const primary = primaryMagic ? await loadCopy(src, 0) : 'no LUKS magic at offset 0';
  let secondary: Copy | string;
  if (typeof primary !== 'string') {
    secondary = await loadCopy(src, primary.hdrSize);
  } else {
    // The primary's hdr_size cannot be trusted: look for the secondary at every size LUKS2 allows.
    secondary = 'not found at any LUKS2 header offset';
    for (const off of HDR_SIZES) {
      const found = await loadCopy(src, off);
      if (typeof found !== 'string') {
        secondary = found;
        break;
      }
    }
    if (typeof secondary === 'string' && !primaryMagic) throw new LuksError('EINVAL', `${where}: not a LUKS container (no LUKS magic)`);
  }
  if (typeof primary === 'string' && typeof secondary === 'string') {
    throw corrupt(where, `neither LUKS2 header copy is valid (primary: ${primary}; secondary: ${secondary})`);
  }
  let chosen: Copy;
  if (typeof primary === 'string') {
    warnings.push(`the primary LUKS2 header is damaged (${primary}); using the secondary copy`);
    chosen = secondary as Copy;
  } else if (typeof secondary === 'string') {
    warnings.push(`the secondary LUKS2 header is damaged (${secondary}); using the primary copy`);
    chosen = primary;
  } else {
    if (primary.hdrSize !== secondary.hdrSize) throw corrupt(where, 'the two LUKS2 header copies disagree on the header size');
    chosen = secondary.seqid > primary.seqid ? secondary : primary;
    if (primary.seqid !== secondary.seqid) warnings.push(`the LUKS2 header copies have seqid ${primary.seqid} and ${secondary.seqid}; using the newer`);
  }
  const parsed = parseLuks2Json(chosen.json, { hdrSize: chosen.hdrSize, deviceSize: src.size }, where, limits);
  return {
    header: { ...parsed, version: 2, uuid: chosen.uuid, label: chosen.label, hdrSize: chosen.hdrSize, seqid: Number(chosen.seqid) },
    warnings,
  };
}
