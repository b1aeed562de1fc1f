/**
 * Vectored file I/O through one process-wide io_uring (native/io_ring.cc)
 * instead of libuv's thread pool. Under the thread pool every command costs
 * a hand-off (queue work, futex wake, worker preadv, async wake back); here
 * every read and write issued while the ring engine consumes one batch is
 * prepared, then submitted together with ONE io_uring_enter at the end of
 * that microtask checkpoint. Page-cache hits complete inside that call and
 * are reaped at once, in the same event-loop turn; anything the kernel
 * cannot do without blocking (cache misses, buffered writes on most
 * filesystems) runs on the kernel's io-wq workers and is reaped when the
 * ring fd becomes readable. The event loop never waits on storage.
 *
 * At most sqEntries operations hold a tag (so the completion queue, twice
 * as large, cannot overflow); more wait in a FIFO here. Short transfers are
 * continued like in ./vector-io.ts.
 */
import { getSystemErrorName } from 'node:util';
import { StorageError } from '../../src/backstore/errors.js';
import { native, type NativeIoRing } from '../../src/tcmu/native.js';
import { remainder, totalLength, type VectorIo } from './vector-io.js';

const IOV_MAX = 1024;
const READ = 0;
const WRITE = 1;

type Kind = typeof READ | typeof WRITE;

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

function errnoError(result: number, op: Op): Error {
  let code: string;
  try {
    code = getSystemErrorName(result);
  } catch {
    code = 'EIO';
  }
  const what = op.kind === READ ? 'read' : 'write';
  return Object.assign(new Error(`file: ${what} of ${op.expected} bytes at byte ${op.position} failed: ${code}`), {
    code,
    errno: result,
    syscall: op.kind === READ ? 'preadv' : 'pwritev',
  });
}

export class RingVectorIo implements VectorIo {
  readonly kind = 'io_uring';
  private readonly ops: Op[] = [];
  private readonly freeTags: Int32Array;
  private freeCount: number;
  private readonly waiting: Pending[] = [];
  private waitingHead = 0;
  private inFlight = 0;
  /** Prepared but not yet taken by the kernel. */
  private prepared = 0;
  private submitScheduled = false;
  private retryScheduled = false;
  private broken: Error | undefined;
  private readonly results: Int32Array;
  private readonly flushBound = () => this.flush();
  private readonly retryBound = () => {
    this.retryScheduled = false;
    this.flush();
  };

  constructor(private readonly ring: NativeIoRing) {
    const capacity = ring.sqEntries;
    this.freeTags = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) {
      this.ops.push(new Op(i));
      this.freeTags[i] = capacity - 1 - i;
    }
    this.freeCount = capacity;
    this.results = new Int32Array(2 * ring.cqEntries);
    ring.watch(
      () => this.reapAll(),
      (err) => this.fail(err),
    );
    ring.ref(false);
  }

  read(fd: number, iov: readonly Buffer[], position: number): Promise<void> {
    return new Promise((resolve, reject) => this.start(READ, fd, iov, position, resolve, reject));
  }

  write(fd: number, iov: readonly Buffer[], position: number): Promise<void> {
    return new Promise((resolve, reject) => this.start(WRITE, fd, iov, position, resolve, reject));
  }

  private start(kind: Kind, fd: number, iov: readonly Buffer[], position: number, resolve: () => void, reject: (err: unknown) => void): void {
    if (this.broken) return reject(this.broken);
    const expected = totalLength(iov);
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
    if (this.inFlight++ === 0) this.ring.ref(true);
    this.prepare(op);
  }

  private prepare(op: Op): void {
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
    this.prepared++;
    if (!this.submitScheduled) {
      this.submitScheduled = true;
      queueMicrotask(this.flushBound);
    }
  }

  private prep(op: Op): boolean {
    // The kernel takes at most IOV_MAX iovecs per call: submit the first
    // IOV_MAX; the short result is then continued like any short transfer.
    const iov = op.iov.length > IOV_MAX ? op.iov.slice(0, IOV_MAX) : op.iov;
    return op.kind === READ
      ? this.ring.prepReadv(op.fd, iov, op.position, op.tag)
      : this.ring.prepWritev(op.fd, iov, op.position, op.tag);
  }

  /** Submit everything prepared, then take the completions that are already there (page-cache hits). */
  private flush(): void {
    this.submitScheduled = false;
    if (this.broken) return;
    if (this.prepared > 0) {
      let submitted: number;
      try {
        submitted = this.ring.submit();
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      this.prepared -= submitted;
      if (this.prepared > 0 && !this.retryScheduled) {
        this.retryScheduled = true; // EAGAIN/EBUSY: the kernel is short of resources; try next turn
        setImmediate(this.retryBound);
      }
    }
    this.reapAll();
  }

  private reapAll(): void {
    const results = this.results;
    const room = results.length >>> 1;
    for (;;) {
      let n: number;
      try {
        n = this.ring.reap(results);
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
      const what = op.kind === READ ? 'read' : 'write';
      const eof = new StorageError('EIO', `file: ${what} at byte ${op.position} hit the end of the file (${op.expected} bytes missing)`);
      return this.finish(op, Object.assign(eof, { endOfFile: true }));
    }
    op.iov = remainder(op.iov, result);
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
    if (this.inFlight === 0 && !this.broken) this.ring.ref(false);
    if (err === undefined) resolve();
    else reject(err);
  }

  /** The ring itself failed: everything in flight or waiting fails, and this instance refuses new work. */
  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    if (shared === this) shared = null; // later opens fall back to the thread pool
    this.ring.close();
    for (const op of this.ops) if (op.resolve !== undefined) this.finish(op, err);
    const waiting = this.waiting.splice(this.waitingHead);
    this.waiting.length = 0;
    this.waitingHead = 0;
    for (const p of waiting) p.reject(err);
  }
}

/** undefined: not tried yet; null: unavailable here. */
let shared: RingVectorIo | null | undefined;

/** Submission queue entries of the shared ring: at most this many operations in flight through it. */
export const RING_ENTRIES = 256;

/**
 * The process-wide io_uring I/O, created on first use; null where io_uring
 * is unavailable (old kernel, seccomp, kernel.io_uring_disabled, addon not
 * built) or disabled with TCMU_TS_IO_URING=0.
 */
export function sharedRingIo(): RingVectorIo | null {
  if (shared !== undefined) return shared;
  if (process.env.TCMU_TS_IO_URING === '0') return (shared = null);
  try {
    shared = new RingVectorIo(native().ioRingCreate(RING_ENTRIES));
  } catch {
    shared = null;
  }
  return shared;
}
