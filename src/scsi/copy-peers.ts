/**
 * What EXTENDED COPY needs to reach another LUN of the same daemon. The
 * copy manager (the LUN that received the command) names its source and
 * destination by NAA designator (VPD 0x83); the daemon answers with the
 * served LUN that has it, or undefined when that LUN is not served here
 * (the initiator then gets COPY TARGET DEVICE NOT REACHABLE).
 */
import type { LunStore } from '../backstore/types.js';
import type { LbaRangeLock } from './lba-lock.js';

export interface CopyEndpoint {
  readonly store: LunStore;
  readonly blockSize: number;
  readonly capacityBlocks: number;
  /** Caching mode page WCE: when false, copied writes are FUA. */
  readonly wce: boolean;
  /** COMPARE AND WRITE's range lock: a copy waits for it like a WRITE does. */
  readonly lock: LbaRangeLock;
  /**
   * Keeps this LUN's store open until the returned release is called: a LUN
   * that stops or swaps its store waits for the peers' copies in progress
   * instead of closing the store under them. Absent: nothing to wait for.
   */
  readonly hold?: () => () => void;
}

/** The LUN served by this daemon whose NAA designator is `naa`, if any. */
export type CopyPeerLookup = (naa: Buffer) => CopyEndpoint | undefined;
