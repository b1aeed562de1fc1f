/**
 * The handler contract. A handler is a plain object that opens backstores;
 * a backstore is an opened LUN image. Only `read` and `close` are required:
 * every optional method has a core default (see ./lun-store.ts), so a RAM disk
 * fits in a few dozen lines and a layer (crypt, qcow2) only implements what
 * it changes.
 *
 * Conventions shared by every method:
 * - offsets and lengths are in bytes, as JS numbers (exact up to 8 PiB);
 * - the core has already validated ranges and alignment: `offset + length
 *   <= size`, multiples of `blockSize`. Handlers trust their inputs;
 * - `iov` is a list of Buffers that are views over the kernel's data area
 *   (zero copy). A read must fill every byte of every Buffer; a write must
 *   consume them all. Do not keep references after the promise settles;
 * - a method may return a value or a promise; the core handles both, so a
 *   synchronous handler (ram) pays no promise per command;
 * - failures are thrown (or rejected) errors carrying a `code`: Node's own
 *   errno codes ('EIO', 'ENOSPC', 'EROFS', ...) or a StorageError code
 *   (./errors.ts). The core maps codes to SCSI sense in one place.
 *
 * Concurrency: calls overlap. The ring engine starts each command the
 * moment it is consumed, up to 128 at once per LUN (the kernel's
 * hw_queue_depth), so a store sees reads beside reads and writes, writes
 * beside writes (even to the same blocks), flush, discard, writeZeroes and
 * blockStatus beside all of them, and resize beside I/O (it comes from the
 * control socket or a RECONFIG while the ring runs; after a shrink,
 * commands checked against the old size may arrive until resize settles).
 * Precisely:
 * - calls START in the order the kernel queued the commands, except that a
 *   WRITE overlapping a running COMPARE AND WRITE waits for it, and a
 *   command that needs several calls (COMPARE AND WRITE's read then write,
 *   FUA emulated as write then flush, WRITE SAME or UNMAP in chunks or per
 *   descriptor) makes them one after the other;
 * - calls SETTLE in whatever order the store settles them; each command
 *   completes to the kernel as soon as its last call settled (out of order);
 * - no ordering between overlapping commands is owed: TCMU is a passthrough
 *   backend, so LIO applies no SAM task attributes (an ORDERED or HEAD OF
 *   QUEUE command reaches the ring like a SIMPLE one, and the entry does not
 *   say which it was) and the Control mode page reports QUEUE ALGORITHM
 *   MODIFIER 1 (unrestricted reordering): an initiator that needs an order
 *   waits for completions (Linux sends a cache flush only after the writes
 *   it covers completed). A read overlapping a write in flight may return
 *   old, new or mixed blocks; two overlapping writes leave either's blocks;
 * - `flush` must make durable every write whose call settled before `flush`
 *   was called; writes still in flight then may or may not be covered;
 * - `close` is called after the ring drained (nothing in flight), except
 *   when a stopping LUN's calls did not settle within the drain timeout;
 * - only the top store of a stack is called by the core: calls on `lower`
 *   are the layer's own, with whatever overlap the layer creates (`lower` is
 *   built by the same toLunStore, so its own maxInFlight queue still holds).
 * A store that cannot take overlapping calls declares `maxInFlight` (1 for
 * strictly serial) and the core queues for it (./serialize.ts), instead of
 * the handler carrying its own whole-store mutex.
 *
 * Aborts: a task management function (ABORT TASK, ABORT TASK SET, CLEAR
 * TASK SET, LUN RESET) that aborts a command in the ring fires the
 * `signal` of that command's calls (CallOptions). It is passed only to a
 * store that declares `abortable` (or `maxInFlight`); the core reuses one
 * signal per ring slot until it fires, so nobody pays for an AbortSignal per
 * command (a few microseconds each). The core never completes a command
 * while a call may still touch its iov (the kernel reuses the data area):
 * - a store that honours the signal rejects soon with `signal.reason` (a
 *   StorageError 'ECANCELED'), or any AbortError; the command then
 *   completes with TASK ABORTED status. Data a write already wrote stays
 *   (SAM leaves an aborted command's effect on the medium undefined);
 * - a store that ignores it settles as usual and the command completes
 *   with its ordinary status (WRITE SAME in chunks, VERIFY and the compare
 *   of COMPARE AND WRITE stop between chunks with TASK ABORTED).
 * Either way the kernel discards the status of an aborted command: it only
 * waits for the completion to finish the task management function (the
 * initiator sees TASK ABORTED or nothing, per TAS). A store that never
 * settles holds the TMF until the kernel's cmd_time_out.
 */
