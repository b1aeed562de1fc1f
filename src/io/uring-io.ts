/**
 * Vectored file I/O through one process-wide io_uring (native/io_ring.cc)
 * instead of libuv's thread pool. Under the thread pool every command costs
 * a hand-off (queue work, futex wake, worker preadv, async wake back); here
 * every read and write issued while the TCMU ring engine consumes one batch is
 * staged as plain numbers, and at the end of that microtask checkpoint ONE
 * native call prepares them all, enters the kernel once and hands back the
 * completions already there (page-cache hits), in the same event-loop turn.
 * Anything the kernel cannot do without blocking (cache misses, buffered
 * writes on most filesystems) runs on the kernel's io-wq workers and is
 * reaped when the io_uring fd becomes readable. The event loop never waits on
 * storage. Reads try the page cache first, synchronously and without
 * blocking (see read()).
 *
 * Memory is named to the addon by (registered ArrayBuffer id, offset,
 * length), not by passing Buffer objects: the per-operation N-API calls
 * (argument checks, array reads, typed-array info) were a visible share of
 * the runner's CPU per command in a guest profile. Buffers over a
 * SharedArrayBuffer take the per-operation prepReadv path instead.
 *
 * At most sqEntries operations hold a tag (so the completion queue, twice
 * as large, cannot overflow); more wait in a FIFO here. Short transfers are
 * continued like in ./vector-io.ts.
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { StorageError } from '../backstore/errors.js';
import { native, type NativeIoRing } from '../native.js';
import { iovLength, iovRemainder } from '../iov.js';
import { InlineWriteGuard } from './inline-write-guard.js';
import type { VectorIo } from './vector-io.js';

const IOV_MAX = 1024;
const EOPNOTSUPP = osConstants.errno.EOPNOTSUPP;
const READ = 0;
const WRITE = 1;
/**
 * A read on an io-wq worker (IOSQE_ASYNC), never tried inline by the
 * io_uring. Large reads (LARGE_READ_BYTES and more) take this path when the
 * page cache cannot serve them at once, or when the event loop has already
 * copied LARGE_INLINE_BUDGET bytes of large reads in this batch.
 */
const READ_OFFLOADED = 2;
/**
 * Large reads are copied out of the page cache on the event loop like small
 * ones, but at most LARGE_INLINE_BUDGET bytes of them until the next
 * microtask checkpoint, which in practice is the end of one LUN's ring
 * batch; the rest of that batch's large reads go to io-wq workers. The
 * budget, eight reads of 1 MiB (a qd8 queue at the default largest
 * transfer), bounds how long one LUN's batch holds the event loop before
 * other LUNs' batches run: about 1 ms of memcpy at 8 GB/s, as long again as
 * the kernel's copy of the same bytes to the initiator at the batch's kick.
 * Every large read used to go to a worker, which was woken on the event
 * loop's CPU and preempted it there anyway: the hop cost more than the
 * copy it moved. Same-boot A/Bs in the VM, 1 MiB sequential reads at qd8
 * (README, Performance): 1.07x, 1.11x and 1.10x the reads/s at 0.90x,
 * 0.86x and 0.82x the guest CPU per read; a 4 MiB budget, which sent part
 * of each busy batch to the workers, only 1.04x at 0.96x.
 */
const LARGE_READ_BYTES = 256 * 1024;
const LARGE_INLINE_BUDGET = 8 * 1024 * 1024;
/**
 * Microtasks hang off this settled promise rather than queueMicrotask(),
 * which builds an AsyncResource and a bound function per call (once per
 * batch here; no IOPS change measurable under TCG, but nothing to pay).
 */
const SETTLED = Promise.resolve();

/** Batch record layout (see NativeIoRing.run): 5 header slots, 3 per iovec. */
const RECORD_HEADER = 5;
const RECORD_PER_IOVEC = 3;

type Kind = typeof READ | typeof WRITE | typeof READ_OFFLOADED;

