/**
 * Counts the users of something its owner wants to close (a LUN's store
 * while other LUNs' EXTENDED COPY reads or writes it), and lets the owner
 * wait until none is left.
 */
export class UseCount {
  private count = 0;
  private waiters: Array<() => void> = [];

  /** One more user; the returned release is idempotent. */
  enter(): () => void {
    this.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.count === 0) for (const wake of this.waiters.splice(0)) wake();
    };
  }

  get users(): number {
    return this.count;
  }

  /** Resolves once there are no users (at once if there are none now). */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
