/**
 * Typed view of the C++ addon (native/). The addon is mechanism only: it maps
 * memory, polls file descriptors inside libuv, does ordered loads/stores and
 * the syscalls Node lacks. All policy and all TCMU/SCSI knowledge lives in JS.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A mapped region plus the fd pair that signals it (uio: one fd for both). */
export interface NativeMapping {
  /** External ArrayBuffer over the whole mapping; no copy. Detached on close(). */
  readonly buffer: ArrayBuffer;
  readonly size: number;
  /** 32-bit load with acquire ordering at byte offset `off` (4-aligned). */
  loadAcquire32(off: number): number;
  /** 32-bit store with release ordering at byte offset `off` (4-aligned). */
  storeRelease32(off: number, value: number): void;
  /** Signal the other side: uio write(fd, 4 bytes); simulated: write to the kick fd. */
  kick(): void;
  /**
   * Start watching the notify fd inside the event loop (uv_poll, no thread).
   * Each readable event is acknowledged (the uio 4-byte counter read, or the
   * pipe drained) before `onEvent` runs. `onError(err)` on poll/read failure
   * (EIO after the device was removed); a failed read also stops the watch.
   * `ack` (informational): uio = the interrupt counter value; shared = the
   * number of bytes drained (4 per kick). Throws EBUSY if already watching.
   */
  watch(onEvent: (ack: number) => void, onError: (err: Error & { code?: string }) => void): void;
  /** Stop watching (idempotent). */
  unwatch(): void;
  /**
   * Unwatch, munmap, close fds (idempotent). Also runs at process exit.
   * `retire`: instead of unmapping, put private anonymous memory at the same
   * addresses for good, for a close while a library may still read or
   * write the data area (its calls did not finish); the device's pages are
   * let go either way.
   */
  close(retire?: boolean): void;
  /**
   * The ring's completion side, shared with threads that complete commands
   * themselves (native/ring_completer.h, src/tcmu/completion-state.ts):
   * `state` is the block of words both sides update under its lock,
   * `handle` what an addon takes to complete through it (NativeRbd's
   * readv/writev). Once per mapping; after close() no completion touches
   * the ring. Throws EPROTO when the mailbox describes an impossible ring.
   * `timed` (default true): stamp each completion made elsewhere with the
   * time (doneAt), for latency metrics; false leaves doneAt 0.
   */
  completion(maxInFlight: number, pendingCapacity: number, timed?: boolean): { state: ArrayBuffer; handle: RingCompletionHandle };
}

/** An opaque native handle through which other threads complete a ring's commands. */
export interface RingCompletionHandle {
  readonly __ringCompletion: unique symbol;
}

/**
 * A minimal io_uring (raw syscalls): positional vectored reads/writes whose
 * page-cache hits complete inside submit() with no thread hand-off; misses
 * and buffered writes the filesystem cannot do without blocking go to the
 * kernel's own workers. Mechanism only: the caller owns tags, the in-flight
 * limit (<= sqEntries, so the completion queue never overflows), short
 * transfers and error mapping. Buffers must stay alive until their
 * completion is reaped.
 */