interface Pending {
  kind: Kind;
  fd: number;
  iov: readonly Buffer[];
  position: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

class Op {
  kind: Kind = READ;
  fd = -1;
  iov: readonly Buffer[] = [];
  position = 0;
  expected = 0;
  resolve: (() => void) | undefined = undefined;
  reject: ((err: unknown) => void) | undefined = undefined;
  constructor(readonly tag: number) {}
}

/** What an op does, for messages: READ and READ_OFFLOADED are both reads. */
function verb(kind: Kind): 'read' | 'write' {
  return kind === WRITE ? 'write' : 'read';
}

function errnoError(result: number, op: Op): Error {
  let code: string;
  try {
    code = getSystemErrorName(result);
  } catch {
    code = 'EIO';
  }
  const what = verb(op.kind);
  return Object.assign(new Error(`file: ${what} of ${op.expected} bytes at byte ${op.position} failed: ${code}`), {
    code,
    errno: result,
    syscall: `p${what}v`,
  });
}

/** Writes up to this size that fill whole pages are made on the event loop (UringVectorIo.write). */
const INLINE_WRITE_BYTES = 16 * 1024;
const PAGE_BYTES = 4096;

/** Highest file offset a JS number names exactly (and the batch record can carry). */
const MAX_POSITION = Number.MAX_SAFE_INTEGER;

/** Why (fd, position, length) cannot be an operation, or undefined when it can. */
export function invalidArgument(fd: number, position: number, length: number): string | undefined {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) return `on an invalid file descriptor (${fd})`;
  if (!Number.isInteger(position) || position < 0 || position > MAX_POSITION) return `at an invalid offset (${position})`;
  if (!Number.isInteger(length) || position + length > MAX_POSITION) return `of ${length} bytes at byte ${position} runs past 2^53`;
  return undefined;
}

export class UringVectorIo implements VectorIo {
  readonly kind = 'io_uring';
  private readonly ops: Op[] = [];
  private readonly freeTags: Int32Array;
  private freeCount: number;
  private readonly waiting: Pending[] = [];
  private waitingHead = 0;
  private inFlight = 0;
  /** Whether the io_uring watch currently keeps the event loop alive. */
  private refd = false;
  /** Operations prepared but not yet taken by the kernel (legacy prep, or EAGAIN from run). */
  private unsubmitted = 0;
  /** Records staged for the next run(). */
  private stage = new Float64Array(1024);
  private stageAt = 0;
  private stagedOps = 0;
  /** [count, unsubmitted, tag, result, ...] from run(). */
  private readonly runOut: Int32Array;
  private readonly bufferIds = new WeakMap<ArrayBuffer, number>();
  private readonly bufferRegistry: FinalizationRegistry<number>;
  private lastArrayBuffer: ArrayBuffer | undefined;
  private lastBufferId = -1;
  private submitScheduled = false;
  private retryScheduled = false;
  private broken: Error | undefined;
  private readonly results: Int32Array;
  /** The record readNow()/writeNow() hand to tryNow()/writeNow() (registered with the io_uring). */
  private nowStage = new Float64Array(RECORD_HEADER + RECORD_PER_IOVEC * 4);
  /** writeNow()'s [start, duration] in ms of the coarse monotonic clock (registered with the io_uring). */
  private readonly nowClock = new Float64Array(2);
  /**
   * Bytes of large reads copied on the event loop since the last microtask
   * checkpoint (see LARGE_INLINE_BUDGET); while not 0, a reset is scheduled.
   */
  private largeInlineBytes = 0;
  /** Files that refused RWF_NOWAIT (EOPNOTSUPP), by fd. */
  private readonly noNowait = new Set<number>();
  private readonly flushBound = () => {
    try {
      this.flush();
    } catch (err) {
      this.fail(err as Error); // e.g. the io_uring was closed under us: fail what is queued, never leave it hanging
    }
  };
  private readonly resetLargeInlineBound = () => {
    this.largeInlineBytes = 0;
  };
  private readonly retryBound = () => {
    this.retryScheduled = false;
    this.flush();
  };

