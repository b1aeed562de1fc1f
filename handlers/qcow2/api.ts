/**
 * Image library behind the handler's control operations (./control.ts):
 * create, info, check, snapshots. Every function opens the image privately;
 * do not use it on an image a daemon is serving (the daemon quiesces a LUN
 * before its snapshot operations run). `files` is the opener every file
 * goes through: the daemon's confined one for a served LUN, unconfined by
 * default (the CLI, tests).
 */
import type { FileOpener } from '../../src/backstore/confine.js';
import { type CheckResult, checkConsistency } from './check.js';
import { type CreateOptions, createImage as create } from './create.js';
import { COMPAT_LAZY_REFCOUNTS, INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from './format.js';
import type { Qcow2Image } from './image.js';
import { openImage } from './open.js';
import { type EncryptionInfo, encryptionInfo } from './encryption.js';
import { type CompactOptions, type CompactResult, compactImage as compact, compressStagedClusters } from './compaction.js';
import { enableWriteCompression, writeCompression } from './compression-mode.js';
import { StorageError } from '../../src/backstore/errors.js';
import { type SpaceStats, spaceStats } from './image-stats.js';
import { type AutoCompactionStats, autoCompactionStats } from './auto-compact.js';
import { createSnapshot, deleteSnapshot, listSnapshots, revertSnapshot, type SnapshotInfo } from './snapshots.js';

export type { CheckResult, CompactOptions, CompactResult, CreateOptions, SnapshotInfo, SpaceStats };
export { createSnapshot, deleteSnapshot, listSnapshots, revertSnapshot } from './snapshots.js';
export { openImage } from './open.js';
export { Qcow2Image } from './image.js';

export interface ImageInfo {
  format: 'qcow2';
  version: 2 | 3;
  virtualSize: number;
  clusterSize: number;
  fileSize: number;
  refcountBits: number;
  compressionType: 'zlib' | 'zstd';
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts: boolean;
  dirty: boolean;
  corrupt: boolean;
  /** Logical vs allocated size, compressed clusters, compression ratio (active tree). */
  space: SpaceStats & { autoCompaction?: AutoCompactionStats };
  snapshots: SnapshotInfo[];
  /** qcow2 LUKS encryption (encryption.ts), when the image has it. */
  encryption?: EncryptionInfo;
}

export function createImage(path: string, opts: CreateOptions): Promise<void> {
  return create(path, opts);
}

/** `files`: the daemon's confined opener for a served LUN's image; the CLI leaves it unconfined. */
async function withImage<T>(path: string, readOnly: boolean, fn: (img: Qcow2Image) => Promise<T>, files?: FileOpener): Promise<T> {
  const img = await openImage(path, { readOnly, files });
  try {
    return await fn(img);
  } finally {
    await img.close();
  }
}

export function imageInfo(path: string, files?: FileOpener): Promise<ImageInfo> {
  return withImage(path, true, (img) => describeImage(img), files);
}

/**
 * What `image info` shows, of an open image: a privately opened one
 * (offline), or the one a served LUN has open (online; the space figures
 * then come from its current tables, read beside the LUN's writes).
 */
export async function describeImage(img: Qcow2Image): Promise<ImageInfo> {
  const h = img.header;
  return {
    format: 'qcow2',
    version: h.version,
    virtualSize: h.size,
    clusterSize: img.clusterSize,
    fileSize: (await img.fh.stat()).size,
    refcountBits: 2 ** h.refcountOrder,
    compressionType: h.compressionType,
    backingFile: h.backingFile,
    backingFormat: h.backingFormat,
    lazyRefcounts: (h.compatible & COMPAT_LAZY_REFCOUNTS) !== 0n,
    dirty: (h.incompatible & INCOMPAT_DIRTY) !== 0n,
    corrupt: (h.incompatible & INCOMPAT_CORRUPT) !== 0n,
    space: { ...(await spaceStats(img)), ...withAutoCompaction(img) },
    snapshots: listSnapshots(img),
    ...(img.cryptoRegion ? { encryption: await encryptionInfo(img.fh, img.cryptoRegion, img.path) } : {}),
  };
}

/** The automatic compaction's figures of a served compress= LUN (auto-compact.ts), if it has one. */
function withAutoCompaction(img: Qcow2Image): { autoCompaction?: AutoCompactionStats } {
  const a = autoCompactionStats(img);
  return a ? { autoCompaction: a } : {};
}

/**
 * Offline compaction (compaction.ts) of an image not in use: partly dead
 * compressed host clusters are emptied, free clusters punched out.
 */
export function compactImageFile(path: string, opts?: CompactOptions, files?: FileOpener): Promise<CompactResult> {
  return withImage(path, false, async (img) => {
    enableWriteCompression(img, img.header.compressionType);
    return compact(img, img.header.compressionType, opts);
  }, files);
}

/** The compaction running on an open image (one at a time per image). */
interface RunningCompaction {
  automatic: boolean;
  abort: AbortController;
  done: Promise<unknown>;
}
const compacting = new WeakMap<Qcow2Image, RunningCompaction>();

/**
 * Online compaction of the image a served LUN has open, beside its I/O:
 * each moved guest cluster is claimed as a guest write claims it, and the
 * old places are freed only after the reads that may still use them
 * (read-grace.ts). Small chunks keep a guest write to a cluster being moved
 * waiting briefly. Only a LUN that writes compressed (compress=) is
 * compacted online: moving payloads is the compressed write path, and
 * turning that on here would change how the LUN writes.
 *
 * `stagedOnly`: just compress the clusters staged by partial writes and
 * punch out their old places (compaction.ts compressStagedClusters).
 *
 * One runs at a time per image. An admin's request takes over from an
 * automatic one (auto-compact.ts), which stops between chunks with an EBUSY
 * reason; any other overlap is refused with EBUSY.
 */
export async function compactOpenImage(img: Qcow2Image, opts: CompactOptions & { automatic?: boolean; stagedOnly?: boolean } = {}): Promise<CompactResult> {
  const type = writeCompression(img);
  if (!type) {
    throw new StorageError(
      'EINVAL',
      `qcow2: ${img.path} is served without compress=, so it is not compacted online; serve it with compress=${img.header.compressionType} or compact it offline (tcmu-ts image compact PATH) with the LUN removed`,
    );
  }
  const busy = () => Object.assign(new Error(`qcow2: a compaction of ${img.path} is already running`), { code: 'EBUSY' });
  const { automatic = false, stagedOnly = false, ...rest } = opts;
  const current = compacting.get(img);
  if (current && (automatic || !current.automatic)) throw busy();
  if (current) {
    current.abort.abort(Object.assign(new Error(`qcow2: an admin's compaction of ${img.path} takes over`), { code: 'EBUSY' }));
    await current.done.catch(() => undefined);
    if (compacting.has(img)) throw busy(); // another request took over first
  }
  const abort = new AbortController();
  const signal = rest.signal ? AbortSignal.any([rest.signal, abort.signal]) : abort.signal;
  const how = { chunk: 32, recompress: 'staged' as const, ...rest, signal };
  const done = stagedOnly ? compressStagedClusters(img, type, how) : compact(img, type, how);
  const mine: RunningCompaction = { automatic, abort, done };
  compacting.set(img, mine);
  try {
    return await done;
  } finally {
    if (compacting.get(img) === mine) compacting.delete(img);
  }
}

/** Check (read-only) or repair leaks. Corruptions are reported, never "fixed" here. */
export function checkImage(path: string, opts?: { repair?: 'leaks' }, files?: FileOpener): Promise<CheckResult> {
  return withImage(path, opts?.repair === undefined, (img) => img.lock.run(() => checkConsistency(img, opts?.repair)), files);
}

export async function snapshotCreate(path: string, name: string, files?: FileOpener): Promise<SnapshotInfo> {
  return withImage(path, false, (img) => createSnapshot(img, name), files);
}

export function snapshotList(path: string, files?: FileOpener): Promise<SnapshotInfo[]> {
  return withImage(path, true, async (img) => listSnapshots(img), files);
}

export function snapshotRevert(path: string, name: string, files?: FileOpener): Promise<void> {
  return withImage(path, false, (img) => revertSnapshot(img, name), files);
}

export function snapshotDelete(path: string, name: string, files?: FileOpener): Promise<void> {
  return withImage(path, false, (img) => deleteSnapshot(img, name), files);
}
