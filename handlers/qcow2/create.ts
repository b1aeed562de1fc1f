/**
 * New images: header cluster, refcount table, refcount blocks, L1 table,
 * laid out contiguously and all counted, written with one pwrite each and
 * an fdatasync, so a fresh image passes `qemu-img check` with no leaks.
 */
import { type FileOpener, openerOf } from '../../src/backstore/confine.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import { StorageError } from '../../src/backstore/errors.js';
import { writeFull } from './file-io.js';
import { checkEncryptable, type EncryptOptions, encryptionClusters, encryptionExtension, writeEncryptionHeader } from './encryption-create.js';
import {
  featureTableExtension,
  EXT_BACKING_FORMAT,
  type HeaderExtension,
  INCOMPAT_COMPRESSION_TYPE,
  MAX_CLUSTER_BITS,
  MIN_CLUSTER_BITS,
  type Qcow2Header,
  serializeHeader,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from './format.js';

export interface CreateOptions {
  /** Virtual size in bytes (multiple of 512). */
  size: number;
  /** Power of two, 512 B .. 2 MiB; default 64 KiB. */
  clusterSize?: number;
  /** Backing file, stored as given (relative names resolve against the image's directory). */
  backing?: string;
  backingFormat?: 'qcow2' | 'raw';
  version?: 2 | 3;
  /** LUKS encryption (QEMU's encrypt.format=luks), see encryption-create.ts. */
  encrypt?: EncryptOptions;
  /**
   * The image's compression_type (what compressed clusters use). zstd needs
   * v3 (the header field and incompatible bit 3); zlib is the default.
   */
  compressionType?: 'zlib' | 'zstd';
  /** Opens the new image (and checks the backing file) within the caller's allowed directories; default unconfined. */
  files?: FileOpener;
}

const REFCOUNT_ORDER = 4; // 16-bit refcounts, QEMU's default (and the only choice for v2)

export async function createImage(path: string, opts: CreateOptions): Promise<void> {
  const clusterSize = opts.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new StorageError('EINVAL', `qcow2: cluster size ${clusterSize} must be a power of two from 512 B to 2 MiB`);
  }
  if (!Number.isSafeInteger(opts.size) || opts.size < 0 || opts.size % 512 !== 0) {
    throw new StorageError('EINVAL', `qcow2: size ${opts.size} must be a multiple of 512`);
  }
  const version = opts.version ?? 3;
  const compressionType = opts.compressionType ?? 'zlib';
  if (compressionType !== 'zlib' && compressionType !== 'zstd') {
    throw new StorageError('EINVAL', `qcow2: compression type ${String(compressionType)}: expected zlib or zstd`);
  }
  if (compressionType === 'zstd' && version !== 3) throw new StorageError('EINVAL', 'qcow2: zstd compression needs a version 3 image (compat 3)');
  if (opts.encrypt) checkEncryptable(version);
  if (opts.encrypt && opts.compressionType !== undefined) {
    throw new StorageError('EINVAL', 'qcow2: compression and encryption do not mix (QEMU refuses compression on encrypted images)');
  }
  const files = openerOf({ files: opts.files });
  if (opts.backing) {
    const base = isAbsolute(opts.backing) ? opts.backing : resolve(dirname(path), opts.backing);
    await files.canonicalPath(base).catch((err) => {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `cannot be opened: ${(err as Error).message}`;
      throw new StorageError('EINVAL', `qcow2: backing file ${base} ${why}`, { cause: err });
    });
  }
  const cs = clusterSize;
  const l1Size = Math.ceil(opts.size / (cs * (cs / 8)));
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const cryptClusters = opts.encrypt ? encryptionClusters(cs) : 0;
  const perBlock = (cs * 8) / 16;
  // Solve for the refcount metadata that also counts itself.
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters + cryptClusters;
    const b = Math.ceil(total / perBlock);
    const t = Math.ceil((b * 8) / cs);
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  const tableAt = 1;
  const blocksAt = tableAt + tableClusters;
  const l1At = blocksAt + blocks;
  const cryptAt = l1At + l1Clusters;
  const total = cryptAt + cryptClusters;

  const extensions: HeaderExtension[] = [];
  if (opts.backing && opts.backingFormat) extensions.push({ type: EXT_BACKING_FORMAT, data: Buffer.from(opts.backingFormat) });
  if (opts.encrypt) extensions.push(encryptionExtension(cryptAt * cs));
  const header: Qcow2Header = {
    version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size: opts.size,
    cryptMethod: opts.encrypt ? 2 : 0,
    l1Size,
    l1TableOffset: l1At * cs,
    refcountTableOffset: tableAt * cs,
    refcountTableClusters: tableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatible: compressionType === 'zstd' ? INCOMPAT_COMPRESSION_TYPE : 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: REFCOUNT_ORDER,
    headerLength: version === 3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH,
    compressionType,
    extensions,
    featureNames: new Map(),
  };
  let first: Buffer;
  try {
    // The feature name table is a courtesy; drop it when a small cluster has no room.
    first = serializeHeader(version === 3 ? { ...header, extensions: [...extensions, featureTableExtension()] } : header, opts.backing);
  } catch {
    first = serializeHeader(header, opts.backing);
  }
  const meta = Buffer.alloc((total - 1) * cs);
  for (let b = 0; b < blocks; b++) meta.writeBigUInt64BE(BigInt((blocksAt + b) * cs), (b * 8));
  const blocksStart = (blocksAt - 1) * cs;
  for (let c = 0; c < total; c++) meta.writeUInt16BE(1, blocksStart + c * 2);
  // 0666 & umask, as `qemu-img create`.
  const fh = await files.openHandle(path, { create: true, mode: 0o666 });
  try {
    await writeFull(fh, meta, cs);
    if (opts.encrypt) await writeEncryptionHeader(fh, cryptAt * cs, opts.encrypt);
    await writeFull(fh, first, 0);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