export interface NativeIoRing {
  /** Submission queue size (the kernel may round the requested entries up). */
  readonly sqEntries: number;
  /** Completion queue size (2 x sqEntries). */
  readonly cqEntries: number;
  /**
   * Queue a readv/writev of `buffers` at `position` of `fd`; `tag` (u32,
   * < 2^31) comes back with its completion. False when the submission queue
   * is full (submit first). The iovec array is copied; the memory is not.
   */
  prepReadv(fd: number, buffers: readonly ArrayBufferView[], position: number, tag: number): boolean;
  prepWritev(fd: number, buffers: readonly ArrayBufferView[], position: number, tag: number): boolean;
  /**
   * Name an ArrayBuffer for batch records (held weakly; unregister when it
   * is collected). Returns its id.
   */
  registerBuffer(buffer: ArrayBuffer): number;
  unregisterBuffer(id: number): void;
  /**
   * The hot path in one call: prepare `ops` records from `stage` (per
   * record: kind 0 read / 1 write, fd, position, tag, iovec count, then per
   * iovec: buffer id, byte offset, length), submit everything prepared
   * (these and any prepReadv/prepWritev entries), and reap. out[0] =
   * completions written as [tag, result] pairs from out[2]; out[1] = entries
   * the kernel did not take yet (EAGAIN/EBUSY: run again later). A record
   * whose memory is not inside its registered buffer completes with -EFAULT.
   * `out` must hold 2 + 2 x ops int32s at least.
   */
  run(stage: Float64Array, ops: number, out: Int32Array): void;
  /**
   * Register the Float64Array tryNow() and writeNow() read their record
   * from, and the one writeNow() reports its timing in (both held until
   * replaced or close; register again after allocating a bigger stage).
   */
  setNowStage(stage: Float64Array, clock?: Float64Array): void;
  /**
   * Do the record in the registered stage (layout as in run(); its tag is
   * ignored) right now with preadv2/pwritev2(RWF_NOWAIT): returns the bytes
   * moved or -errno; -EAGAIN when the kernel would have to wait (page-cache
   * miss), -EOPNOTSUPP when the file cannot do non-blocking I/O, -EFAULT
   * for memory outside its registered buffer. Throws on a malformed record
   * or when no stage is registered.
   */
  tryNow(): number;
  /**
   * Do the staged record, which must be a write, right now with a plain
   * blocking pwritev2: returns the bytes written or -errno, and puts
   * [start, duration] in ms of CLOCK_MONOTONIC_COARSE (monotonicCoarseMs)
   * into the registered clock array. Throws when no clock array is
   * registered or the record is not a write.
   */
  writeNow(): number;
  /** io_uring_enter for every prepared entry; returns how many the kernel took (0 on EAGAIN/EBUSY). */
  submit(): number;
  /** Move up to out.length/2 completions into `out` as [tag, result] pairs (result: bytes or -errno). */
  reap(out: Int32Array): number;
  /** Poll the ring fd in the event loop: onEvent() whenever completions are waiting. EBUSY if already watching. */
  watch(onEvent: () => void, onError: (err: Error & { code?: string }) => void): void;
  unwatch(): void;
  /** Whether the watch keeps the event loop alive (ref it while operations are in flight). */
  ref(keepAlive: boolean): void;
  /** Unwatch, unmap, close the ring fd (the kernel cancels or finishes what is in flight). Idempotent. */
  close(): void;
}

export interface NativeBinding {
  /** Open /dev/uioN O_RDWR|O_CLOEXEC and mmap `size` bytes of map 0 (EBUSY if already open). */
  openUio(devPath: string, size: number): NativeMapping;
  /**
   * Map a regular file (e.g. in /dev/shm) of `size` bytes; `notifyFd` is
   * polled for events, `kickFd` is written by kick(). Used by the simulator
   * on both sides of a socketpair. The mapping takes ownership of both fds
   * (close() closes them; once if they are equal).
   */
  openShared(path: string, size: number, notifyFd: number, kickFd: number): NativeMapping;
  /**
   * What an addon does with a RingCompletionHandle (native/ring_completion.h):
   * complete command `cmdId` in engine slot `slot` GOOD in the ring, on the
   * calling thread (1: done, 0: left to the event loop). For tests of the
   * engine's side without librbd.
   */
  ringCompleteGood(handle: RingCompletionHandle, slot: number, cmdId: number): number;
  /** The same on a libuv pool thread: another thread than the event loop's, as librbd's. */
  ringCompleteGoodOnPool(handle: RingCompletionHandle, slot: number, cmdId: number, cb: (err: Error | null, done: number) => void): void;
  /** socketpair(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC): [a, b]. */
  socketPair(): [number, number];
  /** fallocate(2); throws an Error with errno `code` (EOPNOTSUPP when the fs lacks the mode). */
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;
  /**
   * io_uring_setup(entries, CLAMP) and map its rings. Throws an Error with
   * errno `code`: ENOSYS/EPERM where io_uring is missing or forbidden
   * (seccomp, kernel.io_uring_disabled), ENOTSUP on kernels older than 5.5.
   */
  ioRingCreate(entries: number): NativeIoRing;
  /**
   * CLOCK_MONOTONIC_COARSE in ms: one tick's resolution (1-10 ms), never a
   * system call (the vDSO answers it even where CLOCK_MONOTONIC cannot).
   */
  monotonicCoarseMs(): number;
  /**
   * memmove `length` bytes from `source` at `sourceOffset` to `target` at
   * `targetOffset` (byte offsets into the views); RangeError outside either
   * view. Allocates nothing, where Buffer.prototype.copy makes a view of
   * every partial source.
   */
  copyBytes(target: ArrayBufferView, targetOffset: number, source: ArrayBufferView, sourceOffset: number, length: number): void;