import type { Logger } from 'pino';
import type { FileOpener } from './confine.js';
import type { KeySource } from '../config/keyring.js';
import type { InRing } from '../scsi/command.js';

export type MaybePromise<T> = T | Promise<T>;

/** What every call made on behalf of a SCSI command may receive as its last argument. */
export interface CallOptions {
  /**
   * Aborted when a task management function aborts the command (see
   * "Aborts" above). Only given to stores that declare `abortable` or
   * `maxInFlight`; valid until the call settles: the same signal serves
   * later commands until it fires, so do not keep it, and remove any
   * listener you added when the call settles.
   */
  readonly signal?: AbortSignal;
  /**
   * Only for stores that declare `completesInRing`, and only on a read or
   * write that is a whole READ or WRITE command whose GOOD completion needs
   * nothing more from the core: the store may complete that command itself,
   * from any thread, through NativeRbd-style `ring`, `index` and `cmdId`
   * (src/native.ts). When it does, the call's promise must never settle
   * (the command is done; settling it would complete it twice); otherwise
   * it settles as usual. Or the store takes the command over: it returns
   * STORE_COMPLETES_IN_RING (src/scsi/command.ts) instead of a promise,
   * and if the other thread does not complete the command, the store
   * finishes it once through `inRing.settle`, after the call returned (no
   * promise at all).
   */
  readonly inRing?: InRing;
}

export interface WriteOptions extends CallOptions {
  /** Force Unit Access: the data must be durable when the call settles. */
  readonly fua: boolean;
}

export interface WriteZeroesOptions extends CallOptions {
  /** The caller allows the range to be deallocated (thin) instead of written. */
  readonly unmap: boolean;
}

/** One run of blocks with the same provisioning state. */
export interface Extent {
  offset: number;
  length: number;
  /** 'mapped' holds data, 'deallocated' reads as zeros and takes no space, 'zero' is allocated but reads as zeros. */
  state: 'mapped' | 'deallocated' | 'zero';
}

export interface Backstore {
  /** Exposed size in bytes (a multiple of blockSize). */
  readonly size: number;
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  /** True if the image must not be written (a missing `write` implies it too). */
  readonly readOnly?: boolean;
  /**
   * True if this store has a volatile cache that `flush` empties; lets the
   * core report WCE. Defaults to true when `flush` exists.
   */
  readonly writeCache?: boolean;
  /**
   * True if `write` honours `opts.fua` itself (the data is durable when a
   * FUA write settles). When false or absent and the store has a write
   * cache, the core emulates FUA as write then `flush`.
   */
  readonly fua?: boolean;
  /**
   * True if `discard` really deallocates (thin provisioning). Defaults to
   * true when `discard` exists; a handler sets it false when it learns at
   * open that the medium cannot deallocate (e.g. the filesystem lacks
   * hole punching), and the core then treats discard as a no-op.
   */
  readonly thin?: boolean;
  /**
   * The most calls this store takes at once; absent means no limit (see
   * "Concurrency" above). 1 makes the store strictly serial: the core never
   * overlaps two of its calls. The core queues the rest and starts them in
   * the order they were made (FIFO, so with 1 they also settle in order);
   * `resize` and `close` always run alone. Calls queued when their command
   * is aborted are dropped without reaching the store. Declare this instead
   * of a mutex around every method; a lock over finer-grained state (one
   * cluster, the metadata) stays the handler's.
   */
  readonly maxInFlight?: number;
  /** True if the store honours `opts.signal`: the core then passes one (see "Aborts" above). */
  readonly abortable?: boolean;
  /**
   * True if the store may complete commands in the ring itself (`opts.inRing`,
   * see CallOptions). Ignored with `maxInFlight` (the core's queue waits for
   * every call to settle).
   */
  readonly completesInRing?: boolean;
  /**
   * False if a discarded range does NOT read back as zeros (an encryption
   * layer: zeros below decrypt to noise). The LUN then never claims LBPRZ
   * and WRITE SAME is never turned into a discard. Default true.
   */
  readonly discardZeroes?: boolean;
  /**
   * The smallest range, in bytes, whose discard really frees space (a qcow2
   * cluster, a filesystem block); reported to initiators as OPTIMAL UNMAP
   * GRANULARITY so they send discards the store can honour whole. A power
   * of two; default 4096. Smaller or unaligned discards still work (they
   * zero what they cannot free).
   */
  readonly discardGranularity?: number;

