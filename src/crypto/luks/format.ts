/**
 * Write a new LUKS container (LUKS2 or LUKS1) with one keyslot (slot 0)
 * opened by `passphrase`, laid out as cryptsetup 2.6 lays it out, so that
 * cryptsetup and dm-crypt (and qemu for LUKS1) open it:
 *
 * LUKS2: two 16 KiB header copies (binary + JSON, seqid 1, sha256
 *   checksums), keyslots area from 32 KiB to the data at 16 MiB, keyslot 0
 *   at 32 KiB (AF 4000 stripes sha256, area aes-xts-plain64 with a key as
 *   long as the volume key), pbkdf2-sha256 digest.
 * LUKS1: 592-byte header, key material 4 KiB-aligned after it, the
 *   payload at 2 MiB (sector 4096), hash sha256.
 *
 * The data area is not touched (as cryptsetup luksFormat: its old bytes
 * decrypt to noise). Only the header and the keyslot areas are written.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afSplit } from './af.js';
import { LuksError } from './errors.js';
import { pbkdf2Async } from './kdf.js';
import { cryptKeyslotArea } from './keyslot-area.js';
import { LUKS_MAGIC, LUKS1_SLOTS, SLOT_ACTIVE, SLOT_INACTIVE } from './luks1.js';
import { BINARY_SIZE, sealCopy } from './luks2-binary.js';
import { SECTOR } from './limits.js';
import type { Kdf } from './model.js';

export type KdfChoice =
  | { type: 'argon2id' | 'argon2i'; time: number; memoryKiB: number; cpus: number }
  | { type: 'pbkdf2'; iterations: number };

export interface FormatOptions {
  version: 1 | 2;
  /** The passphrase: a key file's bytes, used as is. */
  passphrase: Buffer;
  /** Volume key bytes: 64 (AES-256-XTS, default) or 32 (AES-128-XTS). */
  keySize?: 32 | 64;
  /** LUKS2 only: 512 (default) or 4096. */
  sectorSize?: 512 | 4096;
  /** Default LUKS2: argon2id time 4, 256 MiB, 2 threads; LUKS1: pbkdf2 1,000,000 iterations. */
  kdf?: KdfChoice;
  /** PBKDF2 iterations of the volume key digest (default 100,000; cryptsetup's minimum is 1000). */
  digestIterations?: number;
  label?: string;
  /** A given volume key (tests); default: random. Not kept. */
  volumeKey?: Buffer;
}

export type WriteAt = (offset: number, data: Buffer) => Promise<void>;

export const LUKS2_DATA_OFFSET = 16 * 1024 * 1024;
export const LUKS1_DATA_OFFSET = 2 * 1024 * 1024;
const LUKS2_HDR_SIZE = 16384;
const STRIPES = 4000;
const DEFAULT_ARGON2: KdfChoice = { type: 'argon2id', time: 4, memoryKiB: 256 * 1024, cpus: 2 };

/** Bytes a container takes before its data, for a format version. */
export function luksDataOffset(version: 1 | 2): number {
  return version === 2 ? LUKS2_DATA_OFFSET : LUKS1_DATA_OFFSET;
}

function kdfWithSalt(choice: KdfChoice): Kdf {
  const salt = randomBytes(32);
  return choice.type === 'pbkdf2'
    ? { type: 'pbkdf2', hash: 'sha256', iterations: choice.iterations, salt }
    : { type: choice.type, time: choice.time, memoryKiB: choice.memoryKiB, cpus: choice.cpus, salt };
}

/** The encrypted AF material of one keyslot (whole 512-byte sectors). */
async function keyslotMaterial(volumeKey: Buffer, kdf: Kdf, passphrase: Buffer): Promise<Buffer> {
  const split = await afSplit(volumeKey, STRIPES, 'sha256');
  const material = Buffer.alloc(Math.ceil(split.length / SECTOR) * SECTOR);
  split.copy(material);
  split.fill(0);
  await cryptKeyslotArea(true, kdf, passphrase, volumeKey.length, material);
  return material;
}

