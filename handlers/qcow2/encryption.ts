/**
 * qcow2's own LUKS encryption (crypt_method 2, QEMU's `encrypt.format=luks`).
 *
 * Facts (docs/interop/qcow2.txt, checked against qemu-img/qemu-io 7.2 by
 * test/handlers/qcow2/encryption-qemu.test.ts):
 *  - header extension 0x0537be77 ("full disk encryption header pointer"):
 *    u64 offset (cluster aligned) and u64 length of a LUKS1 header that lives
 *    in ordinary refcounted clusters of the image file. Its keyslot
 *    key-material offsets are relative to that offset; its payload offset is
 *    meaningless for qcow2 (QEMU writes the header length there);
 *  - guest data in normal clusters is aes-xts-plain64 with 512-byte sectors,
 *    and the IV of a sector is its HOST offset / 512 (the "physical disk
 *    sector"), not the guest offset: a cluster copied elsewhere (COW,
 *    snapshot) must be re-encrypted, which the write path does anyway since
 *    it writes plaintext through here;
 *  - metadata (header, L1/L2, refcounts, snapshot table) is never encrypted;
 *  - compressed clusters: `qemu-img convert -c` refuses encryption, but the
 *    driver (qemu-io `write -c`) stores a compressed cluster as PLAINTEXT
 *    deflate even in an encrypted image, and reads it back that way. We read
 *    such clusters as QEMU does and never write compressed clusters into an
 *    encrypted image (compression-mode.ts refuses compress= on one).
 * Only LUKS1 is accepted inside qcow2: that is all QEMU writes or reads there.
 */
import type { FileHandle } from 'node:fs/promises';
import { StorageError } from '../../src/backstore/errors.js';
import { copyFromIov, copyIntoIov, iovLength } from '../../src/iov.js';
import { LuksError } from '../../src/crypto/luks/errors.js';
import { DEFAULT_LIMITS, type LuksLimits } from '../../src/crypto/luks/limits.js';
import type { LuksHeader } from '../../src/crypto/luks/model.js';
import { readLuksHeader } from '../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../src/crypto/luks/unlock.js';
import { xtsEngine, type XtsEngine } from '../../src/crypto/xts.js';
import { readFull } from './file-io.js';
import { EXT_CRYPTO, type Qcow2Header } from './format.js';
import { readvFull, writevFull } from './file-io.js';

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;
/** XTS data unit: always 512 bytes in qcow2 (LUKS1). */
const SECTOR = 512;
/** A LUKS1 header with 8 keyslots of 4000 stripes x 512-bit keys is ~2 MiB; QEMU never writes more. */
export const MAX_CRYPTO_HEADER = 64 << 20;

export interface CryptoRegion {
  /** Byte offset of the LUKS header in the image file (cluster aligned). */
  offset: number;
  /** Bytes of the LUKS header written there (the clusters spanning it are allocated). */
  length: number;
}

function corrupt(msg: string): StorageError {
  return new StorageError('ECORRUPT', `qcow2: ${msg}`);
}

/**
 * The LUKS header region of an image, validated against the geometry, or
 * undefined for an unencrypted image. Legacy AES-CBC (crypt_method 1) is
 * refused: QEMU itself only reads it in its tools, for data liberation.
 */
