/**
 * The core's defaults for a handler's store, in one place.
 *
 * toLunStore: turn a handler's Backstore (only `read` and `close` required)
 * into a LunStore with every method present, filling the gaps with the
 * core's defaults once, at open. SCSI emulation then never tests for a
 * missing method, and the hot path stays the handler's own function:
 * when no default logic is needed, `read`/`write` ARE the handler's methods
 * bound once, so a synchronous handler stays synchronous and costs no
 * wrapper call, no promise.
 */
import { StorageError } from './errors.js';
import { andThen, isPromiseLike } from './maybe.js';
import { limitConcurrency, wantsSignals } from './serialize.js';
import type { Backstore, CallOptions, Extent, LunStore, MaybePromise, WriteOptions, WriteZeroesOptions } from './types.js';
import { writeZeroesWithWrites, type WriteFn } from './zero-fill.js';

type Method<K extends keyof Backstore> = NonNullable<Backstore[K]>;

function has<K extends keyof Backstore>(store: Backstore, key: K): boolean {
  return typeof store[key] === 'function';
}

function bound<K extends keyof Backstore>(store: Backstore, key: K): Method<K> {
  return (store[key] as (...args: unknown[]) => unknown).bind(store) as Method<K>;
}

function refuseReadOnly(operation: string): () => never {
  return () => {
    throw new StorageError('EROFS', `${operation} refused: the LUN is read-only`);
  };
}

function noop(): void {}

/**
 * FUA for a store with a volatile cache but no native FUA: the data is
 * durable once the write AND a following flush have completed. Non-FUA
 * writes go straight through (one extra call, no allocation).
 */
function fuaByFlush(write: WriteFn, flush: (opts?: CallOptions) => MaybePromise<void>): WriteFn {
  return (offset: number, iov: readonly Buffer[], opts: WriteOptions) => {
    if (!opts.fua) return write(offset, iov, opts);
    return andThen(write(offset, iov, opts), () => flush(signalOnly(opts)));
  };
}

/** The abort signal of `opts` alone (a handler's discard must not see write-zeroes' own fields). */
function signalOnly(opts: CallOptions): CallOptions | undefined {
  return opts.signal ? { signal: opts.signal } : undefined;
}

function wholeRangeMapped(offset: number, length: number): Extent[] {
  return [{ offset, length, state: 'mapped' }];
}

function resizeNotSupported(): never {
  throw new StorageError('ENOTSUP', 'this backstore cannot be resized');
}

/** Apply the core defaults (documented on LunStore in ./types.ts) to a handler's Backstore. */
export function toLunStore(handlerStore: Backstore): LunStore {
  const store = limitConcurrency(handlerStore); // maxInFlight: the core's queue (./serialize.ts)
  const readOnly = store.readOnly === true || !has(store, 'write');
  const hasFlush = has(store, 'flush');
  const writeCache = hasFlush && store.writeCache !== false;
  const thin = !readOnly && has(store, 'discard') && store.thin !== false;
  const discardZeroes = thin && store.discardZeroes !== false;

  const flush: (opts?: CallOptions) => MaybePromise<void> = hasFlush ? bound(store, 'flush') : noop;

  let write: WriteFn;
  if (readOnly) {
    write = refuseReadOnly('write');
  } else {
    const own = bound(store, 'write');
    // Without a volatile cache every completed write is already durable, so
    // FUA needs nothing extra; with one, FUA costs a flush unless the handler
    // declares it implements FUA itself.
    write = writeCache && store.fua !== true ? fuaByFlush(own, flush) : own;
  }

  let discard: (offset: number, length: number, opts?: CallOptions) => MaybePromise<void>;
  if (readOnly) discard = refuseReadOnly('discard');
  else if (thin) discard = bound(store, 'discard');
  else discard = noop; // SBC allows an UNMAP that deallocates nothing (LBPRZ=0)

  let writeZeroes: (offset: number, length: number, opts: WriteZeroesOptions) => MaybePromise<void>;
  if (readOnly) {
    writeZeroes = refuseReadOnly('write zeroes');
  } else if (has(store, 'writeZeroes')) {
    writeZeroes = bound(store, 'writeZeroes');
  } else {
    // A handler's discard guarantees the range reads as zeros afterwards,
    // so a thin store may honour `unmap` by deallocating; otherwise write
    // real zeros from the shared buffer.
    writeZeroes = (offset, length, opts) =>
      opts.unmap && discardZeroes ? discard(offset, length, signalOnly(opts)) : writeZeroesWithWrites(write, offset, length, signalOnly(opts));
  }

  const hasBlockStatus = has(store, 'blockStatus');
  const blockStatus = hasBlockStatus ? bound(store, 'blockStatus') : wholeRangeMapped;

  const lun = {
    size: store.size,
    blockSize: store.blockSize,
    readOnly,
    writeCache,
    thin,
    discardZeroes,
    discardGranularity: discardGranularityOf(store),
    hasBlockStatus,
    abortable: wantsSignals(store),
    // The core's queue (maxInFlight) waits for every call to settle.
    completesInRing: handlerStore.completesInRing === true && handlerStore.maxInFlight === undefined,
    read: bound(store, 'read'),
    write,
    flush,
    discard,
    writeZeroes,
    blockStatus,
    resize: resizeNotSupported as (newSize: number) => MaybePromise<void>,
    close: bound(store, 'close'),
  };
  if (!readOnly && has(store, 'compareAndWrite')) {
    const own = bound(store, 'compareAndWrite');
    // FUA as for write: the handler's own, or a flush after a matching write.
    const emulateFua = writeCache && store.fua !== true;
    (lun as LunStore).compareAndWrite = !emulateFua
      ? own
      : (offset, iov, opts) => {
          const result = own(offset, iov, opts);
          const after = (at: number): MaybePromise<number> => (opts.fua && at < 0 ? andThen(flush(), () => at) : at);
          return isPromiseLike(result) ? result.then(after) : after(result);
        };
    (lun as { compareAndWriteLimit?: number }).compareAndWriteLimit = store.compareAndWriteLimit;
  }
  if (has(store, 'exclusiveLockHolder')) (lun as LunStore).exclusiveLockHolder = bound(store, 'exclusiveLockHolder');
  if (has(store, 'resize')) {
    const resize = bound(store, 'resize');
    // READ CAPACITY must report the new size only once the handler has it.
    lun.resize = (newSize: number) =>
      andThen(resize(newSize), () => {
        lun.size = newSize;
      });
  }
  return lun;
}

/** 4 KiB, the page Linux and most stores work in, unless the handler declares a coarser unit (checked by validateBackstore). */
const DEFAULT_DISCARD_GRANULARITY = 4096;

function discardGranularityOf(store: Backstore): number {
  return store.discardGranularity ?? DEFAULT_DISCARD_GRANULARITY;
}