function checkOptions(opts: FormatOptions, deviceSize: number): void {
  const keySize = opts.keySize ?? 64;
  if (keySize !== 32 && keySize !== 64) throw new LuksError('EINVAL', `key size must be 32 or 64 bytes, not ${keySize}`);
  if (opts.passphrase.length === 0) throw new LuksError('EINVAL', 'the key file is empty');
  const sectorSize = opts.sectorSize ?? 512;
  if (sectorSize !== 512 && sectorSize !== 4096) throw new LuksError('EINVAL', `sector size must be 512 or 4096, not ${sectorSize}`);
  if (opts.version === 1 && sectorSize !== 512) throw new LuksError('EINVAL', 'LUKS1 has 512-byte sectors only');
  const min = luksDataOffset(opts.version) + sectorSize;
  if (deviceSize < min) throw new LuksError('EINVAL', `the device (${deviceSize} bytes) is too small for a LUKS${opts.version} container (at least ${min})`);
  if (opts.volumeKey && opts.volumeKey.length !== keySize) throw new LuksError('EINVAL', 'the given volume key does not match the key size');
}

/** Format a LUKS container onto a device of `deviceSize` bytes through `write`. */
export async function formatLuks(write: WriteAt, deviceSize: number, opts: FormatOptions): Promise<{ uuid: string; dataOffset: number }> {
  checkOptions(opts, deviceSize);
  const keySize = opts.keySize ?? 64;
  const volumeKey = opts.volumeKey ? Buffer.from(opts.volumeKey) : randomBytes(keySize);
  try {
    return opts.version === 2 ? await formatLuks2(write, opts, volumeKey) : await formatLuks1(write, opts, volumeKey);
  } finally {
    volumeKey.fill(0);
  }
}

async function formatLuks2(write: WriteAt, opts: FormatOptions, volumeKey: Buffer): Promise<{ uuid: string; dataOffset: number }> {
  const keySize = volumeKey.length;
  const kdf = kdfWithSalt(opts.kdf ?? DEFAULT_ARGON2);
  const material = await keyslotMaterial(volumeKey, kdf, opts.passphrase);
  const areaOffset = 2 * LUKS2_HDR_SIZE;
  const areaSize = Math.ceil(material.length / 4096) * 4096;
  const digestSalt = randomBytes(32);
  const digestIterations = opts.digestIterations ?? 100_000;
  const digest = await pbkdf2Async(volumeKey, digestSalt, digestIterations, 32, 'sha256');
  const kdfJson =
    kdf.type === 'pbkdf2'
      ? { type: 'pbkdf2', hash: kdf.hash, iterations: kdf.iterations, salt: kdf.salt.toString('base64') }
      : { type: kdf.type, time: kdf.time, memory: kdf.memoryKiB, cpus: kdf.cpus, salt: kdf.salt.toString('base64') };
  const metadata = {
    keyslots: {
      '0': {
        type: 'luks2',
        key_size: keySize,
        af: { type: 'luks1', stripes: STRIPES, hash: 'sha256' },
        area: { type: 'raw', offset: String(areaOffset), size: String(areaSize), encryption: 'aes-xts-plain64', key_size: keySize },
        kdf: kdfJson,
      },
    },
    tokens: {},
    segments: {
      '0': { type: 'crypt', offset: String(LUKS2_DATA_OFFSET), size: 'dynamic', iv_tweak: '0', encryption: 'aes-xts-plain64', sector_size: opts.sectorSize ?? 512 },
    },
    digests: {
      '0': { type: 'pbkdf2', keyslots: ['0'], segments: ['0'], hash: 'sha256', iterations: digestIterations, salt: digestSalt.toString('base64'), digest: digest.toString('base64') },
    },
    config: { json_size: String(LUKS2_HDR_SIZE - BINARY_SIZE), keyslots_size: String(LUKS2_DATA_OFFSET - 2 * LUKS2_HDR_SIZE) },
  };
  const json = Buffer.from(JSON.stringify(metadata), 'utf8');
  if (json.length >= LUKS2_HDR_SIZE - BINARY_SIZE) throw new LuksError('EINVAL', 'the LUKS2 metadata does not fit its JSON area');
  const uuid = randomUUID();
  const label = opts.label ?? '';
  if (!/^[\x20-\x7e]{0,47}$/.test(label)) throw new LuksError('EINVAL', 'the label must be at most 47 printable ASCII characters');
  // Keyslot first, headers last: a header never points at key material that is not there yet.
  await write(areaOffset, material);
  material.fill(0);
  for (const offset of [0, LUKS2_HDR_SIZE]) {
    const copy = Buffer.alloc(LUKS2_HDR_SIZE);
    json.copy(copy, BINARY_SIZE);
    sealCopy(copy, { offset, hdrSize: LUKS2_HDR_SIZE, seqid: 1n, label, uuid, salt: randomBytes(64) });
    await write(offset, copy);
  }
  return { uuid, dataOffset: LUKS2_DATA_OFFSET };
}