  read(offset: number, iov: readonly Buffer[], opts?: CallOptions): MaybePromise<void>;
  write?(offset: number, iov: readonly Buffer[], opts: WriteOptions): MaybePromise<void>;
  /** Make every write whose call settled before this call durable. */
  flush?(opts?: CallOptions): MaybePromise<void>;
  /**
   * COMPARE AND WRITE done atomically by the medium itself (a cluster whose
   * other clients the core's own range lock cannot see). `iov` holds the
   * compare bytes then as many data bytes (the SCSI data-out); the range is
   * `offset`, `iovLength / 2` bytes. Resolves -1 when it matched and the
   * data is written, else the byte offset (from `offset`) of the first
   * difference, with nothing written. Absent: the core reads, compares and
   * writes under its per-LUN range lock.
   */
  compareAndWrite?(offset: number, iov: readonly Buffer[], opts: WriteOptions): MaybePromise<number>;
  /**
   * The longest range (bytes, a multiple of blockSize) `compareAndWrite`
   * takes; the LUN advertises it as MAXIMUM COMPARE AND WRITE LENGTH (librbd
   * 16 compares one 512-byte sector at most). Absent: no limit of its own.
   */
  readonly compareAndWriteLimit?: number;
  /** Drop the range's contents; afterwards it reads as zeros (unless discardZeroes is false). Only if provisioning is thin. */
  discard?(offset: number, length: number, opts?: CallOptions): MaybePromise<void>;
  /** Make the range read as zeros, deallocating if `unmap` and possible. */
  writeZeroes?(offset: number, length: number, opts: WriteZeroesOptions): MaybePromise<void>;
  /** Provisioning state of the range, in order, covering at least its first byte. */
  blockStatus?(offset: number, length: number, opts?: CallOptions): MaybePromise<Extent[]>;
  /** Grow or shrink to `newSize` bytes (RECONFIG dev_size). */
  resize?(newSize: number): MaybePromise<void>;
  /**
   * Who holds the medium's exclusive lock, for a medium several gateways
   * serve at once (an RBD image): this client, another one, or nobody. The
   * daemon reports it as the LUN's ALUA state, so initiators prefer the
   * gateway that holds the lock (see src/daemon/alua-follower.ts). In a
   * stack, the layer that has it answers, whatever its position.
   */
  exclusiveLockHolder?(): Promise<LockHolder>;
  close(): MaybePromise<void>;
}

/** See Backstore.exclusiveLockHolder. */
export type LockHolder = 'this' | 'other' | 'none';

/** What the core hands to `open`. */
export interface OpenContext {
  /** LUN size from the kernel (dev_size) or the config, in bytes; undefined if unknown. */
  size?: number;
  /** Logical block size the kernel announces (hw_block_size). */
  blockSize: number;
  /** Open without writing anything, even metadata. */
  readOnly: boolean;
  /** Child logger for this LUN; handlers log at debug on their hot path, never at info. */
  log: Logger;
  /**
   * The opened layer below, for a stacking handler (crypt over qcow2 over
   * file), already normalised by the core (./lun-store.ts): every method is
   * present (emulated or refusing where the store below lacks it) and the
   * capabilities (readOnly, writeCache, thin, hasBlockStatus) are decided,
   * so a layer never tests `lower.write && ...`. A FUA write to it is
   * durable when it settles. Do not close it: the stack closes every layer.
   */
  lower?: LunStore;
  /** Handler options from the config file (key=value pairs already parsed). */
  options: Record<string, string>;
  /**
   * Tell the daemon the medium's size changed outside this runner (another
   * client ran `rbd resize`). The daemon follows as for an admin's resize:
   * it sets the kernel's dev_size, the kernel sends RECONFIG, `resize` is
   * called and the initiator gets CAPACITY DATA HAS CHANGED. Absent: nobody
   * follows (a test, the CLI).
   */
  onMediumResized?: (newSize: number) => void;
  /**
   * A directory for this LUN that outlives a daemon crash but not a reboot
   * (under the control socket's directory, on tmpfs), for what a handler
   * must find again when the daemon is restarted over the same kernel
   * device: the rbd handler keeps its cluster address there to fence its
   * dead predecessor. Not created yet (mkdir it, mode 0700); absent outside
   * the daemon.
   */
  runtimeDir?: string;
  /**
   * The only way a handler opens a file (image, backing file, key file): it
   * confines the opened file to the admin's allowed_dirs (./confine.ts).
   * The core always sets it; absent (a test calling a handler directly)
   * means the unconfined opener: use `openerOf(ctx)`.
   */
  files?: FileOpener;
  /**
   * Named secrets for layers that need one (crypt's `key=NAME`): the
   * daemon's key directory plus keys held in memory. `get` returns a copy
   * the handler wipes. Absent: the default key directory.
   */
  keys?: KeySource;
}

