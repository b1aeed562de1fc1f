/**
 * Promises over the rbd addon (src/native.ts, native/rbd.cc). The addon
 * delivers every completion of the process through one handler as [tag,
 * result, extra] triples; this module owns the tags: each operation in
 * flight holds a slot (its resolve/reject and the buffers librbd is using,
 * kept referenced until librbd is done with them).
 */
import { constants } from 'node:os';
import { StorageError } from '../../src/backstore/errors.js';
import { iovLength } from '../../src/iov.js';
import { rbdBinding, type NativeRbd, type NativeRbdImage, type NativeRbdSession, type NativeRbdSnap } from '../../src/native.js';
import type { InRing } from '../../src/scsi/command.js';

export type RbdSnapshot = NativeRbdSnap;

/** An Error carrying the errno name as `code`, like Node's own system errors. */
export function errnoError(negErrno: number, what: string): Error & { code: string; errno: number } {
  const errno = -negErrno;
  const code = ERRNO_NAMES.get(errno) ?? 'EIO';
  return Object.assign(new Error(`${what} failed: ${code} (${errno})`), { code, errno: negErrno });
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));
// Node's table lacks ESHUTDOWN, which is Ceph's EBLOCKLISTED: what a client
// the cluster fenced gets for every operation.
const ESHUTDOWN = 108;
if (!ERRNO_NAMES.has(ESHUTDOWN)) ERRNO_NAMES.set(ESHUTDOWN, 'ESHUTDOWN');

/**
 * What a settled operation hands back: nothing (writes, flush, discard,
 * zeroes), nothing after checking it transferred every byte (reads), or
 * compare-and-write's answer. Each data-path call is ONE promise, settled
 * straight from the completion batch: no async wrapper or .then/.catch
 * layer per call (each promise also pays the promise hooks that
 * AsyncLocalStorage keeps on, and at a few hundred IOPS from a CPU-bound
 * cluster every command is a wake-up of its own). A READ or WRITE that
 * takes its command over (readvInRing, writevInRing) has none at all.
 */
const enum Answer {
  Nothing,
  AllBytes,
  MismatchOffset,
}

/** Maps an operation's error before it rejects (the connection's fencing check). */
export type FailureMap = (err: Error) => Error;

/** One data-path call, as its method describes it. */
interface Request {
  answer: Answer;
  image: RbdImage;
  /** Where on the image (error messages; reads' short-read check). */
  offset: number;
  /** AllBytes: how many bytes the read must return. */
  expect: number;
  what: string;
  /** Buffers librbd reads or fills until the completion: held so nothing frees them. */
  hold: unknown;
  failure: FailureMap | undefined;
}

/**
 * An operation in flight: settled through its promise's `resolve`/`reject`,
 * or, for a read or write that took its command over (`inRing`, see
 * readvInRing), through the command itself, with no promise at all.
 */
interface Slot {
  request: Request;
  resolve: (value: number | undefined) => void;
  reject: (err: Error) => void;
  inRing: InRing | undefined;
}

/** Tags are indexes into `slots`, reused after completion (bounded by what is in flight). */
const slots: (Slot | undefined)[] = [];
const freeTags: number[] = [];
/** Watch tags (own numbering): header-change listeners. */
const watchers = new Map<number, () => void>();
let nextWatchTag = 0;
let installed: NativeRbd | undefined;
const EILSEQ = constants.errno.EILSEQ;
/** Record `extra` of an operation that completed its command in the ring (native/rbd.cc). */
const COMPLETED_IN_RING = -1;

function onBatch(batch: Float64Array, count: number): void {
  for (let i = 0; i < 3 * count; i += 3) {
    const tag = batch[i]!;
    if (tag < 0) {
      watchers.get(-1 - tag)?.();
      continue;
    }
    const slot = slots[tag];
    if (!slot) continue; // cannot happen: every tag is started once
    freeTag(tag);
    // Its command is complete already: the promise stays pending for good.
    if (batch[i + 2] === COMPLETED_IN_RING) continue;
    settle(slot, batch[i + 1]!, batch[i + 2]!);
  }
}

