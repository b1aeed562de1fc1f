/**
 * The boundary between the ring engine (src/tcmu) and SCSI emulation
 * (src/scsi). The engine owns a fixed pool of ScsiCommand objects (one per
 * possible in-flight command), fills one per ring entry and hands it to
 * `ScsiTarget.execute`; nothing here is allocated per command.
 */
import type { RingCompletionHandle } from '../native.js';

export interface ScsiCommand {
  /** The CDB, copied out of the ring (its length is exactly the CDB's length). */
  readonly cdb: Buffer;
  /**
   * The data buffer: zero-copy views over the kernel's data area. For a
   * data-out command (WRITE) it holds what the initiator sent; for a data-in
   * command (READ, INQUIRY) the emulation fills it. Empty for no-data commands.
   */
  readonly iov: readonly Buffer[];
  /** Sum of the iov lengths: the initiator's allocation / transfer length. */
  readonly iovLength: number;
  /** Bidirectional commands only: the data-in half (data-out is `iov`). */
  readonly bidiIov: readonly Buffer[];
  /**
   * 96 bytes the emulation writes sense data into when it returns CHECK
   * CONDITION; the engine copies it to the ring entry.
   */
  readonly sense: Buffer;
  /**
   * How many bytes at the start of the data-in buffer (`iov`, or `bidiIov`
   * for a bidirectional command) the command produced. The engine presets 0
   * and, on every completion that is not CHECK CONDITION, makes sure no byte
   * beyond it reaches the initiator (READ_LEN, or zero-filled where READ_LEN
   * cannot say it): the data area holds whatever earlier commands left there.
   * A command that read `iov` as data-out sets it to `iovLength` (those bytes
   * are the initiator's own). Never -1 / "all": say how many.
   */
  dataInLength: number;
  /** Set by the engine when a TMR aborted this command; long operations may check it. */
  aborted: boolean;
  /**
   * Aborted together with `aborted` (reason: a StorageError 'ECANCELED').
   * The engine's commands create it on first access, so a command that
   * never asks costs no AbortController; absent in bare test commands.
   * Pass it to the store only when `store.abortable` (LogicalUnit helpers).
   */
  readonly signal?: AbortSignal;
  /**
   * Set when another thread may complete this command GOOD straight in the
   * ring (the engine's ring offers it: out-of-order completion, and a
   * mapping that shares its completion side). LogicalUnit passes it to a
   * store that declares `completesInRing`, for READ and WRITE only.
   */
  readonly inRing?: InRing;
}

/** What an addon needs to complete one command in its ring (NativeRbd's readv/writev). */
export interface InRing {
  readonly ring: RingCompletionHandle;
  /** The command's slot in the engine. */
  readonly index: number;
  readonly cmdId: number;
  /**
   * Set by the SCSI layer before it hands this to a store: turns the store's
   * error into the command's status (writing its sense), as a rejected
   * store call would. Used by `settle`.
   */
  storeFailed: (cmd: ScsiCommand, err: unknown) => number;
  /**
   * STORE_COMPLETES_IN_RING itself, for a store to return: a handler that
   * loads its own copy of tcmu-ts would import a different object, which
   * the SCSI layer would not recognise.
   */
  readonly takenOver: Promise<never>;
  /**
   * For a store call that returned STORE_COMPLETES_IN_RING and whose
   * command the other thread did NOT complete (an error, a short read, a
   * ring closed to other threads): finish the command here, once, after
   * the call returned. `err` undefined is GOOD.
   */
  settle(err: Error | undefined): void;
}

/**
 * What a store returns, instead of a promise, from a call given
 * CallOptions.inRing when it has taken the command over: the command is
 * then completed in the ring by another thread, or else through
 * InRing.settle. It never settles (the command needs no promise at all:
 * each one costs an allocation and, with AsyncLocalStorage in use, Node's
 * promise hooks). Only the SCSI layer that passed `inRing` may see it.
 */
export const STORE_COMPLETES_IN_RING: Promise<never> = new Promise<never>(() => {});

/**
 * ScsiTarget.execute's answer (or what its promise resolves to) for a
 * command a store took over (STORE_COMPLETES_IN_RING): not a status, the
 * engine leaves the command to the other thread or to InRing.settle.
 */
export const STATUS_LEFT_TO_STORE = -1;

/** SCSI status bytes (SAM-5). */
export const enum ScsiStatus {
  Good = 0x00,
  CheckCondition = 0x02,
  ConditionMet = 0x04,
  Busy = 0x08,
  ReservationConflict = 0x18,
  TaskSetFull = 0x28,
  TaskAborted = 0x40,
}

/** What the engine drives: a logical unit that executes commands. */
export interface ScsiTarget {
  /**
   * Execute one command; returns the SCSI status (sense written into
   * cmd.sense on CHECK CONDITION). May return synchronously: the engine
   * completes such commands in the same batch without a promise.
   * STATUS_LEFT_TO_STORE (only for a command with `inRing`) means the
   * command is completed elsewhere.
   * Never throws: every failure becomes a status.
   */
  execute(cmd: ScsiCommand): number | Promise<number>;
}
