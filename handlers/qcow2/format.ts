/**
 * qcow2 header: constants, parse + validate, serialize (docs/interop/qcow2.txt).
 * Everything that can make an image unusable is decided here, once, with a
 * message that names the reason, so the rest of the handler can trust the
 * geometry it is given.
 */
import { StorageError } from '../../src/backstore/errors.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const V2_HEADER_LENGTH = 72;
/** What we write for v3: 104 mandatory bytes + compression_type, padded to 8. */
export const V3_HEADER_LENGTH = 112;
export const MIN_CLUSTER_BITS = 9;
/** QEMU cannot open images with bigger clusters, so neither do we. */
export const MAX_CLUSTER_BITS = 21;
/**
 * Caps on what an image may claim, as QEMU sets them (block/qcow2.h), so a
 * crafted header cannot make us allocate gigabytes or loop for minutes.
 */
export const MAX_L1_BYTES = 32 << 20;
export const MAX_REFTABLE_BYTES = 8 << 20;
export const MAX_SNAPSHOTS = 65536;
export const MAX_SNAPSHOT_TABLE_BYTES = 1024 * MAX_SNAPSHOTS;
export const MAX_SNAPSHOT_EXTRA = 1024;
/** Host offsets are 56-bit fields in L1/L2 entries (qcow2.txt); nothing may point at or past 2^56. */
export const MAX_HOST_OFFSET = 2 ** 56;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_EXTERNAL_DATA = 1n << 2n;
export const INCOMPAT_COMPRESSION_TYPE = 1n << 3n;
export const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_EXTERNAL_DATA | INCOMPAT_COMPRESSION_TYPE | INCOMPAT_EXTENDED_L2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Byte offsets of header fields we patch in place (single small pwrites). */
export const HDR_OFF = {
  size: 24,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatible: 72,
  autoclear: 88,
} as const;

export type CompressionType = 'zlib' | 'zstd';

export interface HeaderExtension {
  type: number;
  data: Buffer;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: CompressionType;
  /** Every extension, unknown ones included, in file order (preserved on rewrite). */
  extensions: HeaderExtension[];
  backingFile?: string;
  backingFormat?: string;
  /** Feature names from the image's own feature table, for error messages. */
  featureNames: Map<string, string>;
}

function corrupt(msg: string): StorageError {
  return new StorageError('ECORRUPT', `qcow2: ${msg}`);
}

function unsupported(msg: string): StorageError {
  return new StorageError('ENOTSUP', `qcow2: ${msg}`);
}