export function cryptoRegion(h: Qcow2Header, fileSize: number): CryptoRegion | undefined {
  const exts = h.extensions.filter((e) => e.type === EXT_CRYPTO);
  if (h.cryptMethod === CRYPT_NONE) {
    if (exts.length > 0) throw corrupt('full disk encryption header extension present in an unencrypted image');
    return undefined;
  }
  if (h.cryptMethod === CRYPT_AES) {
    throw new StorageError('ENOTSUP', 'qcow2: legacy AES-CBC encryption (crypt_method 1) is not supported; convert the image with qemu-img convert -O qcow2 -o encrypt.format=luks');
  }
  if (h.cryptMethod !== CRYPT_LUKS) throw new StorageError('ENOTSUP', `qcow2: unknown crypt_method ${h.cryptMethod}`);
  if (exts.length !== 1) throw corrupt(`LUKS-encrypted image needs exactly one full disk encryption header extension, found ${exts.length}`);
  const data = exts[0]!.data;
  if (data.length !== 16) throw corrupt(`full disk encryption header extension is ${data.length} bytes, not 16`);
  const offset = data.readBigUInt64BE(0);
  const length = data.readBigUInt64BE(8);
  const cs = 2 ** h.clusterBits;
  if (offset === 0n || offset % BigInt(cs) !== 0n) throw corrupt(`LUKS header offset ${offset} is not a cluster-aligned offset past the qcow2 header`);
  if (length < 592n || length > BigInt(MAX_CRYPTO_HEADER)) throw corrupt(`LUKS header length ${length} is outside 592 .. ${MAX_CRYPTO_HEADER} bytes`);
  if (offset + length > BigInt(fileSize)) throw corrupt(`LUKS header [${offset}, +${length}) runs past the end of the file (${fileSize} bytes)`);
  return { offset: Number(offset), length: Number(length) };
}

/** Host clusters the LUKS header occupies (for refcount checks and the overlap guard). */
export function cryptoRegionBytes(region: CryptoRegion, clusterSize: number): number {
  return Math.ceil(region.length / clusterSize) * clusterSize;
}

/** Read the LUKS header of an image (no key needed): for `image info`, and before unlocking. */
export async function readCryptoHeader(fh: FileHandle, region: CryptoRegion, where: string, limits: LuksLimits = DEFAULT_LIMITS): Promise<LuksHeader> {
  const read = async (off: number, len: number) => {
    const b = Buffer.alloc(len);
    await readFull(fh, b, region.offset + off);
    return b;
  };
  const { header } = await readLuksHeader({ read, size: region.length, where, limits });
  if (header.version !== 1) {
    throw new LuksError('ENOTSUP', `${where}: a LUKS${header.version} header inside qcow2 is not supported (QEMU writes and reads LUKS1 there only)`);
  }
  return header;
}

/**
 * The unlocked data cipher of one image. All guest data of normal clusters
 * passes through read/write here; callers' buffers are never encrypted in
 * place (they may be shared, e.g. the zero-path's zero cluster).
 */
export class Qcow2Encryption {
  private engine: XtsEngine | undefined;

  constructor(
    readonly region: CryptoRegion,
    engine: XtsEngine,
    readonly keyslot: string,
  ) {
    this.engine = engine;
  }

  private xts(): XtsEngine {
    if (!this.engine) throw new StorageError('EIO', 'qcow2: the image key was wiped (image closed)');
    return this.engine;
  }

  /** Fill `bufs` with the plaintext of host bytes [host, host + len). */
  async read(fh: FileHandle, bufs: readonly Buffer[], host: number): Promise<void> {
    const len = iovLength(bufs);
    const start = host - (host % SECTOR);
    const end = Math.ceil((host + len) / SECTOR) * SECTOR;
    const single = bufs.length === 1 && start === host && end === host + len && (bufs[0]!.byteOffset & 3) === 0;
    const buf = single ? bufs[0]! : Buffer.allocUnsafe(end - start);
    await readvFull(fh, [buf], start);
    this.xts().crypt(false, buf, SECTOR, start / SECTOR, 1);
    if (!single) copyIntoIov(bufs, buf, host - start);
  }

  /** Encrypt `bufs` and write them at host offset `host` (partial sectors: read-modify-write). */
  async write(fh: FileHandle, bufs: readonly Buffer[], host: number): Promise<void> {
    const len = iovLength(bufs);
    const start = host - (host % SECTOR);
    const end = Math.ceil((host + len) / SECTOR) * SECTOR;
    const buf = Buffer.allocUnsafe(end - start);
    if (start !== host || end !== host + len) {
      // Only a caller writing less than a sector gets here (the LUN never does).
      await this.read(fh, [buf], start);
    }
    copyFromIov(buf, bufs, host - start);
    this.xts().crypt(true, buf, SECTOR, start / SECTOR, 1);
    await writevFull(fh, [buf], start);
  }

