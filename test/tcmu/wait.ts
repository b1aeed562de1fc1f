/**
 * Let the event loop turn until `cond` holds. Not a speed assertion: first
 * a bounded number of turns (setImmediate, fast when the awaited work stays
 * in this process), then, for work that waits on the thread pool or another
 * process on a loaded machine (a CI run beside a VM), timer sleeps up to
 * `graceMs` before giving up.
 */
export async function waitFor(cond: () => boolean, what: string, turns = 20_000, graceMs = 10_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (let waited = 0; waited < graceMs; waited += 10) {
    if (cond()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (cond()) return;
  throw new Error(`gave up waiting for: ${what}`);
}

/** A few event-loop turns, to show something does NOT happen. */
export async function settle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}
