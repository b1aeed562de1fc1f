/** Let the event loop turn until `cond` holds (no wall-clock assertions: a bounded number of turns). */
export async function waitFor(cond: () => boolean, what: string, turns = 20_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`gave up waiting for: ${what}`);
}

/** A few event-loop turns, to show something does NOT happen. */
export async function settle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}