  /** Wipe the volume key (image closed). */
  wipe(): void {
    this.engine?.wipe();
    this.engine = undefined;
  }
}

/** Where the keys of an encrypted image and its encrypted backing files come from. */
export interface ImageKeys {
  /**
   * The passphrase for the image at `depth` of the chain (0 = the image
   * opened, 1 its backing file, ...): a copy the caller wipes. Throws a
   * coded error naming the key (never its bytes) when it cannot be had.
   */
  passphrase(depth: number, path: string): Buffer;
  /** Names the LUN in "no keyslot matches" and every other message. */
  where: string;
  limits?: LuksLimits;
}

/**
 * Unlock an encrypted image: read its LUKS header, run the KDF (off the
 * event loop), check the volume key. Nothing is written. Without `keys`
 * the image is refused; callers that only touch metadata (info, check,
 * snapshots) open it `locked` instead and get no cipher.
 */
export async function unlockImage(fh: FileHandle, region: CryptoRegion, keys: ImageKeys, depth: number, path: string): Promise<Qcow2Encryption> {
  // "qcow2: PATH: " is how every open error of the image starts (image.ts keeps such a message as is)
  const where = `qcow2: ${path}: ${keys.where}`;
  const header = await readCryptoHeader(fh, region, where, keys.limits);
  const passphrase = keys.passphrase(depth, path);
  try {
    const read = async (off: number, len: number) => {
      const b = Buffer.alloc(len);
      await readFull(fh, b, region.offset + off);
      return b;
    };
    const { volumeKey, keyslot } = await unlockVolumeKey(header, passphrase, read, where, keys.limits);
    try {
      return new Qcow2Encryption(region, xtsEngine(volumeKey), keyslot);
    } finally {
      volumeKey.fill(0);
    }
  } finally {
    passphrase.fill(0);
  }
}

/** What the data path needs to know about an image's encryption. */
export interface DataFile {
  readonly fh: FileHandle;
  readonly path: string;
  /** Set when the image is encrypted (whether or not it was unlocked). */
  readonly cryptoRegion?: CryptoRegion;
  /** Set when it was unlocked. */
  readonly encryption?: Qcow2Encryption;
}

function locked(img: DataFile): StorageError {
  return new StorageError('ENOTSUP', `qcow2: ${img.path} is encrypted and was opened without its key; guest data cannot be read or written`);
}

/**
 * Guest data of a normal cluster, host bytes [host, host + len), into
 * `bufs`: the read path's one hook (plain preadv for unencrypted images).
 */
export function readData(img: DataFile, bufs: readonly Buffer[], host: number): Promise<void> {
  if (!img.cryptoRegion) return readvFull(img.fh, bufs, host);
  if (!img.encryption) return Promise.reject(locked(img));
  return img.encryption.read(img.fh, bufs, host);
}

/** Guest data to host offset `host`: the write path's one hook. */
export function writeData(img: DataFile, bufs: readonly Buffer[], host: number): Promise<void> {
  if (!img.cryptoRegion) return writevFull(img.fh, bufs, host);
  if (!img.encryption) return Promise.reject(locked(img));
  return img.encryption.write(img.fh, bufs, host);
}

/** What `image info` shows of an encrypted image (no key needed, nothing secret). */
export interface EncryptionInfo {
  format: 'luks';
  cipher: string;
  keyBits: number;
  headerOffset: number;
  headerLength: number;
  keyslots: Array<{ id: string; kdf: string; iterations?: number }>;
}

export async function encryptionInfo(fh: FileHandle, region: CryptoRegion, path: string): Promise<EncryptionInfo> {
  const h = await readCryptoHeader(fh, region, `qcow2: ${path}`);
  return {
    format: 'luks',
    cipher: h.cipher,
    keyBits: h.keySize * 8,
    headerOffset: region.offset,
    headerLength: region.length,
    keyslots: h.keyslots.map((k) => ({ id: k.id, kdf: k.kdf.type, ...(k.kdf.type === 'pbkdf2' ? { iterations: k.kdf.iterations } : {}) })),
  };
}