async function formatLuks1(write: WriteAt, opts: FormatOptions, volumeKey: Buffer): Promise<{ uuid: string; dataOffset: number }> {
  const keySize = volumeKey.length;
  const choice = opts.kdf ?? { type: 'pbkdf2', iterations: 1_000_000 };
  if (choice.type !== 'pbkdf2') throw new LuksError('EINVAL', 'LUKS1 keyslots use pbkdf2 only');
  if (choice.iterations < 1000) throw new LuksError('EINVAL', 'LUKS1 needs at least 1000 PBKDF2 iterations (cryptsetup refuses fewer)');
  const kdf = kdfWithSalt(choice);
  const material = await keyslotMaterial(volumeKey, kdf, opts.passphrase);
  const digestIterations = Math.max(1000, opts.digestIterations ?? 100_000);
  const digestSalt = randomBytes(32);
  const digest = await pbkdf2Async(volumeKey, digestSalt, digestIterations, 20, 'sha256');
  const uuid = randomUUID();

  const hdr = Buffer.alloc(4096);
  LUKS_MAGIC.copy(hdr, 0);
  hdr.writeUInt16BE(1, 6);
  hdr.write('aes', 8, 31, 'latin1');
  hdr.write('xts-plain64', 40, 31, 'latin1');
  hdr.write('sha256', 72, 31, 'latin1');
  hdr.writeUInt32BE(LUKS1_DATA_OFFSET / SECTOR, 104);
  hdr.writeUInt32BE(keySize, 108);
  digest.copy(hdr, 112);
  digestSalt.copy(hdr, 132);
  hdr.writeUInt32BE(digestIterations, 164);
  hdr.write(uuid, 168, 39, 'latin1');
  // Key material of slot i at 4 KiB-aligned offsets after the header, as cryptsetup places it.
  const slotSectors = Math.ceil(material.length / 4096) * (4096 / SECTOR);
  const first = 4096 / SECTOR;
  for (let i = 0; i < LUKS1_SLOTS; i++) {
    const at = 208 + i * 48;
    hdr.writeUInt32BE(i === 0 ? SLOT_ACTIVE : SLOT_INACTIVE, at);
    if (i === 0) {
      hdr.writeUInt32BE(choice.iterations, at + 4);
      kdf.salt.copy(hdr, at + 8);
    }
    hdr.writeUInt32BE(first + i * slotSectors, at + 40);
    hdr.writeUInt32BE(STRIPES, at + 44);
  }
  if ((first + LUKS1_SLOTS * slotSectors) * SECTOR > LUKS1_DATA_OFFSET) throw new LuksError('EINVAL', 'LUKS1 key material does not fit before the payload');
  await write(first * SECTOR, material);
  material.fill(0);
  await write(0, hdr);
  return { uuid, dataOffset: LUKS1_DATA_OFFSET };
}
