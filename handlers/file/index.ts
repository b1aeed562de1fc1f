/**
 * The 'file' handler: `file//var/lib/lun0.img[;create=1][;extend=1]`, a
 * regular file or a block device behind a LUN, with zero-copy vectored
 * I/O, fdatasync flushes and fallocate-based discard and zeroing.
 *
 * Options:
 *   create=1  create the file (sized to the LUN) when it does not exist
 *   extend=1  grow a file smaller than the LUN (never shrinks a larger one)
 *   io=auto|uring|threads  how data moves: `uring` submits all reads and
 *             writes of a ring batch with one io_uring_enter (page-cache hits
 *             complete inline, no thread hand-off); `threads` uses libuv's
 *             thread pool (fs.readv/writev); `auto` (default) takes io_uring
 *             when the kernel allows it (TCMU_TS_IO_URING=0 turns it off
 *             process-wide), else threads. `uring` fails the open where
 *             io_uring is unavailable.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { openerOf } from '../../src/backstore/confine.js';
import { booleanOption, rejectUnknownOptions } from '../../src/backstore/options.js';
import type { Backstore, Handler, OpenContext } from '../../src/backstore/types.js';
import { openBackingFile, type BackingFile } from './backing-file.js';
import { isUnsupported, nativeFallocator, type Fallocator } from './fallocate.js';
import { ReadOnlyFileStore, WritableFileStore } from './file-store.js';
import { sharedUringIo } from '../../src/io/uring-io.js';
import { threadPoolIo, type VectorIo } from '../../src/io/vector-io.js';

export interface FileHandlerDeps {
  /** Where fallocate comes from; tests inject a failing one. Called at each open, so the addon loads lazily. */
  fallocator?: () => Fallocator | undefined;
  /** The io_uring I/O, or null where unavailable; tests inject null to exercise the fallback. */
  ringIo?: () => VectorIo | null;
}

function chooseIo(options: Readonly<Record<string, string>>, ringIo: () => VectorIo | null): VectorIo {
  const mode = options.io ?? 'auto';
  switch (mode) {
    case 'threads':
      return threadPoolIo;
    case 'auto':
      return ringIo() ?? threadPoolIo;
    case 'uring': {
      const io = ringIo();
      if (!io) throw new ConfigError('file: io=uring, but io_uring is unavailable here (kernel, seccomp or TCMU_TS_IO_URING=0); use io=threads or io=auto');
      return io;
    }
    default:
      throw new ConfigError(`file: option io="${mode}" is not one of auto, uring, threads`);
  }
}

/**
 * Thin provisioning is decided by probing at open: punch a hole one block
 * past the end of the file. That range holds no data, so the probe changes
 * nothing, yet the filesystem still has to say whether it implements
 * PUNCH_HOLE (EOPNOTSUPP if not). A zero-length probe would not work: the
 * kernel rejects len 0 with EINVAL before asking the filesystem.
 * Block devices are never thin here (punching a device means BLKDISCARD,
 * out of scope, and probing past its end only yields EINVAL).
 */
function probeThin(backing: BackingFile, blockSize: number, fallocator: Fallocator | undefined, ctx: OpenContext): boolean {
  if (!fallocator || backing.isBlockDevice) return false;
  const pastEnd = Math.ceil(backing.fileSize / blockSize) * blockSize + blockSize;
  try {
    fallocator.punchHole(backing.fd, pastEnd, blockSize);
    return true;
  } catch (err) {
    if (!isUnsupported(err)) ctx.log.warn({ err }, 'file: probing hole punching failed unexpectedly; discard disabled');
    return false;
  }
}

export function createFileHandler(deps: FileHandlerDeps = {}): Handler {
  const getFallocator = deps.fallocator ?? nativeFallocator;
  const getRingIo = deps.ringIo ?? sharedUringIo;
  return {
    name: 'file',
    description: 'regular file or block device (zero-copy io_uring or readv/writev, fdatasync, fallocate discard)',
    async open(config: string, ctx: OpenContext): Promise<Backstore> {
      rejectUnknownOptions('file', ctx.options, ['create', 'extend', 'io']);
      const create = booleanOption('file', ctx.options, 'create', false);
      const extend = booleanOption('file', ctx.options, 'extend', false);
      const io = chooseIo(ctx.options, getRingIo);
      const backing = await openBackingFile({
        path: config,
        lunSize: ctx.size,
        blockSize: ctx.blockSize,
        readOnly: ctx.readOnly,
        create,
        extend,
        files: openerOf(ctx),
      });
      if (ctx.readOnly) return new ReadOnlyFileStore(config, backing, ctx.blockSize, io);
      const fallocator = getFallocator();
      if (!fallocator) ctx.log.debug('file: no native fallocate available; discard disabled, zeroing by writes');
      const thin = probeThin(backing, ctx.blockSize, fallocator, ctx);
      return new WritableFileStore(config, backing, ctx.blockSize, io, fallocator, thin, ctx.log);
    },
  };
}

export default createFileHandler();
