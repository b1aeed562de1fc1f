/**
 * When small writes may run on the event loop (uring-io.ts). A blocking
 * pwritev there is cheaper than a trip through an io-wq worker and a second
 * wake-up of the loop, but while it waits (dirty-page throttling when the
 * disk cannot keep up, memory reclaim, a contended inode) every LUN of the
 * daemon waits with it. So the guard watches how long inline writes take and
 * sends all writes back to the io_uring for a while when:
 * - one write took longer than STALL_MS (it was made to sleep), or
 * - inline writes took more than BUSY_MS of one WINDOW_MS window (the loop
 *   spent half its time copying into the page cache).
 * The limits are wall-clock and generous on purpose: a preempted thread also
 * looks slow, and under emulation (the test VM) a 2 ms limit tripped on
 * preemption alone and kept writes off the event loop.
 *
 * Times come from the coarse monotonic clock (native monotonicCoarseMs,
 * one tick of resolution), which the addon reads around each inline write
 * without a system call. A write's measured time is a whole number of
 * ticks: a write that slept past STALL_MS plus one tick always trips the
 * limit, and the busy sum over many short writes is right on average.
 */
const STALL_MS = 20;
const WINDOW_MS = 100;
const BUSY_MS = 50;
const PAUSE_MS = 5000;

export class InlineWriteGuard {
  /** Times writes were sent back to the io_uring, since creation. */
  pauses = 0;
  private pausedUntil = 0;
  private windowStart = 0;
  private busyInWindow = 0;

  constructor(private readonly stallMs = STALL_MS) {}

  /** Whether writes may be paused: only then does allows() need the time. */
  get pausing(): boolean {
    return this.pausedUntil !== 0;
  }

  /** May a write run inline at time `now` (ms, the clock record() gets)? */
  allows(now: number): boolean {
    if (now < this.pausedUntil) return false;
    this.pausedUntil = 0;
    return true;
  }

  /** An inline write started at `start` took `took` ms. */
  record(start: number, took: number): void {
    if (start - this.windowStart >= WINDOW_MS) {
      this.windowStart = start;
      this.busyInWindow = 0;
    }
    this.busyInWindow += took;
    if (took > this.stallMs || this.busyInWindow > BUSY_MS) {
      this.pausedUntil = start + took + PAUSE_MS;
      this.busyInWindow = 0;
      this.pauses++;
    }
  }
}
