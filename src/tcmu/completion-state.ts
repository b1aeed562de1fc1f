/**
 * The completion side of a ring as a block of 32-bit words, so that a
 * thread other than the event loop's can complete commands too
 * (native/ring_completer.h names the same words; ring_completion.h is the
 * interface an addon completes through). librbd calls back on its own
 * threads; completing there, as tcmu-runner does, spares the event loop a
 * wake-up per command.
 *
 * The block holds our tail, the tail the kernel has seen, the queue of
 * consumed entries the tail has not passed (their offsets and len_ops) and
 * the slots another thread completed, which the engine collects to free
 * them. A word-sized lock guards all of it. The engine holds it for each
 * batch and each completion it makes; the other side never blocks while
 * holding it, so spinning here is short. Another thread never waits for
 * it: finding it held by the engine, it hands its command over instead,
 * pushing the slot onto a list kept in the lock word itself (and in one
 * link word per slot); the engine takes that list before a batch
 * publishes (`takeHandedOver`) and again when it releases the lock
 * (`unlockOrTakeHandedOver`), and completes those commands there, in the
 * same batch, with no promise to settle and no wake-up to pay.
 *
 * Without a mapping that offers the native block (test doubles), the same
 * words live in JS memory and nothing else ever touches them.
 */
import { performance } from 'node:perf_hooks';
import type { NativeMapping, RingCompletionHandle } from '../native.js';

/** Word indexes (native/ring_completer.h, CompletionWord). */
export const enum Word {
  Lock = 0,
  /** 1: other threads may complete commands. */
  Open = 1,
  Tail = 2,
  Published = 3,
  PendingHead = 4,
  PendingCount = 5,
  /** Slots completed by another thread, not yet collected. */
  DoneCount = 6,
  /** Kicks sent by other threads. */
  Kicks = 7,
  Header = 8,
}

/** The lock word (native/ring_completer.h, LockWord): the holder in bits 0-1, the handed-over list above. */
const enum Lock {
  Free = 0,
  /** Held by the engine, nothing handed over. */
  HeldByLoop = 2,
  ListShift = 2,
}

export class CompletionState {
  readonly words: Int32Array;
  /** Slot indexes completed by another thread (DoneCount of them). */
  readonly done: Int32Array;
  /** When each of those was completed, CLOCK_MONOTONIC in ms (see monotonicToPerformance); 0 when not timed. */
  readonly doneAt: Float64Array;
  readonly pendingOffset: Int32Array;
  readonly pendingLenOp: Uint32Array;
  /** Per slot, for the handed-over list: cmd_id << 16 | the next slot + 1 (0 ends the list). */
  readonly handedOver: Int32Array;
  /** Pending queue capacity (a power of two) and its index mask. */
  readonly capacity: number;
  readonly mask: number;
  /** What an addon completes through; undefined when no other thread can. */
  readonly handle: RingCompletionHandle | undefined;
  private held = false;

  private constructor(buffer: ArrayBuffer, maxInFlight: number, capacity: number, handle: RingCompletionHandle | undefined) {
    const layout = layoutOf(maxInFlight, capacity);
    this.words = new Int32Array(buffer, 0, Word.Header);
    this.done = new Int32Array(buffer, Word.Header * 4, maxInFlight);
    this.pendingOffset = new Int32Array(buffer, layout.pendingAt, capacity);
    this.pendingLenOp = new Uint32Array(buffer, layout.pendingAt + capacity * 4, capacity);
    this.doneAt = new Float64Array(buffer, layout.doneAtAt, maxInFlight);
    this.handedOver = new Int32Array(buffer, layout.handedOverAt, maxInFlight);
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.handle = handle;
  }

  /**
   * The block for a ring of `maxInFlight` slots. Shared with native code
   * only when `shared` (the engine offers completions to other threads only
   * on rings that complete out of order) and the mapping can. `timed`:
   * other threads stamp their completions in doneAt (latency metrics).
   */
  static create(mapping: NativeMapping, maxInFlight: number, shared: boolean, timed: boolean): CompletionState {
    const capacity = pendingCapacity(maxInFlight);
    if (shared && typeof mapping.completion === 'function') {
      const { state, handle } = mapping.completion(maxInFlight, capacity, timed);
      return new CompletionState(state, maxInFlight, capacity, handle);
    }
    return new CompletionState(new ArrayBuffer(layoutOf(maxInFlight, capacity).bytes), maxInFlight, capacity, undefined);
  }

  /**
   * Take the lock; false when this thread holds it already (a nested call:
   * the outer one releases it). Spins while another thread holds it.
   */
  lock(): boolean {
    if (this.held) return false;
    const words = this.words;
    while (Atomics.compareExchange(words, Word.Lock, Lock.Free, Lock.HeldByLoop) !== Lock.Free) {
      // The other side holds it for a few hundred instructions.
    }
    this.held = true;
    return true;
  }

  /**
   * Lock held: the list of commands handed over so far (first slot + 1, 0
   * when none), taken off the lock word, which keeps the lock held.
   */
  takeHandedOver(): number {
    const words = this.words;
    if (Atomics.load(words, Word.Lock) === Lock.HeldByLoop) return 0;
    return Atomics.exchange(words, Word.Lock, Lock.HeldByLoop) >>> Lock.ListShift;
  }

  /**
   * Release the lock and return 0, or, when other threads handed commands
   * over meanwhile, keep it and return the first of them (slot index + 1;
   * follow `handedOver` from there). The caller completes those and calls
   * again: a thread can only hand over while the lock is held, so once
   * this returns 0 nothing is left behind. Sequentially consistent: every
   * write above is visible before the lock is free, and the links written
   * before a hand-over are read after the list is taken.
   */
  unlockOrTakeHandedOver(): number {
    const words = this.words;
    if (Atomics.compareExchange(words, Word.Lock, Lock.HeldByLoop, Lock.Free) === Lock.HeldByLoop) {
      this.held = false;
      return 0;
    }
    return this.takeHandedOver();
  }
}

/**
 * Byte offsets in the block (native/ring_completer.h): the header words,
 * the done slots (rounded up to an even count, so that the doubles after
 * them are 8-aligned), the pending queue's offsets and len_ops, doneAt,
 * the hand-over links.
 */
function layoutOf(maxInFlight: number, capacity: number): { pendingAt: number; doneAtAt: number; handedOverAt: number; bytes: number } {
  const doneWords = maxInFlight + (maxInFlight & 1);
  const pendingAt = (Word.Header + doneWords) * 4;
  const doneAtAt = pendingAt + 2 * capacity * 4;
  const handedOverAt = doneAtAt + maxInFlight * 8;
  return { pendingAt, doneAtAt, handedOverAt, bytes: handedOverAt + maxInFlight * 4 };
}

/**
 * performance.now() at a CLOCK_MONOTONIC time in ms: both count from the
 * same clock (libuv's uv_hrtime, which process.hrtime reads too), offset by
 * the process's time origin.
 */
export function monotonicToPerformance(monotonicMs: number): number {
  return monotonicMs - originMs;
}
const originMs = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/**
 * Consumed entries the tail has not passed: the in-flight commands plus
 * the PAD and TMR entries queued behind the oldest of them. A full queue
 * stops consumption until the tail moves (back-pressure, like a full slot
 * pool); four entries per slot leave room for far more TMRs than a LUN
 * ever gets while one command is outstanding.
 */
function pendingCapacity(maxInFlight: number): number {
  let capacity = 1024;
  while (capacity < 4 * maxInFlight) capacity *= 2;
  return capacity;
}
