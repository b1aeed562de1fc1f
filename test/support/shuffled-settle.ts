/**
 * Scheduling for fake stores that settle calls in a scrambled but
 * reproducible order: a deterministic pseudo-random turn count, then the
 * callback after that many event-loop turns (0 = the next microtask).
 */

/** A seeded linear congruential generator (31-bit results). */
export function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
}

/** Run `fn` after `turns` setImmediate turns; 0 runs it as a microtask. */
export function afterTurns(turns: number, fn: () => void): void {
  if (turns === 0) queueMicrotask(fn);
  else setImmediate(() => afterTurns(turns - 1, fn));
}