function settle(slot: Slot, result: number, extra: number): void {
  const err = failureOf(slot.request, result);
  if (slot.inRing !== undefined) slot.inRing.settle(err);
  else if (err !== undefined) slot.reject(err);
  // -EILSEQ: a miscompare at byte `extra`, nothing written; 0: matched and written.
  else if (slot.request.answer === Answer.MismatchOffset) slot.resolve(result < 0 ? extra : -1);
  else slot.resolve(undefined);
}

/** The error an operation ended with (mapped by its FailureMap), or undefined if it succeeded. */
function failureOf(request: Request, result: number): Error | undefined {
  let err: Error;
  if (result < 0 && !(request.answer === Answer.MismatchOffset && result === -EILSEQ)) {
    err = errnoError(result, request.what);
  } else if (request.answer !== Answer.AllBytes || result === request.expect) {
    return undefined;
  } else {
    err = new StorageError('EIO', `rbd ${request.image.name}: short read at ${request.offset}: ${result} of ${request.expect} bytes`);
  }
  return request.failure ? request.failure(err) : err;
}

/** The addon with this module's completion handler installed, or a clear reason it is unavailable. */
export function librbd(): NativeRbd {
  if (installed) return installed;
  const { binding, reason } = rbdBinding();
  if (!binding) throw Object.assign(new Error(`rbd: ${reason}`), { code: 'ENOTSUP' });
  binding.setHandler(onBatch);
  installed = binding;
  return binding;
}

/** Start an aio operation: `submit(tag)` returns 0 or -errno (then it fails at once). */
function start<T extends number | void>(request: Request, submit: (tag: number) => number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const slot: Slot = { request, resolve: resolve as (value: number | undefined) => void, reject, inRing: undefined };
    // A throw here (bad arguments) rejects the promise.
    const rc = submitSlot(slot, submit);
    if (rc < 0) settle(slot, rc, 0);
  });
}

function unused(): void {}

/**
 * Start a read or write that takes its command over: librbd's thread
 * completes it in the ring, or the completion settles it through `inRing`.
 * No promise unless the submission itself fails (then a rejected one, and
 * the caller settles the command as usual).
 */