  // Generic netlink (mechanism only: message encoding/decoding is in JS).
  // Errors are thrown as Error with `code` = errno name, `errno` = -errno.
  /**
   * socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC|SOCK_NONBLOCK, NETLINK_GENERIC),
   * bound (kernel-assigned port id), 16 MiB receive buffer (SO_RCVBUFFORCE,
   * else SO_RCVBUF capped by rmem_max), NETLINK_NO_ENOBUFS. Returns the fd.
   */
  netlinkOpen(): number;
  /** The socket's port id (nl_pid) the kernel assigned, for nlmsg_pid if wanted. */
  netlinkPortId(fd: number): number;
  /** Join a multicast group (NETLINK_ADD_MEMBERSHIP) by numeric id. */
  netlinkJoin(fd: number, groupId: number): void;
  /** Send one complete netlink message (or batch) to the kernel (port 0). EAGAIN is thrown. */
  netlinkSend(fd: number, message: Uint8Array): void;
  /**
   * Watch the socket in the event loop; every datagram is received and
   * handed over as its own Buffer (a copy). EBUSY if already watched.
   */
  netlinkWatch(fd: number, onDatagram: (datagram: Buffer) => void, onError: (err: Error & { code?: string }) => void): void;
  /** Stop watching (if watched) and close the fd. */
  netlinkClose(fd: number): void;

  // Confined opens (native/open_beneath.cc); the policy is src/backstore/confine.ts.
  /**
   * openat2(dirfd, path, {flags | O_CLOEXEC, mode, resolve}); returns the fd.
   * Where the kernel lacks openat2 (ENOSYS), or `forceFallback`, a
   * RESOLVE_BENEATH open is done as O_PATH open + /proc/self/fd canonical
   * path check + reopen (O_CREAT: parent checked, leaf created O_NOFOLLOW);
   * the fallback refuses resolve flags it cannot honour with ENOSYS. An
   * escape fails with `code` EXDEV (or ELOOP for a refused magic link).
   * With `callback` the open runs on the libuv thread pool (a path walk may
   * wait on a slow filesystem) and calls back (err, fd) instead.
   */
  openBeneath(dirfd: number, path: string, flags: number, mode: number, resolve: number, forceFallback?: boolean): number;
  openBeneath(
    dirfd: number,
    path: string,
    flags: number,
    mode: number,
    resolve: number,
    forceFallback: boolean,
    callback: (err: (Error & { code?: string }) | null, fd?: number) => void,
  ): void;
  readonly O_PATH: number;
  readonly AT_FDCWD: number;
  readonly RESOLVE_BENEATH: number;
  readonly RESOLVE_NO_MAGICLINKS: number;
  readonly RESOLVE_NO_SYMLINKS: number;
  readonly RESOLVE_NO_XDEV: number;
  /** SO_PEERCRED of a connected unix socket: who connected (as of connect()). Throws an errno Error. */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  /**
   * Send one datagram to a unix datagram socket (a path, or "@name" for the
   * abstract namespace) from a fresh socket, without blocking: EAGAIN when
   * the receiver's queue is full. Throws an errno Error. (systemd notify.)
   */
  unixDatagramSend(path: string, data: Uint8Array): void;

  // AES-XTS for the crypt layer (native/xts.cc), OpenSSL inside node.
  /** Key the AES contexts once with a 32- or 64-byte XTS key; the handle frees itself when collected. */
  xtsCreate(key: Buffer): NativeXtsHandle;
  /** Every sector of `data` (plain64 IVs firstIv, firstIv + ivStep, ...), in place or into `out` (same length, not overlapping). */
  xtsCrypt(handle: NativeXtsHandle, encrypt: boolean, data: Buffer, sectorSize: number, firstIv: number, ivStep: number, out?: Buffer): void;
  /** Free the contexts now (OpenSSL wipes the key schedule); later xtsCrypt calls throw EBADF. */
  xtsDestroy(handle: NativeXtsHandle): void;