export interface Handler {
  /** Subtype name, as in `subtype/cfgstring` (tcmu-runner's convention): 'file', 'ram', 'qcow2'. */
  readonly name: string;
  readonly description?: string;
  /** True if this handler is a layer that needs `ctx.lower`. */
  readonly layer?: boolean;
  /**
   * Open a backstore. `config` is the part of dev_config after `subtype/`
   * (for `file//var/lib/lun0.img` it is `/var/lib/lun0.img`).
   */
  open(config: string, ctx: OpenContext): MaybePromise<Backstore>;
  /**
   * Control operations this handler offers besides serving I/O (image
   * create/info/check, snapshots). The CLI lists them (`tcmu-ts handlers`)
   * and builds `tcmu-ts <group> <verb>` commands from them; the daemon runs
   * the online ones on a served LUN. See src/backstore/control.ts.
   */
  readonly control?: HandlerControl;
}

/**
 * The control surface of a handler: named operations, each describing its
 * arguments so a command line can be built and listed without knowing the
 * handler. Operation names are `<group>.<verb>` ('snapshot.create',
 * 'image.info'); the CLI command is `tcmu-ts <group> <verb> <target> ...`.
 */
export interface HandlerControl {
  readonly operations: Readonly<Record<string, ControlOperation>>;
  /**
   * Does the image at `path` look like one of this handler's (a magic
   * number, not a full open)? Lets the CLI pick the handler for an offline
   * operation on an existing image when several offer it and no --format
   * was given. Open the file through `files`.
   */
  probe?(path: string, files: FileOpener): Promise<boolean>;
}

/**
 * Where an operation can run:
 * - 'offline': on an image path, from the CLI, with no daemon involved
 *   (the image must not be in use);
 * - 'online': on a LUN the daemon serves; the daemon finds the layer of the
 *   LUN's stack that offers the operation and, when `quiesce` is not false,
 *   holds new commands, finishes in-flight ones and closes the store around
 *   the call (reopening it afterwards, with a unit attention).
 */
export type ControlMode = 'offline' | 'online';

/** One argument, after the target (image path or LUN name). */
export interface ControlArg {
  /** kebab-case; the CLI option is `--<name>` (or a positional `<name>`). */
  readonly name: string;
  readonly description: string;
  /** 'size' accepts 10G, 512M, 1.5T or a byte count and arrives as a number of bytes. */
  readonly type: 'string' | 'size' | 'integer' | 'boolean';
  readonly required?: boolean;
  /** Positional (in listed order) instead of an option; positional arguments are required. */
  readonly positional?: boolean;
  /** The only accepted values (type 'string'). */
  readonly choices?: readonly string[];
  /** Applied when absent, in the same spelling a user would type ('64k', '3'). */
  readonly default?: string;
}

/** Arguments after the core checked and converted them (sizes in bytes). */
export type ControlArgs = Readonly<Record<string, string | number | boolean | undefined>>;

/** What an operation receives besides its arguments. */
export interface ControlContext {
  readonly mode: ControlMode;
  /**
   * Which image: offline, the path given on the command line; online, the
   * config string of the layer offering the operation (for
   * `qcow2//srv/a.qcow2` it is `/srv/a.qcow2`), wherever it sits in the stack.
   */
  readonly config: string;
  /** That layer's dev_config options (online); empty offline. */
  readonly options: Readonly<Record<string, string>>;
  /** Open every file through this (confined to allowed_dirs in the daemon): `openerOf(ctx)`. */
  readonly files?: FileOpener;
  readonly log: Logger;
  /**
   * Online operations that declare `quiesce: false`: the layer as this
   * handler's open() returned it for the served LUN, so the operation can
   * work on the open image while the LUN keeps serving (it must then be safe
   * beside the LUN's I/O). Absent offline and for quiesced operations.
   */
  readonly live?: Backstore;
  /**
   * With `live`: fires before the LUN closes that layer (stop, RECONFIG, a
   * quiesced operation); the operation must then return soon (the close
   * waits for it, bounded).
   */
  readonly signal?: AbortSignal;
}

