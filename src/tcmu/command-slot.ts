/**
 * One pooled ScsiCommand. The engine owns maxInFlight of these, created once;
 * decoding a ring entry refills a free slot in place, so nothing is allocated
 * per command except the Buffer views over the data area that JS forces.
 */
import { Buffer } from 'node:buffer';
import { StorageError } from '../backstore/errors.js';
import { STORE_COMPLETES_IN_RING, type InRing, type ScsiCommand } from '../scsi/command.js';
import type { RingCompletionHandle } from '../native.js';
import { MAX_CDB_LENGTH, SENSE_SIZE, TmrType } from './ring-layout.js';

/**
 * iov arrays of these lengths are cached per slot, each made on its first
 * use; longer ones are allocated (rare). Made up front, the 66 arrays of
 * every length cost each LUN 1.9 MB of heap (128 slots) that a LUN whose
 * commands all carry one iovec never touches.
 */
const CACHED_IOV_ARRAYS = 32;

const NO_BUFFERS: readonly Buffer[] = Object.freeze([]);

/** `cache`'s array of `count` elements, made on first use; a fresh one past CACHED_IOV_ARRAYS. */
function cachedArray(cache: (Buffer[] | undefined)[], count: number): Buffer[] {
  return count <= CACHED_IOV_ARRAYS ? (cache[count] ??= new Array<Buffer>(count)) : new Array<Buffer>(count);
}

export class CommandSlot implements ScsiCommand {
  cdb: Buffer;
  iov: readonly Buffer[] = NO_BUFFERS;
  iovLength = 0;
  bidiIov: readonly Buffer[] = NO_BUFFERS;
  /** Sum of the bidiIov lengths. */
  bidiLength = 0;
  readonly sense: Buffer;
  dataInLength = 0;
  aborted = false;
  /**
   * The slot's AbortController, made on the first `signal` access and kept
   * for the slot's next commands until it fires: creating an AbortSignal
   * costs microseconds (measured ~3 us in Node 20), more than a whole
   * synchronous READ, so abortable stores must not pay it per command.
   */
  private controller: AbortController | undefined;
  /** `controller` has fired: the next command needs a new one. */
  private controllerFired = false;

  // Engine bookkeeping, not part of ScsiCommand.
  /** Kernel command id of the entry this slot holds. */
  cmdId = 0;
  /** Ring-relative offset of the entry (in-order completion writes there). */
  entryOffset = 0;
  /** The entry's len_op when consumed (checked unchanged before the response is written). */
  entryLenOp = 0;
  /** Completed (status known) but not yet passed by the tail (in-order mode). */
  done = false;
  /** The engine's ring completion handle, when other threads may complete in its ring. */
  ring: RingCompletionHandle | undefined = undefined;

  /** ScsiCommand.inRing: this slot itself, when its ring takes completions from other threads. */
  get inRing(): InRing | undefined {
    return this.ring === undefined ? undefined : (this as InRing);
  }

  /** InRing.takenOver. */
  get takenOver(): Promise<never> {
    return STORE_COMPLETES_IN_RING;
  }

  /** InRing.storeFailed; until the SCSI layer sets it, any error fails the command as invalid. */
  storeFailed: (cmd: ScsiCommand, err: unknown) => number = invalidStatus;

  /** InRing.settle: completes the command as the store call's promise would have (the engine's onSettle). */
  settle(err: Error | undefined): void {
    this.onSettle(err);
  }

  private readonly cdbStorage: Buffer;
  /** cdb views of each length over cdbStorage, made on first use. */
  private readonly cdbViews: (Buffer | undefined)[] = new Array<Buffer | undefined>(MAX_CDB_LENGTH + 1);
  private readonly dataArrays: (Buffer[] | undefined)[] = new Array<Buffer[] | undefined>(CACHED_IOV_ARRAYS + 1);
  private readonly bidiArrays: (Buffer[] | undefined)[] = new Array<Buffer[] | undefined>(CACHED_IOV_ARRAYS + 1);

  /**
   * Promise callbacks bound once per slot (no closure per command). A slot
   * is only reused after its promise settled, so they always refer to the
   * current command.
   */
  onResolve: (status: number) => void = () => {};
  onReject: (err: unknown) => void = () => {};
  onSettle: (err: Error | undefined) => void = () => {};

