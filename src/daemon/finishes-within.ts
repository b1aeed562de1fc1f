/**
 * Wait for `work` at most `ms` milliseconds: true if it settled in time
 * (a rejection is rethrown), false if not. Work still running afterwards
 * is left alone; a later rejection goes to `onLateError`, never unhandled.
 * The timer is cleared as soon as the work settles.
 */
export async function finishesWithin(work: Promise<unknown>, ms: number, onLateError: (err: unknown) => void = () => undefined): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      late = true;
      resolve(false);
    }, ms);
    timer.unref();
  });
  const settled = work.then(
    () => true as const,
    (err: unknown) => {
      if (late) {
        onLateError(err);
        return false as const;
      }
      throw err;
    },
  );
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}
