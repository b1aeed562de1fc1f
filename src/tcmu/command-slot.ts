/**
 * One pooled ScsiCommand. The engine owns maxInFlight of these, created once;
 * decoding a ring entry refills a free slot in place, so nothing is allocated
 * per command except the Buffer views over the data area that JS forces.
 */
import { Buffer } from 'node:buffer';
import type { ScsiCommand } from '../scsi/command.js';
import { MAX_CDB_LENGTH, SENSE_SIZE } from './ring-layout.js';

/** iov arrays of these lengths are cached per slot; longer ones are allocated (rare). */
const CACHED_IOV_ARRAYS = 32;

const NO_BUFFERS: readonly Buffer[] = Object.freeze([]);

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

  // Engine bookkeeping, not part of ScsiCommand.
  /** Kernel command id of the entry this slot holds. */
  cmdId = 0;
  /** Ring-relative offset of the entry (in-order completion writes there). */
  entryOffset = 0;
  /** The entry's len_op when consumed (checked unchanged before the response is written). */
  entryLenOp = 0;
  /** Completed (status known) but not yet passed by the tail (in-order mode). */
  done = false;

  private readonly cdbStorage: Buffer;
  /** cdb views of each length over cdbStorage, made on first use. */
  private readonly cdbViews: (Buffer | undefined)[] = new Array<Buffer | undefined>(MAX_CDB_LENGTH + 1);
  private readonly dataArrays: Buffer[][] = [];
  private readonly bidiArrays: Buffer[][] = [];

  /**
   * Promise callbacks bound once per slot (no closure per command). A slot
   * is only reused after its promise settled, so they always refer to the
   * current command.
   */
  onResolve: (status: number) => void = () => {};
  onReject: (err: unknown) => void = () => {};

  constructor(
    readonly index: number,
    senseStorage: Buffer,
    cdbStorage: Buffer,
  ) {
    this.sense = senseStorage;
    this.cdbStorage = cdbStorage;
    this.cdb = this.cdbView(6);
    for (let n = 0; n <= CACHED_IOV_ARRAYS; n++) {
      this.dataArrays.push(new Array<Buffer>(n));
      this.bidiArrays.push(new Array<Buffer>(n));
    }
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
    return count <= CACHED_IOV_ARRAYS ? this.dataArrays[count]! : new Array<Buffer>(count);
  }

  bidiArray(count: number): Buffer[] {
    return count <= CACHED_IOV_ARRAYS ? this.bidiArrays[count]! : new Array<Buffer>(count);
  }

  /** Reset the per-command fields before a new entry is decoded into the slot. */
  reset(cmdId: number, entryOffset: number, entryLenOp: number): void {
    this.cmdId = cmdId;
    this.entryOffset = entryOffset;
    this.entryLenOp = entryLenOp;
    this.done = false;
    this.aborted = false;
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
