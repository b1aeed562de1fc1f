/**
 * A grace period for guest reads before host clusters are freed.
 *
 * A read looks up its L2 entries first and reads the host bytes after. If
 * the mapping moves in between (online compaction relocating a payload) and
 * the old host cluster is freed, handed out again or punched, the read
 * returns someone else's bytes or zeros. So frees wait until every read
 * that started before them has finished.
 *
 * Two epochs and two counters, as RCU does it: a read enters the current
 * epoch and leaves it; `wait()` flips the epoch and waits for the old one to
 * empty. Reads started after the flip already see the new mappings (they
 * changed before the frees were taken), so they are not waited for. No
 * allocation per read; a wait is bounded by the reads in flight at the flip.
 */
export class ReadGrace {
  private readonly active = [0, 0];
  private epoch = 0;
  private drained?: () => void;
  /** The wait in progress: the next one flips only after it (each must see its old epoch empty). */
  private draining?: Promise<void>;

  /** A read starts; pass the result to leave(). */
  enter(): number {
    this.active[this.epoch]!++;
    return this.epoch;
  }

  leave(epoch: number): void {
    if (--this.active[epoch]! === 0 && epoch !== this.epoch) this.drained?.();
  }

  /** Resolves once every read that entered before this call has left. */
  wait(): Promise<void> {
    // With no wait in progress the flip happens now, inside this call, so a
    // read entering right after it is not waited for.
    const drained = this.draining ? this.draining.then(() => this.flipAndDrain()) : this.flipAndDrain();
    const tracked = drained.finally(() => {
      if (this.draining === tracked) this.draining = undefined;
    });
    this.draining = tracked;
    return tracked;
  }

  private async flipAndDrain(): Promise<void> {
    const old = this.epoch;
    this.epoch ^= 1;
    if (this.active[old] === 0) return;
    await new Promise<void>((resolve) => (this.drained = resolve));
    this.drained = undefined;
  }
}