/** What an operation returns. */
export interface ControlResult {
  /** JSON-serialisable result: what `--json` prints and the control socket carries. */
  readonly value: unknown;
  /** Human-readable output; absent: the CLI prints `value` as `key: value` lines. */
  readonly text?: string;
  /** Exit status the CLI sets (e.g. a check that found corruption); 0 when absent. */
  readonly exitCode?: number;
}

export interface ControlOperation {
  /** One line, shown by `--help` and `tcmu-ts handlers`. */
  readonly description: string;
  readonly modes: readonly ControlMode[];
  readonly args?: readonly ControlArg[];
  /**
   * Online only: false when the operation runs beside the LUN's I/O instead
   * of with the LUN quiesced and its store closed: one that changes nothing
   * (listing snapshots), or one safe against concurrent commands that works
   * on the open layer (`ControlContext.live`, qcow2's online compaction).
   * Default true.
   */
  readonly quiesce?: boolean;
  /**
   * Online, quiesced operations only: false when the LUN's contents are the
   * same afterwards (e.g. creating a snapshot), so the initiator is not told
   * MEDIUM MAY HAVE CHANGED. Default true.
   */
  readonly changesMedium?: boolean;
  run(ctx: ControlContext, args: ControlArgs): Promise<ControlResult>;
}

/**
 * A backstore with every optional method filled by the core's defaults
 * (src/backstore/lun-store.ts). This is what SCSI emulation talks to; it never
 * needs to check for a missing method.
 */
export interface LunStore {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** A volatile write cache exists (report WCE=1; SYNCHRONIZE CACHE does real work). */
  readonly writeCache: boolean;
  /** Thin provisioning: discard really deallocates (advertise LBPME, UNMAP, VPD B2). */
  readonly thin: boolean;
  /** A discarded block reads as zeros (report LBPRZ; WRITE SAME with UNMAP may discard). */
  readonly discardZeroes: boolean;
  /** Bytes a discard frees in one piece (a power of two, >= 4096; see Backstore.discardGranularity). */
  readonly discardGranularity: number;
  /** blockStatus is real (GET LBA STATUS answers from the store). */
  readonly hasBlockStatus: boolean;
  /** Pass each command's abort signal in CallOptions (the store is abortable or queued); otherwise pass none. */
  readonly abortable: boolean;
  /** Reads and non-FUA (or FUA without a write cache) writes may take CallOptions.inRing. */
  readonly completesInRing: boolean;
  read(offset: number, iov: readonly Buffer[], opts?: CallOptions): MaybePromise<void>;
  /** Throws EROFS when readOnly. FUA emulated by write + flush when the handler lacks it. */
  write(offset: number, iov: readonly Buffer[], opts: WriteOptions): MaybePromise<void>;
  flush(opts?: CallOptions): MaybePromise<void>;
  /** The store's own atomic COMPARE AND WRITE (see Backstore), FUA handled; absent when it has none or is read-only. */
  compareAndWrite?(offset: number, iov: readonly Buffer[], opts: WriteOptions): MaybePromise<number>;
  /** Longest range its compareAndWrite takes, in bytes (see Backstore); absent with it or when unlimited. */
  readonly compareAndWriteLimit?: number;
  /** No-op when not thin (reads of discarded ranges are then unchanged, allowed by SBC when LBPRZ=0). */
  discard(offset: number, length: number, opts?: CallOptions): MaybePromise<void>;
  /** Emulated with writes of a shared zero buffer when the handler lacks it. */
  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions): MaybePromise<void>;
  /** Whole range 'mapped' when the handler lacks blockStatus. */
  blockStatus(offset: number, length: number, opts?: CallOptions): MaybePromise<Extent[]>;
  resize(newSize: number): MaybePromise<void>;
  /** The handler's own (see Backstore); absent when the medium has no exclusive lock. */
  exclusiveLockHolder?(): Promise<LockHolder>;
  close(): MaybePromise<void>;
}
