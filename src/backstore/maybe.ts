/**
 * Chaining for MaybePromise values without paying for a promise when the
 * first step finished synchronously. The ram handler answers synchronously
 * and the ring completes such commands in the same batch; wrapping its
 * results in promises would cost an allocation and a microtask each.
 */
import type { MaybePromise } from './types.js';

/**
 * True for anything thenable (a handler may return a non-native promise).
 * The one promise check of the code base: SCSI emulation and the ring use it
 * too, so "is this result still pending?" has one answer everywhere.
 */
export function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** Run `next` after `first` settles; synchronous all the way when `first` was. */
export function andThen<T>(first: MaybePromise<unknown>, next: () => MaybePromise<T>): MaybePromise<T> {
  if (isPromiseLike(first)) return first.then(next);
  return next();
}