  // qcow2 compressed clusters (native/cluster_codec.cc): present only when
  // the addon was built with zstd.h and zlib.h (binding.gyp).
  /**
   * On libuv's thread pool, inflate `src` (type 0: raw deflate with QEMU's
   * 4 KiB window; 1: zstd frames) into exactly `dst` (one cluster), then
   * callback(null, bytes) or callback(why) when the data is corrupt or does
   * not fill the cluster exactly. Neither buffer may change until then.
   */
  inflateCluster?(type: 0 | 1, src: Uint8Array, dst: Uint8Array, callback: (error: string | null, written: number) => void): void;
  /**
   * On libuv's thread pool, compress one cluster `src` into `dst` with
   * QEMU's parameters (0: raw deflate, 4 KiB window, default level; 1: one
   * zstd frame at level 3), then callback(null, n): n > 0 payload bytes at
   * the start of dst, 0 = not smaller than the cluster (store it raw), -1 =
   * all zeros; callback(why) if the codec failed.
   */
  deflateCluster?(type: 0 | 1, src: Uint8Array, dst: Uint8Array, callback: (error: string | null, result: number) => void): void;
}

/** Opaque handle of native XTS contexts. */
export type NativeXtsHandle = { readonly __brand: 'NativeXtsHandle' };

function findPackageRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`tcmu-ts: cannot find package.json above ${start}`);
    dir = parent;
  }
  return dir;
}

let cached: NativeBinding | undefined;

/** Load build/Release/tcmu_native.node once (works from src/ under vitest and from dist/). */
export function native(): NativeBinding {
  if (cached) return cached;
  const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  const path = join(root, 'build', 'Release', 'tcmu_native.node');
  if (!existsSync(path)) {
    throw new Error(`tcmu-ts: native addon missing at ${path}; run "npm install" (or "npm run build:native")`);
  }
  cached = createRequire(import.meta.url)(path) as NativeBinding;
  return cached;
}

// ---- librbd/librados (native/rbd.cc): a separate addon, tcmu_rbd.node, built
// only where librbd's headers exist, so tcmu_native loads without Ceph.

/** Opaque handles of the rbd addon. */
export type NativeRbdSession = { readonly __brand: 'NativeRbdSession' };
export type NativeRbdImage = { readonly __brand: 'NativeRbdImage' };

/**
 * Mechanism only. Blocking calls (connect, open, close, shutdown) run on
 * libuv's pool and answer through a callback with an errno Error naming the
 * failing call. Data-path calls return 0 or -errno at once; their result
 * arrives later, with the caller's `tag`, in the batch given to the one
 * handler set by `setHandler` (one per process; no thread per image): a
 * Float64Array of [tag, result, extra] triples, result being librbd's
 * (bytes or 0, or -errno) and extra the mismatch offset of a
 * compare-and-write. Buffers must stay alive until their tag completes.
 */
