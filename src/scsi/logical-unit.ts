/**
 * The state one emulated disk shares between its command handlers: the
 * store, capacity, mode page settings, pending unit attentions, the
 * COMPARE AND WRITE lock, and the small helpers every handler needs
 * (sense shortcuts, data-in scatter, I/O range validation). Handlers are
 * plain functions taking this object; ScsiDisk (./disk.ts) dispatches.
 */
import type { Logger } from 'pino';
import { isAbortError } from '../backstore/errors.js';
import type { CallOptions, LunStore, WriteOptions, WriteZeroesOptions } from '../backstore/types.js';
import { ScsiStatus, type InRing, type ScsiCommand } from './command.js';
import type { CommandTable } from './command-table.js';
import type { TargetPortGroupSource } from './alua.js';
import type { CopyPeerLookup } from './copy-peers.js';
import type { DiskIdentity } from './identity.js';
import { scatter } from '../iov.js';
import { LbaRangeLock } from './lba-lock.js';
import { IoKind, statusForStoreError } from './sense-map.js';
import { Asc, SenseKey, setSenseFieldPointer, setSenseInformation, writeSense } from './sense.js';

/** Shared, frozen write options: no allocation per write. */
const FUA_ON: WriteOptions = Object.freeze({ fua: true });
const FUA_OFF: WriteOptions = Object.freeze({ fua: false });

/** Returned by validation helpers when the command may proceed. */
export const PROCEED = -1;

/** Size of the shared buffer data-in replies are built in (INQUIRY, MODE SENSE, RSOC ...). */
const SCRATCH_BYTES = 4096;

export class LogicalUnit {
  readonly blockSize: number;
  /** Number of logical blocks; changes on refresh() after a resize. */
  capacityBlocks: number;
  /** Largest READ/WRITE transfer in blocks; 0 = no limit. */
  readonly maxTransferBlocks: number;
  /** Caching mode page WCE: when false every write is forced to FUA. */
  wce: boolean;
  /** Control mode page D_SENSE: descriptor-format sense. */
  dSense = false;
  readonly lock = new LbaRangeLock();
  /**
   * Replies are built here then scattered into the iov before any await,
   * so one buffer serves all commands of this LUN.
   */
  readonly scratch = Buffer.alloc(SCRATCH_BYTES);
  /** Pending unit attentions, oldest first, each (asc << 8) | ascq. */
  readonly unitAttentions: number[] = [];
  /** Other LUNs of the daemon EXTENDED COPY may copy from or to (none when unset). */
  copyPeers: CopyPeerLookup | undefined;
  /** See CopyEndpoint.hold: set by the daemon for a LUN other LUNs may copy from or to. */
  hold: (() => () => void) | undefined;
  /** The LUN's ALUA target port groups (INQUIRY TPGS, VPD 0x83, REPORT TARGET PORT GROUPS); unset: no ALUA. */
  portGroups: TargetPortGroupSource | undefined;

  constructor(
    readonly store: LunStore,
    readonly identity: DiskIdentity,
    readonly log: Logger | undefined,
    /** The command table in use (REPORT SUPPORTED OPERATION CODES reads it). */
    readonly commands: CommandTable,
  ) {
    this.blockSize = store.blockSize;
    this.capacityBlocks = Math.floor(store.size / store.blockSize);
    this.maxTransferBlocks = identity.maxTransferBlocks ?? 0;
    this.wce = store.writeCache;
  }

  // ---- sense shortcuts (each returns CHECK CONDITION) ----

  check(cmd: ScsiCommand, key: SenseKey, asc: Asc): number {
    writeSense(cmd.sense, this.dSense, key, asc);
    return ScsiStatus.CheckCondition;
  }

  /** 05/24/00 with a field pointer into the CDB; bit -1 = whole byte. */
  invalidCdbField(cmd: ScsiCommand, byte: number, bit = -1): number {
    writeSense(cmd.sense, this.dSense, SenseKey.IllegalRequest, Asc.InvalidFieldInCdb);
    setSenseFieldPointer(cmd.sense, true, byte, bit);
    return ScsiStatus.CheckCondition;
  }

  /** 05/26/00 with a field pointer into the parameter list. */
  invalidParameter(cmd: ScsiCommand, byte: number, bit = -1): number {
    writeSense(cmd.sense, this.dSense, SenseKey.IllegalRequest, Asc.InvalidFieldInParameterList);
    setSenseFieldPointer(cmd.sense, false, byte, bit);
    return ScsiStatus.CheckCondition;
  }

  /** 05/21/00. */
  lbaOutOfRange(cmd: ScsiCommand): number {
    return this.check(cmd, SenseKey.IllegalRequest, Asc.LbaOutOfRange);
  }

  /** 0E/1D/00 with the miscompare offset in INFORMATION (SBC-4 5.3, 5.29). */
  miscompare(cmd: ScsiCommand, offset: number): number {
    writeSense(cmd.sense, this.dSense, SenseKey.Miscompare, Asc.MiscompareDuringVerify);
    setSenseInformation(cmd.sense, offset);
    return ScsiStatus.CheckCondition;
  }

  storeFailed(cmd: ScsiCommand, err: unknown, kind: IoKind): number {
    this.log?.debug({ err, op: cmd.cdb[0] }, 'store operation failed');
    // The store honoured the abort (backstore/types.ts, "Aborts"): the
    // kernel discards this status, TASK ABORTED is the honest one.
    if (cmd.aborted && isAbortError(err)) return ScsiStatus.TaskAborted;
    return statusForStoreError(err, kind, cmd.sense, this.dSense);
  }

  // ---- per-call options (CallOptions) ----

