/**
 * The daemon's last line of defence: an unhandled promise rejection or an
 * uncaught exception (a bug in a handler, most likely) must not take down
 * every LUN the process serves. Each LUN runs its ring engine inside its own
 * AsyncLocalStorage context, entered around each batch of commands the
 * engine starts (RingEngineOptions.enter: the commands' promise chains and
 * every timer or callback they create inherit it). Entering it once when the
 * engine starts watching its ring is not enough: the addon's watch callbacks
 * did not reliably carry the context with several rings in one process
 * (measured: commands ran with no store). Node 20 runs the 'unhandledRejection'
 * listener in the async context of the promise that was rejected (where it
 * was created), and 'uncaughtException' in the context of the callback that
 * threw, so the context names the LUN at fault: that LUN alone fails
 * (Lun.fail: stop consuming, block_dev, status 'failed').
 *
 * A fault outside any LUN's context (daemon code: netlink, control socket,
 * the shared io_uring's own callbacks) is logged at error level and counted
 * in `status`; the daemon keeps serving. Exiting would drop every LUN at
 * once (their commands time out until a restart resets the rings), which
 * is worse for the initiators than continuing; the count tells an operator
 * that a restart is due.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from 'pino';

/** What a fault can be attributed to (a Lun). */
export interface FaultOwner {
  readonly id: string;
  fail(err: unknown, source: string): void;
}

export interface FaultCounts {
  /** Faults attributed to a LUN (which was failed). */
  attributed: number;
  /** Faults outside any LUN (logged; the daemon kept serving). */
  unattributed: number;
}

export class FaultGuard {
  readonly counts: FaultCounts = { attributed: 0, unattributed: 0 };
  private readonly context = new AsyncLocalStorage<FaultOwner>();
  private uninstall: (() => void) | undefined;

  constructor(private readonly log: Logger | undefined) {}

  /** Run `fn(arg)` so that everything it starts (callbacks, promises, timers) is attributed to `owner`. */
  within<A, T>(owner: FaultOwner, fn: (arg: A) => T, arg: A): T {
    return this.context.run(owner, fn, arg);
  }

  /** Run `fn` outside every owner's context (resources shared by all LUNs are created here). */
  outside<T>(fn: () => T): T {
    return this.context.exit(fn);
  }

  /** The owner of the code running now, if any. */
  current(): FaultOwner | undefined {
    return this.context.getStore();
  }

  /** Listen for process-level faults (idempotent). */
  install(): void {
    if (this.uninstall) return;
    const onRejection = (reason: unknown) => this.handle(reason, 'unhandled promise rejection');
    const onException = (err: unknown, origin: string) => this.handle(err, origin === 'unhandledRejection' ? 'unhandled promise rejection' : 'uncaught exception');
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    this.uninstall = () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    };
  }

  /**
   * Stop listening and leave every owner's context. On Node 20 an
   * AsyncLocalStorage in use keeps the process's promise hooks on (every
   * promise created pays for them); disabling it lets them go.
   */
  remove(): void {
    this.uninstall?.();
    this.uninstall = undefined;
    this.context.disable();
  }

  /** Attribute one fault: fail its LUN, or log and count it. Never throws. */
  handle(err: unknown, source: string): void {
    const owner = this.context.getStore();
    if (owner !== undefined) {
      this.counts.attributed++;
      this.log?.error({ err, lun: owner.id, source }, `${source} in LUN ${owner.id}: failing that LUN, the others keep serving`);
      try {
        owner.fail(err, source);
      } catch (failErr) {
        this.log?.error({ err: failErr, lun: owner.id }, 'failing the LUN threw');
      }
      return;
    }
    this.counts.unattributed++;
    this.log?.error({ err, source, unattributed: this.counts.unattributed }, `${source} outside any LUN: logged, the daemon keeps serving`);
  }
}