function startInRing(request: Request, inRing: InRing, submit: (tag: number) => number): Promise<void> {
  let rc: number;
  try {
    rc = submitSlot({ request, resolve: unused, reject: unused, inRing }, submit);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return rc >= 0 ? inRing.takenOver : Promise.reject(failureOf(request, rc)!);
}

/** Give `slot` a tag and submit it: librbd's 0 or -errno, or what `submit` threw; a failed submission frees the tag again. */
function submitSlot(slot: Slot, submit: (tag: number) => number): number {
  const tag = freeTags.pop() ?? slots.length;
  slots[tag] = slot;
  let rc: number;
  try {
    rc = submit(tag);
  } catch (err) {
    freeTag(tag);
    throw err;
  }
  if (rc < 0) freeTag(tag);
  return rc;
}

function freeTag(tag: number): void {
  slots[tag] = undefined;
  freeTags.push(tag);
}

function callback<T>(run: (cb: (err: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));
}

export interface ConnectOptions {
  /** ceph.conf path; '' = librados' default search (CEPH_CONF, /etc/ceph/ceph.conf ...). */
  conf: string;
  /** cephx user without "client." (admin). */
  id: string;
  /** Extra rados_conf_set pairs (keyring, rados_osd_op_timeout, client_mount_timeout ...). */
  settings: Record<string, string>;
  pool: string;
  /**
   * 'batch': librados's and librbd's threads run under SCHED_BATCH, so their
   * wake-ups do not preempt the event loop that woke them; 'normal': the
   * daemon's own policy.
   */
  threadPolicy: RbdThreadPolicy;
}

export type RbdThreadPolicy = 'batch' | 'normal';

/** One cluster connection with an I/O context on one pool. */
export class RbdSession {
  private constructor(
    private readonly rbd: NativeRbd,
    readonly handle: NativeRbdSession,
  ) {}

  static async connect(opts: ConnectOptions): Promise<RbdSession> {
    const rbd = librbd();
    const pairs = Object.entries(opts.settings).flat();
    const handle = await callback<NativeRbdSession>((cb) => rbd.connect(opts.conf, opts.id, pairs, opts.pool, opts.threadPolicy === 'batch', cb));
    return new RbdSession(rbd, handle);
  }

  /** Open an image (its head when `snap` is ''). */
  async open(name: string, snap: string, readOnly: boolean): Promise<RbdImage> {
    const handle = await callback<NativeRbdImage>((cb) => this.rbd.open(this.handle, name, snap, readOnly, cb));
    return new RbdImage(this.rbd, handle, `${name}${snap ? `@${snap}` : ''}`);
  }

  /** This client's address, as the exclusive lock's owner list and the blocklist name it. */
  instanceAddress(): string {
    return this.rbd.instanceAddress(this.handle);
  }

  /** Release the connection (it ends once every image opened from it is closed). */
  shutdown(): Promise<void> {
    return callback<void>((cb) => this.rbd.shutdown(this.handle, cb));
  }

  /** Connect, open the head of image `name`, run `body` on it, then close the image and the connection. */
  static async withImage<T>(opts: ConnectOptions, name: string, readOnly: boolean, body: (image: RbdImage) => Promise<T>): Promise<T> {
    const session = await RbdSession.connect(opts);
    try {
      const image = await session.open(name, '', readOnly);
      try {
        return await body(image);
      } finally {
        await image.close();
      }
    } finally {
      await session.shutdown();
    }
  }
}

/** An open image: promise-returning aio calls. */
export class RbdImage {
  private closed = false;
  private watchTag: number | undefined;
  /** Pool calls on this image still running: close waits for them (librbd must not close under them). */
  private readonly admin = new Set<Promise<unknown>>();

  constructor(
    private readonly rbd: NativeRbd,
    private readonly handle: NativeRbdImage,
    readonly name: string,
  ) {}

  size(): number {
    return this.rbd.size(this.handle);
  }

  /** Fill `iov` from `offset`; a read that returns fewer bytes fails (EIO). */
  readv(offset: number, iov: readonly Buffer[], failure?: FailureMap): Promise<void> {
    return start(this.readRequest(offset, iov, failure), (tag) => this.rbd.readv(this.handle, iov, offset, tag));
  }

  writev(offset: number, iov: readonly Buffer[], failure?: FailureMap): Promise<void> {
    return start(this.writeRequest(offset, iov, failure), (tag) => this.rbd.writev(this.handle, iov, offset, tag));
  }

  /**
   * readv that takes the command over (STORE_COMPLETES_IN_RING): a full read
   * completes it in the ring on librbd's thread; anything else settles it
   * through `inRing`. Returns a rejected promise if librbd refuses to start.
   */
  readvInRing(offset: number, iov: readonly Buffer[], failure: FailureMap, inRing: InRing): Promise<void> {
    const request = this.readRequest(offset, iov, failure);
    return startInRing(request, inRing, (tag) => this.rbd.readv(this.handle, iov, offset, tag, inRing.ring, inRing.index, inRing.cmdId));
  }

  /** writev that takes the command over, as readvInRing. */
  writevInRing(offset: number, iov: readonly Buffer[], failure: FailureMap, inRing: InRing): Promise<void> {
    const request = this.writeRequest(offset, iov, failure);
    return startInRing(request, inRing, (tag) => this.rbd.writev(this.handle, iov, offset, tag, inRing.ring, inRing.index, inRing.cmdId));
  }

  /** A read must return every byte of `iov`, which librbd fills until it completes. */
  private readRequest(offset: number, iov: readonly Buffer[], failure: FailureMap | undefined): Request {
    return { answer: Answer.AllBytes, image: this, offset, expect: iovLength(iov), what: 'rbd_aio_readv', hold: iov, failure };
  }

  private writeRequest(offset: number, iov: readonly Buffer[], failure: FailureMap | undefined): Request {
    return { answer: Answer.Nothing, image: this, offset, expect: 0, what: 'rbd_aio_writev', hold: iov, failure };
  }

  flush(failure?: FailureMap): Promise<void> {
    const request = { answer: Answer.Nothing, image: this, offset: 0, expect: 0, what: 'rbd_aio_flush', hold: undefined, failure };
    return start(request, (tag) => this.rbd.flush(this.handle, tag));
  }

  discard(offset: number, length: number, failure?: FailureMap): Promise<void> {
    const request = { answer: Answer.Nothing, image: this, offset, expect: 0, what: 'rbd_aio_discard', hold: undefined, failure };
    return start(request, (tag) => this.rbd.discard(this.handle, offset, length, tag));
  }

  writeZeroes(offset: number, length: number, failure?: FailureMap): Promise<void> {
    const request = { answer: Answer.Nothing, image: this, offset, expect: 0, what: 'rbd_aio_write_zeroes', hold: undefined, failure };
    return start(request, (tag) => this.rbd.writeZeroes(this.handle, offset, length, tag));
  }

  /** -1 when it matched and wrote; else librbd's mismatch offset (nothing written). */
  compareAndWrite(offset: number, compare: Buffer, data: Buffer, failure?: FailureMap): Promise<number> {
    const request = { answer: Answer.MismatchOffset, image: this, offset, expect: 0, what: 'rbd_aio_compare_and_write', hold: [compare, data], failure };
    return start(request, (tag) => this.rbd.compareAndWrite(this.handle, offset, compare, data, tag));
  }

  /** Addresses of the exclusive lock's owners ([] when nobody holds it). */
  lockOwners(): Promise<string[]> {
    return this.pooled((cb) => this.rbd.lockOwners(this.handle, cb));
  }

  /** Blocklist `owner` and break its exclusive lock. */
  lockBreak(owner: string): Promise<void> {
    return this.pooled((cb) => this.rbd.lockBreak(this.handle, owner, cb));
  }

  snapCreate(name: string): Promise<void> {
    return this.pooled((cb) => this.rbd.snapCreate(this.handle, name, cb));
  }

  snapRemove(name: string): Promise<void> {
    return this.pooled((cb) => this.rbd.snapRemove(this.handle, name, cb));
  }

  snapRollback(name: string): Promise<void> {
    return this.pooled((cb) => this.rbd.snapRollback(this.handle, name, cb));
  }

  snapList(): Promise<RbdSnapshot[]> {
    return this.pooled((cb) => this.rbd.snapList(this.handle, cb));
  }

  /** [offset, length, allocated] triples from rbd_diff_iterate2 (at most 4096; gaps unallocated). */
  allocationExtents(offset: number, length: number): Promise<Float64Array> {
    return this.pooled((cb) => this.rbd.allocationExtents(this.handle, offset, length, cb));
  }

  private pooled<T>(run: (cb: (err: Error | null, value?: T) => void) => void): Promise<T> {
    if (this.closed) return Promise.reject(Object.assign(new Error(`rbd ${this.name}: closed`), { code: 'EBADF' }));
    const p = callback(run);
    this.admin.add(p);
    const forget = () => this.admin.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Call `listener` on every header change (resize, snapshot, lock owner). */
  watch(listener: () => void): void {
    if (this.watchTag !== undefined) throw new Error(`rbd ${this.name}: already watched`);
    const tag = nextWatchTag++;
    watchers.set(tag, listener);
    this.watchTag = tag;
    const rc = this.rbd.watch(this.handle, tag);
    if (rc < 0) {
      watchers.delete(tag);
      this.watchTag = undefined;
      throw errnoError(rc, 'rbd_update_watch');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchTag !== undefined) watchers.delete(this.watchTag);
    await Promise.allSettled([...this.admin]);
    await callback<void>((cb) => this.rbd.close(this.handle, cb));
  }
}
