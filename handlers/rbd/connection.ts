/**
 * The LUN's cluster connection and open image, replaced when the cluster
 * fences this client.
 *
 * Ceph fences a client by blocklisting its address: every later operation
 * of that client fails with EBLOCKLISTED (ESHUTDOWN), for good. It happens
 * when another client breaks this one's exclusive lock: another gateway
 * after this host was cut off from the cluster for longer than the watch
 * timeout, an admin's `rbd lock rm`, or a restarted daemon fencing what it
 * took for its dead predecessor (./predecessor.ts). Without a new
 * connection the LUN would answer MEDIUM ERROR to every command until the
 * daemon restarts.
 *
 * So the first operation that fails with ESHUTDOWN starts one reopen (a new
 * connection, which gets a new address, and the image opened on it); that
 * command fails with ETIMEDOUT (ABORTED COMMAND, which the initiator
 * retries), never retried here: the fenced write did not reach the image,
 * and whether it still should, after whatever the other client wrote since,
 * is the initiator's call. Commands arriving while the reopen runs wait for
 * it, then go to the new image; the new client takes the exclusive lock
 * back through librbd's normal hand-over at its first write.
 */
import type { Logger } from 'pino';
import { StorageError } from '../../src/backstore/errors.js';
import type { LockHolder } from '../../src/backstore/types.js';
import type { InRing } from '../../src/scsi/command.js';
import type { FailureMap, RbdImage, RbdSession } from './librbd.js';
import { predecessorOwner } from './predecessor.js';

export interface RbdHandles {
  session: RbdSession;
  image: RbdImage;
}

function fenced(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'ESHUTDOWN';
}

export class RbdConnection {
  private handles: RbdHandles;
  /** failureOn(handles.image), made once per image. */
  private failure: FailureMap;
  private reopening: Promise<void> | undefined;
  private closed = false;
  private readonly onImage: ((image: RbdImage) => void)[] = [];

  constructor(
    initial: RbdHandles,
    /** Connect again and open the same image (the handler's open, without its checks). */
    private readonly reopen: () => Promise<RbdHandles>,
    private readonly log: Logger,
  ) {
    this.handles = initial;
    this.failure = this.failureOn(initial.image);
  }

  /** The image in use now (size, watch). */
  get image(): RbdImage {
    return this.handles.image;
  }

  /** Run `fn` on this image and on every image a reopen puts in its place (header watches). */
  eachImage(fn: (image: RbdImage) => void): void {
    this.onImage.push(fn);
    fn(this.handles.image);
  }

  /**
   * One librbd call on the current image; `op` hands `failure` to the call,
   * which maps its error (see the module comment for ESHUTDOWN). Passed down
   * rather than added as a .catch here: one promise per data-path call.
   */
  run<T>(op: (image: RbdImage, failure: FailureMap) => Promise<T>): Promise<T> {
    if (this.reopening) return this.reopening.then(() => op(this.handles.image, this.failure));
    return op(this.handles.image, this.failure);
  }

  /**
   * A READ or WRITE that takes its command over (CallOptions.inRing):
   * STORE_COMPLETES_IN_RING, no promise. While a reopen is under way it
   * waits for it as `run` does, and settles as a plain call.
   */
  readInRing(offset: number, iov: readonly Buffer[], inRing: InRing): Promise<void> {
    if (this.reopening) return this.run((image, failure) => image.readv(offset, iov, failure));
    return this.handles.image.readvInRing(offset, iov, this.failure, inRing);
  }

  writeInRing(offset: number, iov: readonly Buffer[], inRing: InRing): Promise<void> {
    if (this.reopening) return this.run((image, failure) => image.writev(offset, iov, failure));
    return this.handles.image.writevInRing(offset, iov, this.failure, inRing);
  }

  /** The failure map of operations on `image`: a fenced one starts the reopen. */
  private failureOn(image: RbdImage): FailureMap {
    return (err) => {
      if (!fenced(err) || this.closed) return err;
      this.startReopen(image);
      return new StorageError('ETIMEDOUT', `rbd ${image.name}: this client was blocklisted by the cluster (its exclusive lock was broken by another client); reconnecting`, { cause: err });
    };
  }

  private startReopen(failed: RbdImage): void {
    if (this.reopening || this.handles.image !== failed) return; // already under way, or done
    this.log.warn({ image: failed.name }, 'rbd: blocklisted by the cluster; opening the image on a new connection');
    this.reopening = (async () => {
      const old = this.handles;
      try {
        const next = await this.reopen();
        if (this.closed) {
          await next.image.close().catch(() => {});
          await next.session.shutdown().catch(() => {});
          return;
        }
        this.handles = next;
        this.failure = this.failureOn(next.image);
        for (const fn of this.onImage) {
          try {
            fn(next.image);
          } catch (err) {
            this.log.warn({ err, image: next.image.name }, 'rbd: the reopened image is served without its header watch');
          }
        }
        this.log.info({ image: next.image.name }, 'rbd: serving again on a new connection');
      } catch (err) {
        // The next fenced command tries again.
        this.log.error({ err, image: failed.name }, 'rbd: cannot reconnect after being blocklisted');
        return;
      } finally {
        this.reopening = undefined;
      }
      await closeQuietly(old);
    })();
  }

  /**
   * Who holds the image's exclusive lock now (one cluster round trip). The
   * owner list names clients by entity address, so this client is found the
   * way a dead predecessor is (./predecessor.ts).
   */
  async lockHolder(): Promise<LockHolder> {
    if (this.reopening) await this.reopening;
    const { session, image } = this.handles;
    const owners = await image.lockOwners();
    if (owners.length === 0) return 'none';
    return predecessorOwner(owners, session.instanceAddress()) !== undefined ? 'this' : 'other';
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reopening;
    const { image, session } = this.handles;
    try {
      await image.close();
    } finally {
      await session.shutdown();
    }
  }
}

/** A fenced client's close may fail (its flush is refused); it is gone either way. */
async function closeQuietly(handles: RbdHandles): Promise<void> {
  await handles.image.close().catch(() => {});
  await handles.session.shutdown().catch(() => {});
}
