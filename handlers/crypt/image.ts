/**
 * Offline image operations for `tcmu-ts image create --encrypt` and
 * `tcmu-ts image info` (the CLI wires them; this module has no CLI code):
 *
 * - createEncryptedImage: a new raw file holding a LUKS2 or LUKS1 container
 *   whose data area is `size` bytes (the file is header + size, sparse),
 *   ready for `crypt/;key=NAME>file//PATH`;
 * - luksInfo: the header of an image (format, cipher, sector size, data
 *   offset, keyslots with their KDF) without any key.
 */
import { unlink } from 'node:fs/promises';
import { openerOf, type FileOpener } from '../../src/backstore/confine.js';
import { DEFAULT_LIMITS } from '../../src/crypto/luks/limits.js';
import { formatLuks, luksDataOffset, type KdfChoice } from '../../src/crypto/luks/format.js';
import { LuksError } from '../../src/crypto/luks/errors.js';
import { readLuksHeader } from '../../src/crypto/luks/read-header.js';

export interface CreateEncryptedOptions {
  format: 'luks2' | 'luks1';
  /** Usable (decrypted) size in bytes: a multiple of the sector size. */
  size: number;
  /** The key: a key file's bytes, all of them (as cryptsetup --key-file). */
  passphrase: Buffer;
  sectorSize?: 512 | 4096;
  /** 64 (AES-256-XTS, default) or 32 (AES-128-XTS). */
  keySize?: 32 | 64;
  kdf?: KdfChoice;
  label?: string;
}

/** Create PATH (refusing an existing file) and format it. Returns what `image info` would show first. */
export async function createEncryptedImage(
  path: string,
  opts: CreateEncryptedOptions,
  files?: FileOpener,
): Promise<{ uuid: string; dataOffset: number; fileSize: number }> {
  const version = opts.format === 'luks2' ? 2 : opts.format === 'luks1' ? 1 : undefined;
  if (version === undefined) throw new LuksError('EINVAL', `--encrypt must be luks2 or luks1, not ${JSON.stringify(opts.format)}`);
  const sector = opts.sectorSize ?? 512;
  if (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % sector !== 0) {
    throw new LuksError('EINVAL', `size ${opts.size} must be a positive multiple of the ${sector}-byte sector size`);
  }
  const dataOffset = luksDataOffset(version);
  const fileSize = dataOffset + opts.size;
  const fh = await openerOf({ files }).openHandle(path, { write: true, create: true, mode: 0o600 });
  try {
    await fh.truncate(fileSize);
    const result = await formatLuks(
      async (offset, data) => {
        await fh.write(data, 0, data.length, offset);
      },
      fileSize,
      { version, passphrase: opts.passphrase, sectorSize: opts.sectorSize, keySize: opts.keySize, kdf: opts.kdf, label: opts.label },
    );
    await fh.sync();
    await fh.close();
    return { uuid: result.uuid, dataOffset: result.dataOffset, fileSize };
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw err;
  }
}

export interface LuksInfo {
  format: 'luks1' | 'luks2';
  uuid: string;
  label: string;
  cipher: string;
  keyBits: number;
  sectorSize: number;
  dataOffset: number;
  dataSize: number | 'dynamic';
  keyslots: Array<{ id: string; kdf: string; priority: number; stripes: number; afHash: string }>;
  tokens: Array<{ id: string; type: string; keyslots: string[] }>;
  warnings: string[];
}

/** Whether PATH starts with a LUKS magic; `image info` then shows luksInfo. */
export async function isLuksImage(path: string, files?: FileOpener): Promise<boolean> {
  const fh = await openerOf({ files }).openHandle(path);
  try {
    const b = Buffer.alloc(6);
    await fh.read(b, 0, 6, 0);
    return b.equals(Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]));
  } finally {
    await fh.close();
  }
}

/** The LUKS header of PATH, without a key. Refuses what tcmu-ts cannot serve, naming the feature. */
export async function luksInfo(path: string, files?: FileOpener): Promise<LuksInfo> {
  const fh = await openerOf({ files }).openHandle(path);
  try {
    const { size } = await fh.stat();
    const read = async (offset: number, length: number) => {
      const b = Buffer.alloc(length);
      await fh.read(b, 0, length, offset);
      return b;
    };
    const { header, warnings } = await readLuksHeader({ read, size, where: path, limits: DEFAULT_LIMITS });
    return {
      format: header.version === 2 ? 'luks2' : 'luks1',
      uuid: header.uuid,
      label: header.label,
      cipher: header.cipher,
      keyBits: header.keySize * 8,
      sectorSize: header.sectorSize,
      dataOffset: header.dataOffset,
      dataSize: header.dataSize,
      keyslots: header.keyslots.map((k) => ({
        id: k.id,
        kdf: k.kdf.type === 'pbkdf2' ? `pbkdf2-${k.kdf.hash} (${k.kdf.iterations} iterations)` : `${k.kdf.type} (time ${k.kdf.time}, ${k.kdf.memoryKiB} KiB, ${k.kdf.cpus} threads)`,
        priority: k.priority,
        stripes: k.stripes,
        afHash: k.afHash,
      })),
      tokens: header.tokens,
      warnings,
    };
  } finally {
    await fh.close();
  }
}
