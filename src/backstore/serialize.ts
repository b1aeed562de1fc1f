/**
 * The core's queue for stores that cannot take overlapping calls
 * (`Backstore.maxInFlight`, see "Concurrency" in ./types.ts). Applied once,
 * when the LunStore is built, so no handler carries a whole-store mutex.
 *
 * Rules: at most `maxInFlight` calls run in the store at once; `resize` and
 * `close` run alone (nothing else runs beside them); calls start in the
 * order they were made (FIFO: nothing overtakes a waiting call, so an
 * exclusive call is not starved by a stream of reads). A waiting call whose
 * abort signal fires leaves the queue at once, rejected with the signal's
 * reason, without ever reaching the store.
 *
 * Stores that declare no limit get their own object back: no wrapper on
 * the hot path. A call that finds the queue empty and a slot free is made
 * at once, synchronously: a synchronous store stays synchronous.
 */
import { StorageError } from './errors.js';
import { isPromiseLike } from './maybe.js';
import type { Backstore, CallOptions, MaybePromise } from './types.js';

type AnyMethod = (this: unknown, a?: unknown, b?: unknown, c?: unknown) => MaybePromise<unknown>;

interface Waiter {
  exclusive: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  method: AnyMethod;
  a: unknown;
  b: unknown;
  c: unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Why a waiting call was dropped: the engine's StorageError reason, or an ECANCELED one caused by any other reason. */
function abortReason(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason instanceof StorageError) return reason;
  return new StorageError('ECANCELED', 'command aborted by a task management function', { cause: reason });
}

export class CallQueue {
  /** Calls running in the store now. */
  private running = 0;
  /** An exclusive call (resize, close) is running. */
  private exclusiveRunning = false;
  private readonly waiting: Waiter[] = [];
  private readonly releaseShared = () => this.release(false);
  private readonly releaseExclusive = () => this.release(true);

  constructor(
    private readonly store: Backstore,
    readonly limit: number,
  ) {}

  /** Calls waiting for their turn. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Call `method` on the store with up to three arguments, now or when its turn comes. */
  call(exclusive: boolean, signal: AbortSignal | undefined, method: AnyMethod, a?: unknown, b?: unknown, c?: unknown): MaybePromise<unknown> {
    // An aborted command's later calls never reach the store either.
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    if (this.waiting.length === 0 && this.canStart(exclusive)) return this.start(exclusive, method, a, b, c);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { exclusive, signal, onAbort: undefined, method, a, b, c, resolve, reject };
      if (signal) {
        waiter.onAbort = () => this.drop(waiter);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiting.push(waiter);
    });
  }

  private canStart(exclusive: boolean): boolean {
    return exclusive ? this.running === 0 : !this.exclusiveRunning && this.running < this.limit;
  }

  private start(exclusive: boolean, method: AnyMethod, a: unknown, b: unknown, c: unknown): MaybePromise<unknown> {
    this.running++;
    if (exclusive) this.exclusiveRunning = true;
    let result: MaybePromise<unknown>;
    try {
      result = method.call(this.store, a, b, c);
    } catch (err) {
      this.release(exclusive);
      throw err;
    }
    if (!isPromiseLike(result)) {
      this.release(exclusive);
      return result;
    }
    // Registered before the caller's own reactions: the next call starts
    // as soon as this one settled. Both paths handle the rejection here;
    // the caller handles it on `result`.
    const release = exclusive ? this.releaseExclusive : this.releaseShared;
    result.then(release, release);
    return result;
  }

  private release(exclusive: boolean): void {
    this.running--;
    if (exclusive) this.exclusiveRunning = false;
    this.startWaiting();
  }

  /** Start waiting calls from the front while they may start. */
  private startWaiting(): void {
    while (this.waiting.length > 0) {
      const w = this.waiting[0]!;
      if (!this.canStart(w.exclusive)) return;
      this.waiting.shift();
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      let result: MaybePromise<unknown>;
      try {
        result = this.start(w.exclusive, w.method, w.a, w.b, w.c);
      } catch (err) {
        w.reject(err);
        continue;
      }
      if (isPromiseLike(result)) result.then(w.resolve, w.reject);
      else w.resolve(result);
    }
  }

  /** An aborted waiting call leaves the queue; the calls behind it may now start. */
  private drop(waiter: Waiter): void {
    const i = this.waiting.indexOf(waiter);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    waiter.reject(abortReason(waiter.signal!));
    if (i === 0) this.startWaiting();
  }
}

/** True when the core must give this store's calls their commands' abort signals. */
export function wantsSignals(store: Backstore): boolean {
  return store.abortable === true || store.maxInFlight !== undefined;
}

/**
 * The store itself when it declares no `maxInFlight`; otherwise a view of
 * it whose methods go through one CallQueue. Everything else (size, flags)
 * is read from the store itself.
 */
export function limitConcurrency(store: Backstore): Backstore {
  const limit = store.maxInFlight;
  if (limit === undefined) return store;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new TypeError(`Backstore.maxInFlight must be a positive integer, got ${String(limit)}`);
  }
  const queue = new CallQueue(store, limit);
  const methods: Partial<Record<keyof Backstore, unknown>> = {};
  const own = <K extends keyof Backstore>(key: K): AnyMethod | undefined =>
    typeof store[key] === 'function' ? (store[key] as unknown as AnyMethod) : undefined;

  const read = own('read');
  if (read) methods.read = (offset: number, iov: readonly Buffer[], opts?: CallOptions) => queue.call(false, opts?.signal, read, offset, iov, opts);
  const write = own('write');
  if (write) methods.write = (offset: number, iov: readonly Buffer[], opts: CallOptions) => queue.call(false, opts?.signal, write, offset, iov, opts);
  const compareAndWrite = own('compareAndWrite');
  if (compareAndWrite) {
    methods.compareAndWrite = (offset: number, iov: readonly Buffer[], opts: CallOptions) => queue.call(false, opts?.signal, compareAndWrite, offset, iov, opts);
  }
  const flush = own('flush');
  if (flush) methods.flush = (opts?: CallOptions) => queue.call(false, opts?.signal, flush, opts);
  for (const key of ['discard', 'writeZeroes', 'blockStatus'] as const) {
    const method = own(key);
    if (method) methods[key] = (offset: number, length: number, opts?: CallOptions) => queue.call(false, opts?.signal, method, offset, length, opts);
  }
  const resize = own('resize');
  if (resize) methods.resize = (newSize: number) => queue.call(true, undefined, resize, newSize);
  const close = own('close');
  if (close) methods.close = () => queue.call(true, undefined, close);

  // A Proxy rather than Object.create(store): a handler's getters may use
  // private fields, which only work with the store itself as receiver.
  return new Proxy(store, {
    get(target, key) {
      if (typeof key === 'string' && Object.prototype.hasOwnProperty.call(methods, key)) return methods[key as keyof Backstore];
      return Reflect.get(target, key) as unknown;
    },
  });
}