  /**
   * Options for a store call made for `cmd`: the command's abort signal
   * when the store takes one, else nothing (no AbortController is made).
   */
  callOptions(cmd: ScsiCommand): CallOptions | undefined {
    return this.store.abortable ? { signal: cmd.signal } : undefined;
  }

  /** WriteOptions for `cmd`: shared frozen objects unless the store takes abort signals. */
  writeOptions(cmd: ScsiCommand, fua: boolean): WriteOptions {
    if (!this.store.abortable) return fua ? FUA_ON : FUA_OFF;
    return { fua, signal: cmd.signal };
  }

  /**
   * CallOptions for a read that is the whole READ command `cmd` (`bytes`
   * long): with cmd.inRing when the store may complete it in the ring.
   */
  readOptions(cmd: ScsiCommand, bytes: number): CallOptions | undefined {
    const inRing = this.inRingFor(cmd, bytes, this.readFailed);
    if (inRing === undefined) return this.callOptions(cmd);
    return this.store.abortable ? { signal: cmd.signal, inRing } : { inRing };
  }

  /** WriteOptions for a write that is the whole WRITE command `cmd`, as readOptions. */
  commandWriteOptions(cmd: ScsiCommand, bytes: number, fua: boolean): WriteOptions {
    // A FUA write to a store with a write cache may be followed by a flush
    // (LunStore): the command is not done when the write is.
    const inRing = fua && this.store.writeCache ? undefined : this.inRingFor(cmd, bytes, this.writeFailed);
    if (inRing === undefined) return this.writeOptions(cmd, fua);
    return this.store.abortable ? { fua, signal: cmd.signal, inRing } : { fua, inRing };
  }

  /**
   * cmd.inRing when the store completes in the ring and a GOOD completion
   * of `bytes` needs nothing from the engine (the whole buffer, no bidi),
   * told how to turn the store's error into a status (InRing.settle).
   */
  private inRingFor(cmd: ScsiCommand, bytes: number, failed: InRing['storeFailed']): InRing | undefined {
    const inRing = cmd.inRing;
    if (!this.store.completesInRing || inRing === undefined || bytes !== cmd.iovLength || cmd.bidiIov.length !== 0) return undefined;
    inRing.storeFailed = failed;
    return inRing;
  }

  /** storeFailed for READ and WRITE, bound once (InRing.storeFailed takes no closure per command). */
  private readonly readFailed = (cmd: ScsiCommand, err: unknown): number => this.storeFailed(cmd, err, IoKind.Read);
  private readonly writeFailed = (cmd: ScsiCommand, err: unknown): number => this.storeFailed(cmd, err, IoKind.Write);

  /** WriteZeroesOptions for `cmd`, with its abort signal when the store takes one. */
  writeZeroesOptions(cmd: ScsiCommand, unmap: boolean): WriteZeroesOptions {
    return this.store.abortable ? { unmap, signal: cmd.signal } : { unmap };
  }

  // ---- data-in ----

  /**
   * Return `length` bytes built in `src` as data-in, truncated to the
   * initiator's allocation (the iov), and record the residual.
   */
  dataIn(cmd: ScsiCommand, src: Buffer, length: number): number {
    const copied = scatter(cmd.iov, src, length);
    cmd.dataInLength = copied;
    return ScsiStatus.Good;
  }

  /** Zeroed scratch of `length` bytes (<= 4 KiB) to build a reply in. */
  reply(length: number): Buffer {
    this.scratch.fill(0, 0, length);
    return this.scratch;
  }

  // ---- I/O validation ----

  /**
   * Common checks for a media-access CDB. `lengthByte` is the CDB offset
   * of the TRANSFER LENGTH field (for the field pointer); `bytesNeeded` is
   * how much of the iov the command will touch.
   *
   * A transfer larger than the iov the kernel gave us is an initiator
   * error SPC-5 has no dedicated code for. LIO's own core rejects a write
   * whose data-out is shorter than its CDB with INVALID FIELD IN CDB, and
   * TCMU has no way to report a data-in overrun residual, so both
   * directions fail the same way, pointing at the transfer length.
   * Nothing is read or written past the iov.
   */
  validateIo(cmd: ScsiCommand, lba: number, blocks: number, lengthByte: number, bytesNeeded: number): number {
    if (lba + blocks > this.capacityBlocks) return this.lbaOutOfRange(cmd);
    if (this.maxTransferBlocks !== 0 && blocks > this.maxTransferBlocks) return this.invalidCdbField(cmd, lengthByte);
    if (bytesNeeded > cmd.iovLength) return this.invalidCdbField(cmd, lengthByte);
    return PROCEED;
  }

  /** Writes refused while the LUN is write protected (07/27/00). */
  writeProtected(cmd: ScsiCommand): number {
    return this.check(cmd, SenseKey.DataProtect, Asc.WriteProtected);
  }

  // ---- unit attention ----

  addUnitAttention(asc: number, ascq: number): void {
    const code = ((asc & 0xff) << 8) | (ascq & 0xff);
    if (!this.unitAttentions.includes(code)) this.unitAttentions.push(code);
  }

  /** Report (and clear) the oldest unit attention as sense into `sense`. */
  takeUnitAttention(sense: Buffer): void {
    const code = this.unitAttentions.shift() ?? Asc.NoAdditionalSense;
    writeSense(sense, this.dSense, SenseKey.UnitAttention, code);
  }

  refreshCapacity(): boolean {
    const blocks = Math.floor(this.store.size / this.blockSize);
    const changed = blocks !== this.capacityBlocks;
    this.capacityBlocks = blocks;
    return changed;
  }
}

/** Resolves a store promise to GOOD; used as a shared `then` callback (no closure). */
export function goodStatus(): number {
  return ScsiStatus.Good;
}

/** True for a promise-like result of a store call (the core's one promise check). */
export { isPromiseLike as isThenable } from '../backstore/maybe.js';