  constructor(
    private readonly uring: NativeIoRing,
    /** When small writes may run on the event loop (tests pass a strict one). */
    readonly inlineWrites = new InlineWriteGuard(),
  ) {
    const capacity = uring.sqEntries;
    this.freeTags = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) {
      this.ops.push(new Op(i));
      this.freeTags[i] = capacity - 1 - i;
    }
    this.freeCount = capacity;
    this.results = new Int32Array(2 * uring.cqEntries);
    this.runOut = new Int32Array(2 + 2 * Math.max(capacity, uring.cqEntries));
    this.bufferRegistry = new FinalizationRegistry((id) => {
      if (!this.broken) uring.unregisterBuffer(id);
    });
    uring.watch(
      () => {
        this.reapAll();
        this.syncRef();
      },
      (err) => this.fail(err),
    );
    uring.ref(false);
    uring.setNowStage(this.nowStage, this.nowClock);
  }

  /**
   * A read first tries to finish right here (tryNow: RWF_NOWAIT): when the
   * page cache holds the data it returns synchronously, and the command
   * completes in the same TCMU ring batch without a promise, a microtask or a
   * second pass over the io_uring. Whatever the page cache cannot serve goes
   * through the io_uring. A miss costs one refused syscall. Large reads are
   * tried here only within the batch's budget (LARGE_INLINE_BUDGET).
   */
  read(fd: number, iov: readonly Buffer[], position: number): void | Promise<void> {
    const total = iovLength(iov);
    if (invalidArgument(fd, position, total) !== undefined) {
      return new Promise((resolve, reject) => this.start(READ, fd, iov, position, resolve, reject)); // rejects with EINVAL
    }
    const large = total >= LARGE_READ_BYTES;
    if (large && this.largeInlineBytes + total > LARGE_INLINE_BUDGET) {
      return new Promise((resolve, reject) => this.start(READ_OFFLOADED, fd, iov, position, resolve, reject));
    }
    const done = this.readNow(fd, iov, position, total);
    if (large && done !== 0) this.chargeLargeInline(done < 0 ? total : done);
    if (done < 0) return; // all of it
    if (done > 0) {
      iov = iovRemainder(iov, done);
      position += done;
    }
    // What the page cache did not hold: a large remainder straight to a worker (an inline try would only fail again).
    const kind = large ? READ_OFFLOADED : READ;
    return new Promise((resolve, reject) => this.start(kind, fd, iov, position, resolve, reject));
  }

  /** Count bytes of large reads copied on the event loop; the count restarts at the next microtask checkpoint. */
  private chargeLargeInline(bytes: number): void {
    if (this.largeInlineBytes === 0) SETTLED.then(this.resetLargeInlineBound);
    this.largeInlineBytes += bytes; // > 0: a large read is at least LARGE_READ_BYTES, a partial one moved some
  }

  /**
   * Small writes of whole pages are made at once, here, with a plain
   * (blocking) pwritev: buffered writes on ext4 and tmpfs (Linux 6.1) refuse
   * RWF_NOWAIT, so the io_uring would hand every one to an io-wq worker, and
   * the command would wait for that worker and for a second wake-up of the
   * event loop. Whole pages only: a partial page may have to be read from
   * the disk first. Everything else goes through the io_uring.
   */
  write(fd: number, iov: readonly Buffer[], position: number): void | Promise<void> {
    if (position % PAGE_BYTES === 0 && !this.broken) {
      const total = iovLength(iov);
      if (total <= INLINE_WRITE_BYTES && total % PAGE_BYTES === 0 && total > 0 && invalidArgument(fd, position, total) === undefined) {
        const done = this.writeNow(fd, iov, position, total);
        if (done < 0) return;
        if (done > 0) {
          iov = iovRemainder(iov, done);
          position += done;
        }
      }
    }
    return new Promise((resolve, reject) => this.start(WRITE, fd, iov, position, resolve, reject));
  }

  /**
   * One blocking pwritev (the addon's writeNow, which also times it): bytes
   * written, -1 when that was all of them, 0 when not tried or failed (the
   * io_uring path then does it, or reports the error). The guard keeps
   * writes that the kernel makes wait off the event loop
   * (inline-write-guard.ts).
   */
  private writeNow(fd: number, iov: readonly Buffer[], position: number, total: number): number {
    const guard = this.inlineWrites;
    if (guard.pausing && !guard.allows(native().monotonicCoarseMs())) return 0;
    if (iov.length > IOV_MAX || !this.stageNow(WRITE, fd, position, iov)) return 0;
    const n = this.uring.writeNow();
    if (n < 0) return 0;
    guard.record(this.nowClock[0]!, this.nowClock[1]!);
    return n === total ? -1 : n;
  }

  /**
   * Bytes a non-blocking read at once transferred; -1 when that was all of
   * them. 0 also when it could not be tried (io_uring broken, SharedArrayBuffer
   * memory, more than IOV_MAX iovecs, a file that refuses RWF_NOWAIT); any
   * error is left for the io_uring path to report.
   */
  private readNow(fd: number, iov: readonly Buffer[], position: number, total: number): number {
    const count = iov.length;
    if (this.broken || count > IOV_MAX || this.noNowait.has(fd)) return 0;
    if (total === 0) return -1;
    if (!this.stageNow(READ, fd, position, iov)) return 0;
    const n = this.uring.tryNow();
    if (n === total) return -1;
    if (n > 0) return n;
    // Remembered by fd number: if a later file reuses the number, it only loses this fast path.
    if (n === -EOPNOTSUPP) this.noNowait.add(fd);
    return 0;
  }

  /** Write one record into the now-stage (grown as needed); false when its memory cannot be named. */
  private stageNow(kind: Kind, fd: number, position: number, iov: readonly Buffer[]): boolean {
    const need = RECORD_HEADER + RECORD_PER_IOVEC * iov.length;
    if (need > this.nowStage.length) {
      this.nowStage = new Float64Array(need);
      this.uring.setNowStage(this.nowStage, this.nowClock);
    }
    return this.writeRecord(this.nowStage, 0, kind, fd, position, 0, iov, iov.length);
  }

  private start(kind: Kind, fd: number, iov: readonly Buffer[], position: number, resolve: () => void, reject: (err: unknown) => void): void {
    if (this.broken) return reject(this.broken);
    const expected = iovLength(iov);
    // Checked here, before staging: the io_uring and its batches are shared by
    // every LUN, so one operation's bad argument must fail only that
    // operation (the addon also answers such a record with -EINVAL alone).
    const invalid = invalidArgument(fd, position, expected);
    if (invalid !== undefined) return reject(new StorageError('EINVAL', `file: ${verb(kind)} ${invalid}`));
    if (expected === 0) return resolve();
    if (this.freeCount === 0) {
      this.waiting.push({ kind, fd, iov, position, resolve, reject });
      return;
    }
    const op = this.ops[this.freeTags[--this.freeCount]!]!;
    op.kind = kind;
    op.fd = fd;
    op.iov = iov;
    op.position = position;
    op.expected = expected;
    op.resolve = resolve;
    op.reject = reject;
    this.inFlight++;
    this.prepare(op);
  }

  private prepare(op: Op): void {
    if (!this.stageRecord(op)) this.prepareNow(op);
    if (!this.submitScheduled) {
      this.submitScheduled = true;
      SETTLED.then(this.flushBound);
    }
  }

  /** Append op to the batch; false when a buffer is not over a plain ArrayBuffer. */
  private stageRecord(op: Op): boolean {
    const count = op.iov.length > IOV_MAX ? IOV_MAX : op.iov.length;
    const need = this.stageAt + RECORD_HEADER + RECORD_PER_IOVEC * count;
    if (need > this.stage.length) this.growStage(need);
    // READ, WRITE, READ_OFFLOADED are the addon's record kinds.
    if (!this.writeRecord(this.stage, this.stageAt, op.kind, op.fd, op.position, op.tag, op.iov, count)) return false;
    this.stageAt = need;
    this.stagedOps++;
    return true;
  }

  /**
   * One record (see NativeIoRing.run) at stage[base], for the first `count`
   * iovecs; false, with nothing to use, when a buffer is not over a plain
   * ArrayBuffer.
   */
  private writeRecord(
    stage: Float64Array,
    base: number,
    kind: Kind,
    fd: number,
    position: number,
    tag: number,
    iov: readonly Buffer[],
    count: number,
  ): boolean {
    for (let i = 0, at = base + RECORD_HEADER; i < count; i++, at += RECORD_PER_IOVEC) {
      const buf = iov[i]!;
      const id = this.bufferId(buf.buffer);
      if (id < 0) return false;
      stage[at] = id;
      stage[at + 1] = buf.byteOffset;
      stage[at + 2] = buf.length; // == byteLength for a Buffer, and inlined by V8 (byteLength is a call)
    }
    stage[base] = kind;
    stage[base + 1] = fd;
    stage[base + 2] = position;
    stage[base + 3] = tag;
    stage[base + 4] = count;
    return true;
  }

  private growStage(need: number): void {
    let size = this.stage.length * 2;
    while (size < need) size *= 2;
    const bigger = new Float64Array(size);
    bigger.set(this.stage.subarray(0, this.stageAt));
    this.stage = bigger;
  }

  /** The addon's id for an ArrayBuffer, registered on first sight; -1 for a SharedArrayBuffer. */
  private bufferId(ab: ArrayBufferLike): number {
    if (ab === this.lastArrayBuffer) return this.lastBufferId;
    if (!(ab instanceof ArrayBuffer)) return -1;
    let id = this.bufferIds.get(ab);
    if (id === undefined) {
      id = this.uring.registerBuffer(ab);
      this.bufferIds.set(ab, id);
      this.bufferRegistry.register(ab, id);
    }
    // The last buffer is held strongly until another one is used: a mapping
    // lives far longer than that, and a pool slab is cheap to keep.
    this.lastArrayBuffer = ab;
    this.lastBufferId = id;
    return id;
  }

  /** The per-operation path (SharedArrayBuffer memory): prepare the SQE directly. */
  private prepareNow(op: Op): void {
    let ok: boolean;
    try {
      ok = this.prep(op);
      if (!ok) {
        // Cannot happen while in-flight <= sqEntries; submit and retry once anyway.
        this.flush();
        ok = this.prep(op);
      }
    } catch (err) {
      this.finish(op, err);
      return;
    }
    if (!ok) {
      this.finish(op, new StorageError('EIO', 'file: io_uring submission queue stayed full'));
      return;
    }
    this.unsubmitted++;
  }

  private prep(op: Op): boolean {
    // The kernel takes at most IOV_MAX iovecs per call: submit the first
    // IOV_MAX; the short result is then continued like any short transfer.
    const iov = op.iov.length > IOV_MAX ? op.iov.slice(0, IOV_MAX) : op.iov;
    return op.kind !== WRITE
      ? this.uring.prepReadv(op.fd, iov, op.position, op.tag)
      : this.uring.prepWritev(op.fd, iov, op.position, op.tag);
  }

  /** Submit everything staged or prepared, then take the completions that are already there (page-cache hits). */
  private flush(): void {
    this.submitScheduled = false;
    if (this.broken) return;
    if (this.stagedOps > 0 || this.unsubmitted > 0) {
      const out = this.runOut;
      const ops = this.stagedOps;
      this.stagedOps = 0;
      this.stageAt = 0;
      try {
        this.uring.run(this.stage, ops, out);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      const n = out[0]!;
      this.unsubmitted = out[1]!;
      if (this.unsubmitted > 0 && !this.retryScheduled) {
        this.retryScheduled = true; // EAGAIN/EBUSY: the kernel is short of resources; try next turn
        setImmediate(this.retryBound);
      }
      for (let i = 0; i < n; i++) this.complete(out[2 + 2 * i]!, out[3 + 2 * i]!);
      if (2 + 2 * n === out.length) this.reapAll(); // out was full: more may wait
    } else {
      this.reapAll();
    }
    this.syncRef();
  }

  /** Keep the event loop alive exactly while operations are in the kernel (one N-API call per change, not per operation). */
  private syncRef(): void {
    const want = this.inFlight > 0 && !this.broken;
    if (want === this.refd) return;
    this.refd = want;
    this.uring.ref(want);
  }

  private reapAll(): void {
    const results = this.results;
    const room = results.length >>> 1;
    for (;;) {
      let n: number;
      try {
        n = this.uring.reap(results);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (let i = 0; i < n; i++) this.complete(results[2 * i]!, results[2 * i + 1]!);
      if (n < room) return;
    }
  }

  private complete(tag: number, result: number): void {
    const op = this.ops[tag];
    if (op === undefined || op.resolve === undefined) return; // not ours (cannot happen)
    if (result === op.expected) return this.finish(op, undefined);
    if (result < 0) return this.finish(op, errnoError(result, op));
    if (result === 0) {
      // The file shrank under us (someone truncated it): the LUN's bytes are gone.
      const what = verb(op.kind);
      const eof = new StorageError('EIO', `file: ${what} at byte ${op.position} hit the end of the file (${op.expected} bytes missing)`);
      return this.finish(op, Object.assign(eof, { endOfFile: true }));
    }
    op.iov = iovRemainder(op.iov, result);
    op.position += result;
    op.expected -= result;
    this.prepare(op);
  }

  private finish(op: Op, err: unknown): void {
    const resolve = op.resolve!;
    const reject = op.reject!;
    op.resolve = op.reject = undefined;
    op.iov = [];
    this.freeTags[this.freeCount++] = op.tag;
    this.inFlight--;
    if (this.waitingHead < this.waiting.length) {
      const next = this.waiting[this.waitingHead]!;
      this.waiting[this.waitingHead++] = undefined as unknown as Pending;
      if (this.waitingHead === this.waiting.length) {
        this.waiting.length = 0;
        this.waitingHead = 0;
      }
      this.start(next.kind, next.fd, next.iov, next.position, next.resolve, next.reject);
    }
    if (err === undefined) resolve();
    else reject(err);
  }

  /** The io_uring itself failed: everything in flight or waiting fails, and this instance refuses new work. */
  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    if (shared === this) shared = null; // later opens fall back to the thread pool
    this.uring.close();
    for (const op of this.ops) if (op.resolve !== undefined) this.finish(op, err);
    const waiting = this.waiting.splice(this.waitingHead);
    this.waiting.length = 0;
    this.waitingHead = 0;
    for (const p of waiting) p.reject(err);
  }
}

/** undefined: not tried yet; null: unavailable here. */
let shared: UringVectorIo | null | undefined;

/** Submission queue entries of the shared io_uring: at most this many operations in flight through it. */
export const UURING_ENTRIES = 256;

/**
 * The process-wide io_uring I/O, created on first use; null where io_uring
 * is unavailable (old kernel, seccomp, kernel.io_uring_disabled, addon not
 * built) or disabled with TCMU_TS_IO_URING=0.
 */
export function sharedUringIo(): UringVectorIo | null {
  if (shared !== undefined) return shared;
  if (process.env.TCMU_TS_IO_URING === '0') return (shared = null);
  try {
    shared = new UringVectorIo(native().ioRingCreate(UURING_ENTRIES));
  } catch {
    shared = null;
  }
  return shared;
}