  constructor(
    readonly index: number,
    senseStorage: Buffer,
    cdbStorage: Buffer,
  ) {
    this.sense = senseStorage;
    this.cdbStorage = cdbStorage;
    this.cdb = this.cdbView(6);
  }

  /** Copy the CDB out of the ring (the entry may be overwritten by an OOOC response). */
  setCdb(source: Uint8Array, offset: number, length: number): void {
    // A byte loop: CDBs are 6-16 bytes, where subarray()+set() would
    // allocate a view per command and cost more than the copy.
    const storage = this.cdbStorage;
    for (let i = 0; i < length; i++) storage[i] = source[offset + i]!;
    this.cdb = this.cdbView(length);
  }

  /** An array of exactly `count` elements to fill with data-out / data-in views. */
  dataArray(count: number): Buffer[] {
    return cachedArray(this.dataArrays, count);
  }

  bidiArray(count: number): Buffer[] {
    return cachedArray(this.bidiArrays, count);
  }

  /**
   * The command's abort signal (ScsiCommand.signal); already aborted if a
   * TMR came first. Shared with the slot's earlier commands while it has
   * not fired, which is why a store must not keep it, nor leave a listener
   * on it, after its call settled (backstore/types.ts, CallOptions).
   */
  get signal(): AbortSignal {
    let controller = this.controller;
    if (controller === undefined) controller = this.controller = new AbortController();
    if (this.aborted && !this.controllerFired) this.fire(controller);
    return controller.signal;
  }

  /** TMR type that aborted the command (valid when `aborted`). */
  private abortedBy = 0;

  /** A TMR of type `tmrType` aborted this command: mark it and fire its signal if one exists. */
  abort(tmrType: number): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortedBy = tmrType;
    if (this.controller !== undefined) this.fire(this.controller);
  }

  private fire(controller: AbortController): void {
    this.controllerFired = true;
    controller.abort(abortReason(this.abortedBy));
  }

  /** Reset the per-command fields before a new entry is decoded into the slot. */
  reset(cmdId: number, entryOffset: number, entryLenOp: number): void {
    this.cmdId = cmdId;
    this.entryOffset = entryOffset;
    this.entryLenOp = entryLenOp;
    this.done = false;
    this.aborted = false;
    if (this.controllerFired) {
      this.controller = undefined;
      this.controllerFired = false;
    }
    this.dataInLength = 0;
    this.iov = NO_BUFFERS;
    this.bidiIov = NO_BUFFERS;
    this.iovLength = 0;
    this.bidiLength = 0;
  }

  private cdbView(length: number): Buffer {
    let view = this.cdbViews[length];
    if (view === undefined) {
      view = this.cdbStorage.subarray(0, length);
      this.cdbViews[length] = view;
    }
    return view;
  }
}

const TMR_NAMES: Record<number, string> = {
  [TmrType.AbortTask]: 'ABORT TASK',
  [TmrType.AbortTaskSet]: 'ABORT TASK SET',
  [TmrType.ClearAca]: 'CLEAR ACA',
  [TmrType.ClearTaskSet]: 'CLEAR TASK SET',
  [TmrType.LunReset]: 'LUN RESET',
  [TmrType.TargetWarmReset]: 'TARGET WARM RESET',
  [TmrType.TargetColdReset]: 'TARGET COLD RESET',
  [TmrType.LunResetPro]: 'PREEMPT AND ABORT',
};

/** The signal's reason: ECANCELED maps to TASK ABORTED wherever a store passes it on. */
function abortReason(tmrType: number): StorageError {
  return new StorageError('ECANCELED', `command aborted by ${TMR_NAMES[tmrType] ?? `task management function ${tmrType}`}`);
}

/** Not a status: the engine fails the command (HARDWARE ERROR) and logs it. */
function invalidStatus(): number {
  return Number.NaN;
}

/** Create `count` slots whose sense and CDB buffers share two allocations. */
export function createSlots(count: number): CommandSlot[] {
  const sense = Buffer.alloc(count * SENSE_SIZE);
  const cdbStride = MAX_CDB_LENGTH + 4;
  const cdbs = Buffer.alloc(count * cdbStride);
  const slots: CommandSlot[] = [];
  for (let i = 0; i < count; i++) {
    slots.push(
      new CommandSlot(
        i,
        sense.subarray(i * SENSE_SIZE, (i + 1) * SENSE_SIZE),
        cdbs.subarray(i * cdbStride, i * cdbStride + MAX_CDB_LENGTH),
      ),
    );
  }
  return slots;
}