/** A 64-bit field as a JS number; offsets beyond 2^53 are not usable images. */
function u64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${what} ${v} is larger than any usable image (2^53)`);
  return Number(v);
}

/**
 * Parse and validate the header from the first cluster (or at least the
 * first 64 KiB / file length) of the image. `fileSize` bounds offsets.
 */
export function parseHeader(buf: Buffer, fileSize: number): Qcow2Header {
  if (buf.length < V2_HEADER_LENGTH || buf.readUInt32BE(0) !== QCOW2_MAGIC) throw corrupt('not a qcow2 image (bad magic)');
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw unsupported(`unsupported qcow2 version ${version}`);
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(buf, 8, 'backing_file_offset'),
    backingFileSize: buf.readUInt32BE(16),
    clusterBits: buf.readUInt32BE(20),
    size: u64(buf, 24, 'size'),
    cryptMethod: buf.readUInt32BE(32),
    l1Size: buf.readUInt32BE(36),
    l1TableOffset: u64(buf, 40, 'l1_table_offset'),
    refcountTableOffset: u64(buf, 48, 'refcount_table_offset'),
    refcountTableClusters: buf.readUInt32BE(56),
    nbSnapshots: buf.readUInt32BE(60),
    snapshotsOffset: u64(buf, 64, 'snapshots_offset'),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 'zlib',
    extensions: [],
    featureNames: new Map(),
  };
  if (version === 3) {
    if (buf.length < 104) throw corrupt('v3 header truncated');
    h.incompatible = buf.readBigUInt64BE(72);
    h.compatible = buf.readBigUInt64BE(80);
    h.autoclear = buf.readBigUInt64BE(88);
    h.refcountOrder = buf.readUInt32BE(96);
    h.headerLength = buf.readUInt32BE(100);
    if (h.headerLength < 104 || h.headerLength % 8 !== 0) throw corrupt(`invalid header_length ${h.headerLength}`);
    if (h.headerLength > buf.length) throw corrupt('header_length exceeds the first cluster');
    if (h.headerLength > 104) {
      const ct = buf.readUInt8(104);
      if (ct === 0) h.compressionType = 'zlib';
      else if (ct === 1) h.compressionType = 'zstd';
      else throw unsupported(`unknown compression type ${ct}`);
    }
  }
  const cs = 2 ** h.clusterBits;
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    throw unsupported(`cluster size 2^${h.clusterBits} outside 512 B .. 2 MiB`);
  }
  if (h.refcountOrder > 6) throw corrupt(`refcount_order ${h.refcountOrder} exceeds 6`);
  parseExtensions(buf, h, cs);
  validateFeatures(h);
  if (h.cryptMethod > 2) throw unsupported(`unknown crypt_method ${h.cryptMethod}`); // 1 and 2: encryption.ts
  for (const [name, off] of [
    ['l1_table_offset', h.l1TableOffset],
    ['refcount_table_offset', h.refcountTableOffset],
    ['snapshots_offset', h.snapshotsOffset],
  ] as const) {
    if (off % cs !== 0) throw corrupt(`${name} ${off} is not cluster aligned`);
  }
  if (h.refcountTableOffset === 0 || h.refcountTableClusters === 0) throw corrupt('image has no refcount table');
  if (h.refcountTableOffset >= fileSize) {
    throw corrupt(`refcount_table_offset 0x${h.refcountTableOffset.toString(16)} lies beyond the end of the file (${fileSize} bytes)`);
  }
  if (h.refcountTableClusters * cs > MAX_REFTABLE_BYTES) {
    throw corrupt(`refcount_table_clusters ${h.refcountTableClusters} exceeds the ${MAX_REFTABLE_BYTES >> 20} MiB limit`);
  }
  if (h.l1Size * 8 > MAX_L1_BYTES) throw corrupt(`l1_size ${h.l1Size} exceeds the ${MAX_L1_BYTES >> 20} MiB limit`);
  if (h.l1Size > 0 && h.l1TableOffset + h.l1Size * 8 > fileSize) {
    throw corrupt(`L1 table (l1_table_offset 0x${h.l1TableOffset.toString(16)}, l1_size ${h.l1Size}) runs past the end of the file (${fileSize} bytes)`);
  }
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw corrupt(`nb_snapshots ${h.nbSnapshots} exceeds the limit of ${MAX_SNAPSHOTS}`);
  if (h.nbSnapshots > 0 && h.snapshotsOffset >= fileSize) {
    throw corrupt(`snapshots_offset 0x${h.snapshotsOffset.toString(16)} lies beyond the end of the file (${fileSize} bytes)`);
  }
  const l2Entries = cs / 8;
  const neededL1 = Math.ceil(h.size / (cs * l2Entries));
  if (h.l1Size < neededL1) throw corrupt(`l1_size ${h.l1Size} too small for virtual size ${h.size}`);
  if (h.l1Size > 0 && h.l1TableOffset === 0) throw corrupt('l1_table_offset is 0');
  if (h.nbSnapshots > 0 && h.snapshotsOffset === 0) throw corrupt('snapshots_offset is 0');
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > 1023 || h.backingFileOffset + h.backingFileSize > buf.length) {
      throw corrupt(`backing_file_offset ${h.backingFileOffset} / backing_file_size ${h.backingFileSize} do not fit in the first cluster`);
    }
    h.backingFile = buf.toString('utf8', h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
    if (h.backingFile.includes('\0')) throw corrupt('backing file name contains a NUL byte');
  }
  return h;
}

function parseExtensions(buf: Buffer, h: Qcow2Header, cs: number): void {
  let at = h.headerLength;
  const end = Math.min(buf.length, cs);
  for (;;) {
    if (at + 8 > end) throw corrupt('header extensions run past the first cluster');
    const type = buf.readUInt32BE(at);
    const len = buf.readUInt32BE(at + 4);
    if (type === EXT_END) return;
    if (at + 8 + len > end) throw corrupt(`header extension 0x${type.toString(16)} runs past the first cluster`);
    const data = Buffer.from(buf.subarray(at + 8, at + 8 + len));
    h.extensions.push({ type, data });
    if (type === EXT_BACKING_FORMAT) h.backingFormat = data.toString('utf8');
    if (type === EXT_FEATURE_TABLE) {
      for (let i = 0; i + 48 <= len; i += 48) {
        const name = data.toString('utf8', i + 2, i + 48).replace(/\0.*$/s, '');
        h.featureNames.set(`${data[i]}:${data[i + 1]}`, name);
      }
    }
    at += 8 + Math.ceil(len / 8) * 8;
  }
}

function featureName(h: Qcow2Header, bit: number): string {
  return h.featureNames.get(`0:${bit}`) ?? `unknown incompatible feature bit ${bit}`;
}

function validateFeatures(h: Qcow2Header): void {
  const unknown = h.incompatible & ~KNOWN_INCOMPAT;
  if (unknown !== 0n) {
    const names: string[] = [];
    for (let bit = 0; bit < 64; bit++) if (unknown & (1n << BigInt(bit))) names.push(featureName(h, bit));
    throw unsupported(`image uses unsupported incompatible features: ${names.join(', ')}`);
  }
  if (h.incompatible & INCOMPAT_EXTERNAL_DATA) throw unsupported('external data files are not supported');
  if (h.incompatible & INCOMPAT_EXTENDED_L2) throw unsupported('extended L2 entries (subclusters) are not supported');
  if ((h.incompatible & INCOMPAT_COMPRESSION_TYPE) !== 0n && h.compressionType === 'zlib') {
    throw corrupt('compression type bit set but compression_type is zlib');
  }
  if ((h.incompatible & INCOMPAT_COMPRESSION_TYPE) === 0n && h.compressionType !== 'zlib') {
    throw corrupt('non-zlib compression_type without the compression type feature bit');
  }
}

/** Names for the feature table extension we write at create time. */
const FEATURE_TABLE: ReadonlyArray<[number, number, string]> = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

export function featureTableExtension(): HeaderExtension {
  const data = Buffer.alloc(FEATURE_TABLE.length * 48);
  FEATURE_TABLE.forEach(([type, bit, name], i) => {
    data[i * 48] = type;
    data[i * 48 + 1] = bit;
    data.write(name, i * 48 + 2, 46, 'utf8');
  });
  return { type: EXT_FEATURE_TABLE, data };
}

/**
 * Serialize a whole first cluster: header, extensions, then the backing
 * file name right after them (where qcow2.txt says it belongs). Throws if
 * it does not fit in one cluster.
 */
export function serializeHeader(h: Qcow2Header, backingFile?: string): Buffer {
  const cs = 2 ** h.clusterBits;
  const buf = Buffer.alloc(cs);
  buf.writeUInt32BE(QCOW2_MAGIC, 0);
  buf.writeUInt32BE(h.version, 4);
  buf.writeUInt32BE(h.clusterBits, 20);
  buf.writeBigUInt64BE(BigInt(h.size), 24);
  buf.writeUInt32BE(h.cryptMethod, 32);
  buf.writeUInt32BE(h.l1Size, 36);
  buf.writeBigUInt64BE(BigInt(h.l1TableOffset), 40);
  buf.writeBigUInt64BE(BigInt(h.refcountTableOffset), 48);
  buf.writeUInt32BE(h.refcountTableClusters, 56);
  buf.writeUInt32BE(h.nbSnapshots, 60);
  buf.writeBigUInt64BE(BigInt(h.snapshotsOffset), 64);
  let at = V2_HEADER_LENGTH;
  if (h.version === 3) {
    buf.writeBigUInt64BE(h.incompatible, 72);
    buf.writeBigUInt64BE(h.compatible, 80);
    buf.writeBigUInt64BE(h.autoclear, 88);
    buf.writeUInt32BE(h.refcountOrder, 96);
    buf.writeUInt32BE(h.headerLength, 100);
    if (h.headerLength > 104) buf.writeUInt8(h.compressionType === 'zstd' ? 1 : 0, 104);
    at = h.headerLength;
  }
  for (const ext of h.extensions) {
    const padded = Math.ceil(ext.data.length / 8) * 8;
    if (at + 8 + padded + 8 > cs) throw new StorageError('EINVAL', 'qcow2: header extensions do not fit in one cluster');
    buf.writeUInt32BE(ext.type, at);
    buf.writeUInt32BE(ext.data.length, at + 4);
    ext.data.copy(buf, at + 8);
    at += 8 + padded;
  }
  if (at + 8 > cs) throw new StorageError('EINVAL', 'qcow2: header does not fit in one cluster');
  at += 8; // end-of-extensions marker (already zero)
  if (backingFile !== undefined) {
    const name = Buffer.from(backingFile, 'utf8');
    if (name.length > 1023 || at + name.length > cs) throw new StorageError('EINVAL', 'qcow2: backing file name too long for the header cluster');
    name.copy(buf, at);
    buf.writeBigUInt64BE(BigInt(at), 8);
    buf.writeUInt32BE(name.length, 16);
  }
  return buf;
}
