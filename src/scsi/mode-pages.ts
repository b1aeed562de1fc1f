/**
 * The mode pages we keep (SPC-5 7.5, SBC-4 6.5): read-write error recovery
 * (0x01, nothing changeable), caching (0x08, WCE changeable when the store
 * has a volatile cache) and control (0x0A, D_SENSE changeable). Settings
 * are per logical unit (not per I_T nexus) and not saveable.
 */
import type { LogicalUnit } from './logical-unit.js';

/** Page control field of MODE SENSE. */
export const enum PageControl {
  Current = 0,
  Changeable = 1,
  Default = 2,
  Saved = 3,
}

export interface ModePage {
  readonly code: number;
  /** Total length including the 2-byte header. */
  readonly length: number;
  /** Write the page (zeroed area) for the given page control. */
  build(lu: LogicalUnit, pc: PageControl, buf: Buffer, at: number): void;
  /** Adopt the changeable fields of a validated page. */
  apply(lu: LogicalUnit, page: Buffer, at: number): void;
}

const WCE = 0x04;
const D_SENSE = 0x04;

const readWriteErrorRecovery: ModePage = {
  code: 0x01,
  length: 12,
  build(_lu, _pc, buf, at) {
    buf[at] = 0x01;
    buf[at + 1] = 10;
    // All zero: no automatic reallocation, no retries to tune; errors are
    // reported as they come from the store.
  },
  apply() {},
};

const caching: ModePage = {
  code: 0x08,
  length: 20,
  build(lu, pc, buf, at) {
    buf[at] = 0x08;
    buf[at + 1] = 18;
    let wce: boolean;
    if (pc === PageControl.Changeable) wce = lu.store.writeCache;
    else if (pc === PageControl.Default) wce = lu.store.writeCache;
    else wce = lu.wce;
    if (wce) buf[at + 2] |= WCE;
  },
  apply(lu, page, at) {
    lu.wce = (page[at + 2] & WCE) !== 0;
  },
};

const control: ModePage = {
  code: 0x0a,
  length: 12,
  build(lu, pc, buf, at) {
    buf[at] = 0x0a;
    buf[at + 1] = 10;
    if (pc === PageControl.Changeable) {
      buf[at + 2] = D_SENSE;
      return;
    }
    // GLTSD: we keep no log parameters to save.
    buf[at + 2] = 0x02 | (pc === PageControl.Current && lu.dSense ? D_SENSE : 0);
    // QUEUE ALGORITHM MODIFIER 1: commands may be reordered (we complete
    // out of order); QERR 00: other commands survive a CHECK CONDITION.
    buf[at + 3] = 0x10;
  },
  apply(lu, page, at) {
    lu.dSense = (page[at + 2] & D_SENSE) !== 0;
  },
};

/** In ascending page code order, as MODE SENSE 0x3F returns them. */
export const MODE_PAGES: readonly ModePage[] = [readWriteErrorRecovery, caching, control];

export function findModePage(code: number): ModePage | undefined {
  return MODE_PAGES.find((p) => p.code === code);
}