export interface NativeRbd {
  /** -EILSEQ is a compare-and-write's miscompare. */
  readonly EILSEQ: number;
  /** `batch` holds `count` triples from its start; it is reused by the next call: read it before returning. */
  setHandler(handler: (batch: Float64Array, count: number) => void): void;
  /** librbd's [major, minor, extra] (1.16.0 in Ceph 16). */
  version(): [number, number, number];
  /**
   * rados_create(id) + conf file ('' = Ceph's default search) + rados_conf_set pairs + connect + ioctx on `pool`.
   * With `batchThreads`, the threads librados and librbd start for this session and its images run under SCHED_BATCH.
   */
  connect(conf: string, id: string, options: string[], pool: string, batchThreads: boolean, cb: (err: Error | null, session?: NativeRbdSession) => void): void;
  /** Drop the session's hold on the connection (it ends once no open image holds it). */
  shutdown(session: NativeRbdSession, cb: (err: Error | null) => void): void;
  /** rbd_open / rbd_open_read_only; snap '' = the head. */
  open(session: NativeRbdSession, image: string, snap: string, readOnly: boolean, cb: (err: Error | null, image?: NativeRbdImage) => void): void;
  /** rbd_close (finishes in-flight I/O and flushes librbd's cache). */
  close(image: NativeRbdImage, cb: (err: Error | null) => void): void;
  size(image: NativeRbdImage): number;
  /**
   * With `ring` (and the command's engine slot and cmd_id), a read that
   * returns every byte, or a write that succeeds, completes that command
   * GOOD in the ring on librbd's thread when it can, or hands it to the
   * ring batch running at that moment (RingCompletion,
   * native/ring_completion.h): its record then arrives late (with the next
   * batch, not waking the event loop) with extra = COMPLETED_IN_RING, and
   * nothing else must complete the command. Otherwise its record is the
   * usual one.
   */
  readv(image: NativeRbdImage, buffers: readonly ArrayBufferView[], offset: number, tag: number, ring?: RingCompletionHandle, slot?: number, cmdId?: number): number;
  writev(image: NativeRbdImage, buffers: readonly ArrayBufferView[], offset: number, tag: number, ring?: RingCompletionHandle, slot?: number, cmdId?: number): number;
  flush(image: NativeRbdImage, tag: number): number;
  discard(image: NativeRbdImage, offset: number, length: number, tag: number): number;
  writeZeroes(image: NativeRbdImage, offset: number, length: number, tag: number): number;
  /** rbd_aio_compare_and_write: atomic on the OSDs; -EILSEQ with extra = mismatch offset on a miscompare. */
  compareAndWrite(image: NativeRbdImage, offset: number, compare: Buffer, data: Buffer, tag: number): number;
  /** rbd_update_watch: every header change posts [-1 - tag, 0, 0]. Returns 0 or -errno. */
  watch(image: NativeRbdImage, tag: number): number;
  // ---- native/rbd_admin.cc (all on the pool but instanceAddress)
  /** rados_getaddrs: this client's address, as lock owners and the blocklist name it. */
  instanceAddress(session: NativeRbdSession): string;
  /** rbd_lock_get_owners: the exclusive lock's owner addresses ([] when unlocked). */
  lockOwners(image: NativeRbdImage, cb: (err: Error | null, owners?: string[]) => void): void;
  /** rbd_lock_break(EXCLUSIVE, owner): librbd blocklists the owner, then removes its lock. */
  lockBreak(image: NativeRbdImage, owner: string, cb: (err: Error | null) => void): void;
  snapCreate(image: NativeRbdImage, name: string, cb: (err: Error | null) => void): void;
  snapRemove(image: NativeRbdImage, name: string, cb: (err: Error | null) => void): void;
  snapRollback(image: NativeRbdImage, name: string, cb: (err: Error | null) => void): void;
  snapList(image: NativeRbdImage, cb: (err: Error | null, snaps?: NativeRbdSnap[]) => void): void;
  /**
   * rbd_diff_iterate2 (whole objects, parent included): [offset, length,
   * allocated] triples in order, at most 4096; gaps are unallocated.
   */
  allocationExtents(image: NativeRbdImage, offset: number, length: number, cb: (err: Error | null, triples?: Float64Array) => void): void;
}

export interface NativeRbdSnap {
  id: number;
  name: string;
  size: number;
  /** Creation time, ms since the epoch (0 if librbd could not say). */
  timestampMs: number;
}

let rbdCached: { binding?: NativeRbd; reason?: string } | undefined;

/**
 * The rbd addon, or the reason it is unavailable (not built because librbd's
 * headers were missing at build time, or librbd.so cannot be loaded now).
 */
export function rbdBinding(): { binding: NativeRbd; reason?: undefined } | { binding?: undefined; reason: string } {
  if (!rbdCached) {
    const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
    const path = join(root, 'build', 'Release', 'tcmu_rbd.node');
    if (!existsSync(path)) {
      rbdCached = {
        reason: `tcmu-ts was built without librbd (${path} missing): install librbd-dev and librados-dev (Ceph) and rebuild the addon (npm run build:native)`,
      };
    } else {
      try {
        rbdCached = { binding: createRequire(import.meta.url)(path) as NativeRbd };
      } catch (err) {
        rbdCached = { reason: `cannot load ${path} (is librbd1 installed?): ${(err as Error).message}` };
      }
    }
  }
  return rbdCached as ReturnType<typeof rbdBinding>;
}
