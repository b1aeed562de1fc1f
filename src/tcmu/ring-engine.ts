/**
 * The ring engine: consumes TCMU ring entries, hands commands to a
 * ScsiTarget, writes completions back and publishes the tail.
 *
 * One batch = read head (acquire), consume everything up to it, complete
 * what finished, publish the tail (release) and kick ONCE. Asynchronous
 * completions that settle close together share one batch (see `coalesce`).
 * Back-pressure: at most maxInFlight commands execute; with no free slot the
 * engine stops consuming (entries wait in the ring, the kernel queues behind
 * them) and resumes as soon as a completion frees one.
 *
 * Commands whose store finished on another thread may be completed right
 * there (completion-state.ts): those slots come back through the shared
 * block and are freed at the start of the next batch (collectForeign).
 * When the engine holds the ring at that moment, the thread hands the
 * command over instead, and the engine completes it before it lets go.
 *
 * The engine does not own the mapping: close() stops it, the caller unmaps.
 */
import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { STATUS_LEFT_TO_STORE, type ScsiTarget } from '../scsi/command.js';
import { CommandSlot, createSlots } from './command-slot.js';
import { CompletionState, Word, monotonicToPerformance } from './completion-state.js';
import type { CommandCounters } from './command-counters.js';
import { decodeCommand } from './entry-decode.js';
import { isPromiseLike } from '../backstore/maybe.js';
import type { NativeMapping } from '../native.js';
import {
  CmdRsp,
  EntryHeader,
  MAILBOX_VERSION,
  Mailbox,
  MailboxFlag,
  OP_MASK,
  Op,
  SENSE_SIZE,
  TmrEntry,
  UFlag,
} from './ring-layout.js';
import { RingView } from './ring-view.js';

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
/** How often one batch reads the ring's head (see consume()). */
const HEAD_LOOKS = 3;
/**
 * A batch that started this many data bytes does not look again: its kick
 * carries the kernel's copy of large reads to the initiator, and holding it
 * back for more commands cost 1 MiB sequential reads 14% (0.86x, same-boot
 * A/B, kernel-default completion affinity).
 */
const LOOK_AGAIN_BYTES = 256 * 1024;
/**
 * Microtask batches hang off this settled promise: queueMicrotask() builds
 * an AsyncResource and a bound function per call.
 */
const SETTLED = Promise.resolve();

export interface RingEngineOptions {
  /** Commands executing at once (slot pool size). Default 128 (the kernel's hw_queue_depth). */
  maxInFlight?: number;
  log?: Logger;
  /**
   * A TMR arrived: `cmdIds` are the in-ring commands it aborts, already
   * marked `aborted` with their abort signals fired. The engine still
   * completes each of them when its execution settles (the kernel waits for
   * that completion to finish the TMR, and discards its status).
   */
  onTmr?: (type: number, cmdIds: number[]) => void;
  /**
   * The ring is unusable (malformed header, notify fd error such as EIO
   * after device removal). The engine has stopped consuming.
   */
  onError?: (err: Error) => void;
  /**
   * How asynchronous completions are grouped into one tail update + kick:
   * 'microtask' (default) publishes them at the end of the current
   * microtask checkpoint, which holds every completion one I/O callback
   * delivered (io_uring hands back a whole batch at once); 'immediate'
   * waits for the end of the event-loop iteration, so completions from
   * separate I/O callbacks (e.g. the libuv thread pool) share a kick, at
   * the price of a setImmediate per batch.
   */
  coalesce?: 'immediate' | 'microtask';
  /**
   * Runs each pass over the ring that starts commands: `enter(consume)` must
   * call `consume` once, synchronously. The daemon enters its LUN's fault
   * context here (src/daemon/fault-guard.ts), once per batch rather than once
   * per command: every command a batch starts, and everything those
   * commands start, then belongs to that LUN.
   */
  enter?: (consume: () => void) => void;
  /**
   * Let other threads complete commands in this ring (ScsiCommand.inRing;
   * for a store that declares completesInRing): the ring's completion side
   * is then shared with native code (completion-state.ts). Only on rings
   * that complete out of order. Default false.
   */
  completeElsewhere?: boolean;
  /** Monitoring counters this engine feeds (plain numbers, see command-counters.ts). */
  counters?: CommandCounters;
  /**
   * A command started while none was in flight. Lets the owner run a
   * progress watchdog only while there is something to watch, so an idle
   * LUN costs no timer wake-ups.
   */
  onBusy?: () => void;
}

export interface RingEngineStats {
  /** Commands completed. */
  commands: number;
  /** Commands currently holding a slot. */
  inFlight: number;
  /** Highest inFlight seen. */
  maxInFlight: number;
  /** Commands failed by the engine (malformed entry, execute threw or returned garbage). */
  errors: number;
  /** Kicks sent to the kernel (one per batch that moved the tail). */
  kicks: number;
  /** Batches run. */
  batches: number;
  /**
   * Data iovecs of the commands consumed (data-out/in plus bidi): the kernel
   * merges adjacent data-area blocks, so iovecs per command show how
   * scattered the data area is.
   */
  iovecs: number;
  /** Data-in bytes zero-filled because no command produced them (see limitDataIn). */
  zeroFilledBytes: number;
  /** Commands another thread completed in the ring (counted in `commands` too; see completion-state.ts). */
  completedElsewhere: number;
  /**
   * Commands another thread handed over because the engine held the ring,
   * completed by the engine before it published or let go (counted in
   * `commands` too).
   */
  handedOver: number;
}

export class RingEngineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RingEngineError';
  }
}

type State = 'idle' | 'running' | 'draining' | 'broken' | 'closed';

export class RingEngine {
  readonly stats: RingEngineStats = {
    commands: 0,
    inFlight: 0,
    maxInFlight: 0,
    errors: 0,
    kicks: 0,
    batches: 0,
    iovecs: 0,
    zeroFilledBytes: 0,
    completedElsewhere: 0,
    handedOver: 0,
  };
  /** Mailbox flags the kernel announced. */
  readonly flags: number;

  private readonly view: RingView;
  private readonly ooo: boolean;
  private readonly readLen: boolean;
  private readonly slots: CommandSlot[];
  /** Stack of free slot indices. */
  private readonly freeSlots: Int32Array;
  private freeCount: number;
  /** cmd_id -> slot index of the in-flight command, -1 if none (for TMR). */
  private readonly slotById = new Int16Array(65536).fill(-1);
  /** In-order mode: slots in ring order, as a circular queue. */
  private readonly order: Int32Array;
  private orderHead = 0;
  private orderCount = 0;

  /** Next entry to consume (ring-relative). */
  private consumed = 0;
  /** Data bytes of the commands this batch's consume() started (see LOOK_AGAIN_BYTES). */
  private consumedBytes = 0;
  /**
   * The tail (ring-relative), the tail the kernel has seen, and the entries
   * consumed but not yet passed by the tail, in ring order: their offset
   * and len_op as read when consumed. The tail moves by these recorded
   * lengths, never by re-reading the ring (a kernel that rewrites len_op in
   * flight must not steer the tail), and each entry's len_op is checked
   * unchanged before the tail passes it. Shared with threads that complete
   * commands themselves: read and written only under cs.lock().
   */
  private readonly cs: CompletionState;
  /** cs.words[Word.Kicks] when last collected. */
  private foreignKicks = 0;

  private state: State = 'idle';
  private inBatch = false;
  private flushScheduled = false;
  private stalled = false;
  private drainWaiters: (() => void)[] = [];
  private resumeScheduled = false;
  private readonly runBatchBound = () => this.runBatch(true);
  private readonly publishBatchBound = () => this.runBatch(false);
  private readonly resumeBound = () => {
    this.resumeScheduled = false;
    this.runBatch(true);
  };
  private readonly scheduleBatch: () => void;
  private readonly counters?: CommandCounters;
  private readonly enter?: (consume: () => void) => void;
  private readonly consumeBound = () => this.consume();
  private readonly collectBound = () => this.collect();

  constructor(
    private readonly mapping: NativeMapping,
    private readonly target: ScsiTarget,
    private readonly opts: RingEngineOptions = {},
  ) {
    const max = opts.maxInFlight ?? 128;
    if (!Number.isInteger(max) || max < 1 || max > 65535) {
      throw new RangeError(`maxInFlight must be an integer in [1, 65535], got ${max}`);
    }
    const mb = RingView.readMailboxHeader(mapping.buffer);
    if (mb.version !== MAILBOX_VERSION) {
      throw new RingEngineError('EPROTO', `TCMU mailbox version ${mb.version}, only version ${MAILBOX_VERSION} is supported`);
    }
    if (mb.cmdrOff < Mailbox.size || mb.cmdrSize < 8 || mb.cmdrSize % 8 !== 0 || mb.cmdrOff % 8 !== 0 || mb.cmdrOff + mb.cmdrSize > mapping.size) {
      throw new RingEngineError(
        'EPROTO',
        `TCMU mailbox describes an impossible ring (cmdr_off ${mb.cmdrOff}, cmdr_size ${mb.cmdrSize}, map ${mapping.size})`,
      );
    }
    this.flags = mb.flags;
    this.ooo = (mb.flags & MailboxFlag.OutOfOrderCompletion) !== 0;
    this.readLen = (mb.flags & MailboxFlag.ReadLen) !== 0;
    this.view = new RingView(mapping.buffer, mapping.size, mb.cmdrOff, mb.cmdrSize);
    this.slots = createSlots(max);
    this.freeSlots = new Int32Array(max);
    for (let i = 0; i < max; i++) this.freeSlots[i] = max - 1 - i;
    this.freeCount = max;
    this.order = new Int32Array(max);
    this.cs = CompletionState.create(mapping, max, this.ooo && opts.completeElsewhere === true, opts.counters?.timed === true);
    for (const slot of this.slots) {
      this.bindSlotCallbacks(slot);
      slot.ring = this.cs.handle;
    }
    this.counters = opts.counters;
    this.counters?.reserve(max);
    this.enter = opts.enter;
    this.scheduleBatch =
      opts.coalesce === 'immediate' ? () => setImmediate(this.runBatchBound) : () => void SETTLED.then(this.publishBatchBound);
  }

  /** True when the kernel allows out-of-order completion (OOOC). */
  get outOfOrder(): boolean {
    return this.ooo;
  }

  /**
   * Start (or resume after drain) consuming. Takes the ring as it is: any
   * entries already between tail and head are consumed at once.
   */
  start(): void {
    if (this.state === 'closed' || this.state === 'broken') {
      throw new RingEngineError('EBADF', `cannot start a ${this.state} ring engine`);
    }
    if (this.state === 'idle') {
      // Begin where the kernel says we are (a fresh or reset ring has head == tail == 0).
      const tail = this.mapping.loadAcquire32(Mailbox.cmdTail);
      const head = this.mapping.loadAcquire32(Mailbox.cmdHead);
      if (!this.checkRingOffset(tail, 'cmd_tail') || !this.checkRingOffset(head, 'cmd_head')) return;
      this.consumed = tail;
      this.cs.words[Word.Tail] = this.cs.words[Word.Published] = tail;
      this.mapping.watch(
        () => this.runBatch(true),
        (err) => this.fail(err),
      );
    }
    this.state = 'running';
    this.runBatch(true);
  }

  /** Stop consuming new entries; resolves once every in-flight command completed and the tail is published. */
  drain(): Promise<void> {
    if (this.state === 'running') this.state = 'draining';
    // Every completion from here on comes through the event loop, so the
    // count below is exact and the last one resolves the wait.
    this.withLock(this.closeToForeign);
    // A broken or closed engine answers nothing more: nothing to wait for.
    if ((this.stats.inFlight === 0 && !this.flushScheduled) || this.state === 'broken' || this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Stop watching; completions arriving later are dropped. Idempotent. Does not close the mapping. */
  close(): void {
    if (this.state === 'closed') return;
    this.withLock(this.closeToForeign);
    this.state = 'closed';
    this.mapping.unwatch();
    this.resolveDrainWaiters();
  }

  // ---- batch ------------------------------------------------------------

  /**
   * One batch: consume what the kernel added (when `consume`), publish the
   * completions, kick once. Batches run from a microtask do not consume:
   * that could chain microtasks without end (I/O that completes inline
   * while the kernel keeps adding commands) and starve the event loop:
   * timers, signals, other LUNs. New entries come with their own uio
   * event; an engine stalled on back-pressure resumes from the event loop.
   */
  private runBatch(consume: boolean): void {
    this.flushScheduled = false;
    if (this.state === 'closed' || this.state === 'idle') return;
    this.inBatch = true;
    this.stats.batches++;
    if (consume) this.counters?.clock(); // publish-only batches: completeAsync already read it
    const locked = this.cs.lock();
    let handedOver = false;
    try {
      this.collect();
      if (consume && this.state === 'running') {
        if (this.enter) this.enter(this.consumeBound);
        else this.consume();
      }
      // What librbd's threads finished meanwhile goes out with this kick.
      const first = this.cs.takeHandedOver();
      if (first !== 0) this.completeHandedOver(first);
      this.publish();
      // Other threads complete only while nothing waits on a completion
      // for the event loop to see: a stalled ring resumes when a slot
      // frees, and nothing would wake the loop for one freed elsewhere.
      this.cs.words[Word.Open] = this.cs.handle !== undefined && this.state === 'running' && !this.stalled ? 1 : 0;
    } finally {
      if (locked) handedOver = this.unlock();
      this.inBatch = false;
    }
    // Slots freed after consume() stalled: resume from the event loop.
    if ((!consume || handedOver) && this.stalled && this.state === 'running' && !this.resumeScheduled) {
      this.resumeScheduled = true;
      setImmediate(this.resumeBound);
    }
    if (this.stats.inFlight === 0 && this.state !== 'running') this.resolveDrainWaiters();
  }

  private requestBatch(): void {
    if (this.inBatch || this.flushScheduled) return;
    this.flushScheduled = true;
    this.scheduleBatch();
  }

  private publish(): void {
    if (this.state === 'closed' || this.state === 'broken') return;
    this.skipNonCommands();
    const words = this.cs.words;
    const tail = words[Word.Tail]!;
    if (tail === words[Word.Published] || this.broken) return;
    words[Word.Published] = tail;
    // Atomics.store is sequentially consistent (at least release): every
    // response written above is visible before the kernel sees the tail.
    // JS, not the addon's storeRelease32: one N-API call less per batch.
    Atomics.store(this.view.u32, Mailbox.cmdTail >>> 2, tail);
    this.mapping.kick();
    this.stats.kicks++;
  }

  /** Run `fn` holding the completion lock (or inside the batch that holds it). */
  private withLock(fn: () => void): void {
    const locked = this.cs.lock();
    try {
      fn();
    } finally {
      if (locked) this.unlock();
    }
  }

  /**
   * Release the completion lock, first completing the commands other
   * threads handed over while the engine held it. Inside a batch they are
   * published with it; outside one a batch is requested to publish them.
   * True when there were any.
   */
  private unlock(): boolean {
    let any = false;
    for (let first = this.cs.unlockOrTakeHandedOver(); first !== 0; first = this.cs.unlockOrTakeHandedOver()) {
      this.completeHandedOver(first);
      any = true;
      if (this.inBatch) this.publish();
    }
    if (any && !this.inBatch) this.requestBatch();
    return any;
  }

  /**
   * Complete GOOD each command of a handed-over list (lock held), from
   * slot `first - 1` along the links (completion-state.ts). The other
   * thread's store finished it: a read's data is in place and its
   * dataInLength set, as for a completion made in the ring.
   */
  private completeHandedOver(first: number): void {
    const links = this.cs.handedOver;
    for (let next = first, seen = 0; next !== 0; seen++) {
      const index = next - 1;
      const slot = this.slots[index];
      const link = links[index];
      // At most one entry per slot in flight: anything else is native code gone wrong.
      if (slot === undefined || link === undefined || seen === this.slots.length || link >>> 16 !== slot.cmdId || this.slotById[slot.cmdId] !== index) {
        this.fail(new RingEngineError('EPROTO', `a command handed over by another thread names slot ${index}, which holds no such command`));
        return;
      }
      next = link & 0xffff;
      this.stats.handedOver++;
      this.complete(slot, 0);
    }
  }

  /** Completions from here on come through the event loop (lock held); collects the others first. */
  private readonly closeToForeign = (): void => {
    this.cs.words[Word.Open] = 0;
    this.collect();
  };

  /**
   * Collect the commands other threads completed since the last look and
   * free their slots (lock held). Their responses and the tail are
   * already in the ring; only the bookkeeping is left. The engine's stats,
   * counters and drain() see them from here on.
   */
  private collect(): void {
    const words = this.cs.words;
    const count = words[Word.DoneCount]!;
    if (count === 0) return;
    words[Word.DoneCount] = 0;
    const kicks = words[Word.Kicks]!;
    this.stats.kicks += kicks - this.foreignKicks;
    this.foreignKicks = kicks;
    const done = this.cs.done;
    for (let i = 0; i < count && i < done.length; i++) {
      const slot = this.slots[done[i]!];
      // Only ever a slot in flight: anything else is native code gone wrong.
      if (slot === undefined || this.slotById[slot.cmdId] !== slot.index) {
        this.fail(new RingEngineError('EPROTO', `a command completed off the event loop names slot ${done[i]}, which holds no command`));
        return;
      }
      this.counters?.completed(slot, 0, monotonicToPerformance(this.cs.doneAt[i]!));
      this.stats.commands++;
      this.stats.completedElsewhere++;
      this.release(slot);
    }
    if (this.stats.inFlight === 0 && this.state !== 'running') this.resolveDrainWaiters();
  }

  /**
   * Free the slots of commands other threads completed (the stuck-I/O
   * watchdog and status readers call this before they read `stats`: with
   * every completion made elsewhere, nothing else would refresh them).
   */
  collectForeign(): void {
    if (this.cs.handle === undefined || this.state === 'closed' || this.state === 'broken') return;
    this.withLock(this.collectBound);
  }

  // ---- consume ----------------------------------------------------------

  /**
   * Consume up to the head, then look again, up to HEAD_LOOKS times in all:
   * the initiator queues more while this batch runs (it is answering the
   * last kick on its own CPU), and what arrived meanwhile goes out with this
   * batch's kick instead of costing a wake-up and a kick of its own.
   */
  private consume(): void {
    this.stalled = false;
    this.consumedBytes = 0;
    for (let look = 0; look < HEAD_LOOKS; look++) {
      // Sequentially consistent, so at least acquire: entries up to head are
      // read after it (and without an N-API call, unlike loadAcquire32).
      const head = Atomics.load(this.view.u32, Mailbox.cmdHead >>> 2);
      if (head === this.consumed || !this.checkRingOffset(head, 'cmd_head')) return;
      if (!this.consumeTo(head) || this.consumedBytes >= LOOK_AGAIN_BYTES) return;
    }
  }

  /** Consume the entries before `head`; false when it stopped short (stalled, failed, not running). */
  private consumeTo(head: number): boolean {
    const view = this.view;
    const u32 = view.u32;
    const cmdrOff = view.cmdrOffset;
    const cmdrSize = view.cmdrSize;
    // Every pass moves `consumed` forward by at least 8 bytes towards head,
    // so this ends within cmdrSize / 8 passes; the cap makes that explicit.
    for (let passes = cmdrSize >>> 3; this.consumed !== head && this.state === 'running'; passes--) {
      const at = this.consumed;
      const base = cmdrOff + at;
      const lenOp = u32[base >>> 2]!;
      const op = lenOp & OP_MASK;
      const len = lenOp - op;
      const available = head > at ? head - at : cmdrSize - at + head;
      if (len === 0 || len > available || at + len > cmdrSize || passes <= 0) {
        this.fail(new RingEngineError('EPROTO', `ring entry at ${at} has length ${len} (head ${head}, ring ${cmdrSize}): ring broken`));
        return false;
      }
      if (this.cs.words[Word.PendingCount] === this.cs.capacity) {
        this.stalled = true; // resumes when the tail passes an entry
        if (this.counters) this.counters.backPressureEvents++;
        return false;
      }
      if (op === Op.Cmd) {
        if (this.freeCount === 0) {
          this.stalled = true; // resumes when a completion frees a slot
          if (this.counters) this.counters.backPressureEvents++;
          return false;
        }
        this.consumed = at + len === cmdrSize ? 0 : at + len;
        this.pushPending(at, lenOp);
        this.startCommand(base, at, lenOp);
      } else {
        if (op === Op.Tmr) {
          if (!this.handleTmr(base, at, len)) return false;
        } else if (op !== Op.Pad) {
          this.fail(new RingEngineError('EPROTO', `ring entry at ${at} has unknown op ${op}: ring broken`));
          return false;
        }
        this.consumed = at + len === cmdrSize ? 0 : at + len;
        this.pushPending(at, lenOp);
      }
    }
    return this.consumed === head && this.state === 'running';
  }

  /** Record a consumed entry (lock held; consume() checked there is room). */
  private pushPending(at: number, lenOp: number): void {
    const cs = this.cs;
    const words = cs.words;
    const count = words[Word.PendingCount]!;
    const j = (words[Word.PendingHead]! + count) & cs.mask;
    cs.pendingOffset[j] = at;
    cs.pendingLenOp[j] = lenOp;
    words[Word.PendingCount] = count + 1;
  }

  private startCommand(base: number, at: number, lenOp: number): void {
    const len = lenOp & ~OP_MASK;
    const slot = this.slots[this.freeSlots[--this.freeCount]!]!;
    const cmdId = this.view.u16[(base + EntryHeader.cmdId) >>> 1]!;
    if (this.slotById[cmdId] !== -1) {
      this.freeCount++;
      this.fail(new RingEngineError('EPROTO', `ring entry at ${at} reuses cmd_id ${cmdId} of a command in flight: ring broken`));
      return;
    }
    slot.reset(cmdId, at, lenOp);
    this.slotById[cmdId] = slot.index;
    const inFlight = ++this.stats.inFlight;
    if (inFlight > this.stats.maxInFlight) this.stats.maxInFlight = inFlight;
    if (inFlight === 1) this.opts.onBusy?.();
    if (!this.ooo) this.order[(this.orderHead + this.orderCount++) % this.order.length] = slot.index;

    const malformed = decodeCommand(this.view, slot, base, len);
    if (malformed !== null) {
      // The kernel builds every entry itself: a bad one means the ring (or
      // whoever else writes it) cannot be trusted any more.
      this.fail(new RingEngineError('EPROTO', `ring entry at ${at} (cmd_id ${cmdId}) is malformed: ${malformed}: ring broken`));
      return;
    }
    this.stats.iovecs += slot.iov.length + slot.bidiIov.length;
    this.consumedBytes += slot.iovLength;
    this.counters?.started(slot.index);
    let result: number | Promise<number>;
    try {
      result = this.target.execute(slot);
    } catch (err) {
      this.opts.log?.error({ err, cmdId }, 'ScsiTarget.execute threw');
      this.failCommand(slot);
      return;
    }
    if (typeof result === 'number') {
      if (result !== STATUS_LEFT_TO_STORE || !this.othersMayComplete(slot)) this.complete(slot, result);
    } else if (isPromiseLike(result)) result.then(slot.onResolve, slot.onReject);
    else this.complete(slot, Number.NaN); // neither a status nor a promise: failed as invalid
  }

  /** False when the TMR entry broke the protocol (the engine has failed). */
  private handleTmr(base: number, at: number, len: number): boolean {
    const u8 = this.view.u8;
    const type = u8[base + TmrEntry.tmrType]!;
    const count = this.view.u32[(base + TmrEntry.cmdCnt) >>> 2]!;
    if (TmrEntry.cmdIds + 2 * count > len) {
      this.fail(new RingEngineError('EPROTO', `TMR entry at ${at} lists ${count} ids in ${len} bytes: ring broken`));
      return false;
    }
    const ids: number[] = [];
    const first = (base + TmrEntry.cmdIds) >>> 1;
    for (let i = 0; i < count; i++) {
      const id = this.view.u16[first + i]!;
      ids.push(id);
      // Only commands still executing here: an id the kernel lists whose
      // completion we already wrote (not yet reaped by the kernel) maps to
      // no slot, and a reused slot belongs to another command by then.
      const index = this.slotById[id]!;
      if (index >= 0) this.slots[index]!.abort(type);
    }
    this.opts.log?.debug({ type, ids }, 'TMR');
    this.opts.onTmr?.(type, ids);
    return true;
  }

  // ---- complete ---------------------------------------------------------

  private bindSlotCallbacks(slot: CommandSlot): void {
    slot.onResolve = (status: number) => this.completeAsync(slot, status);
    slot.onReject = (err: unknown) => {
      this.opts.log?.error({ err, cmdId: slot.cmdId }, 'ScsiTarget.execute rejected');
      if (this.state === 'closed' || this.state === 'broken') return;
      this.withLock(() => this.failCommand(slot));
      this.requestBatch();
    };
    // InRing.settle is called from the store's completion callback, outside
    // the LUN's fault context: enter it, as the promise reaction this
    // replaces would have run in it (rare: errors and fallbacks only).
    slot.onSettle = (err: Error | undefined) => {
      const finish = () => this.settleTakenOver(slot, err);
      if (this.enter) this.enter(finish);
      else finish();
    };
  }

  /**
   * Whether another thread may complete this slot's command (it offers
   * InRing). STATUS_LEFT_TO_STORE means something only then; otherwise
   * nothing ever would complete the command, so the caller completes it
   * with that number, which fails it as invalid.
   */
  private othersMayComplete(slot: CommandSlot): boolean {
    return slot.ring !== undefined;
  }

  /** A command a store took over (STATUS_LEFT_TO_STORE) and settled itself: GOOD, or its error's status. */
  private settleTakenOver(slot: CommandSlot, err: Error | undefined): void {
    let status: number;
    try {
      status = err === undefined ? GOOD : slot.storeFailed(slot, err);
    } catch (thrown) {
      slot.onReject(thrown); // as a throw in a promise reaction would
      return;
    }
    this.completeAsync(slot, status);
  }

  private completeAsync(slot: CommandSlot, status: number): void {
    // A broken ring is not written any more: the kernel times these out.
    if (this.state === 'closed' || this.state === 'broken') return;
    // A command that waited (a CAW lock) before its store took it over:
    // done elsewhere, maybe already, and the slot may serve another by now.
    if (status === STATUS_LEFT_TO_STORE && this.othersMayComplete(slot)) return;
    if (!this.flushScheduled) this.counters?.clock(); // first completion since the last publish
    // The lock inline, not through withLock: no closure per completion.
    const locked = this.cs.lock();
    try {
      this.complete(slot, status);
    } finally {
      if (locked) this.unlock();
    }
    this.requestBatch();
  }

  private complete(slot: CommandSlot, status: number): void {
    if (!(status >= 0 && status <= 0xff && (status | 0) === status)) {
      this.opts.log?.error({ status, cmdId: slot.cmdId }, 'ScsiTarget returned an invalid status');
      this.failCommand(slot);
      return;
    }
    if (this.broken) return;
    this.counters?.completed(slot, status);
    if (this.ooo) {
      // OOOC: the response goes into the next CMD slot at the tail, whichever entry it was.
      this.skipNonCommands();
      if (this.broken || !this.checkUnchanged()) return;
      const base = this.view.cmdrOffset + this.cs.words[Word.Tail]!;
      this.writeResponse(slot, base, status);
      this.view.u16[(base + EntryHeader.cmdId) >>> 1] = slot.cmdId;
      this.stats.commands++;
      this.popPending();
      this.release(slot);
    } else {
      if (this.view.u32[(this.view.cmdrOffset + slot.entryOffset) >>> 2] !== slot.entryLenOp) {
        this.fail(new RingEngineError('EPROTO', `len_op of the in-flight entry at ${slot.entryOffset} was rewritten: ring broken`));
        return;
      }
      this.writeResponse(slot, this.view.cmdrOffset + slot.entryOffset, status);
      this.stats.commands++;
      slot.done = true;
      this.retireCompletedPrefix();
    }
  }

  /** In-order mode: move the tail over every completed command at the front. */
  private retireCompletedPrefix(): void {
    while (this.orderCount > 0) {
      const slot = this.slots[this.order[this.orderHead]!]!;
      if (!slot.done) return;
      this.skipNonCommands();
      if (this.broken || !this.checkUnchanged()) return;
      this.popPending();
      this.orderHead = (this.orderHead + 1) % this.order.length;
      this.orderCount--;
      this.release(slot);
    }
  }

  /** Fail with CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (04/44/00). */
  private failCommand(slot: CommandSlot): void {
    this.stats.errors++;
    const sense = slot.sense;
    sense.fill(0);
    sense[0] = 0x70; // fixed format, current error
    sense[2] = 0x04; // HARDWARE ERROR
    sense[7] = 10; // additional sense length
    sense[12] = 0x44; // INTERNAL TARGET FAILURE
    this.complete(slot, CHECK_CONDITION);
  }

  private writeResponse(slot: CommandSlot, base: number, status: number): void {
    const u8 = this.view.u8;
    u8[base + CmdRsp.scsiStatus] = status;
    let uflags = 0;
    if (status === CHECK_CONDITION) {
      // Sense only: without READ_LEN the kernel copies no data-in at all.
      u8.set(slot.sense, base + CmdRsp.sense);
      slot.sense.fill(0, 0, SENSE_SIZE); // next user of the slot starts clean
    } else {
      uflags = this.limitDataIn(slot, base);
    }
    u8[base + EntryHeader.uflags] = uflags;
  }

  /**
   * The one place that decides how much data-in the kernel hands the
   * initiator; returns the uflags to set. Every status but CHECK CONDITION
   * makes the kernel copy the whole data-in buffer unless READ_LEN says
   * less, and the data area holds whatever earlier commands left there, so
   * nothing past `dataInLength` (what the command produced) may go out.
   * The kernel ignores READ_LEN with read_len 0, and honours it only for
   * plain data-in commands on rings that announce it: everything else gets
   * the unproduced part zero-filled instead.
   */
  private limitDataIn(slot: CommandSlot, base: number): number {
    const bidi = slot.bidiIov.length > 0;
    const total = bidi ? slot.bidiLength : slot.iovLength;
    const claimed = slot.dataInLength;
    if (claimed >= total) return 0;
    const produced = claimed > 0 ? Math.floor(claimed) : 0; // NaN, negative: nothing
    if (produced > 0 && this.readLen && !bidi) {
      this.view.u32[(base + CmdRsp.readLen) >>> 2] = produced;
      return UFlag.ReadLen;
    }
    zeroIovFrom(bidi ? slot.bidiIov : slot.iov, produced);
    this.stats.zeroFilledBytes += total - produced;
    return 0;
  }

  private release(slot: CommandSlot): void {
    if (this.slotById[slot.cmdId] === slot.index) this.slotById[slot.cmdId] = -1;
    this.freeSlots[this.freeCount++] = slot.index;
    this.stats.inFlight--;
    if (this.stalled) this.requestBatch();
  }

  // ---- ring arithmetic --------------------------------------------------

  /** Move the tail over consumed PAD/TMR entries so their ring space is reclaimed (lock held). */
  private skipNonCommands(): void {
    const cs = this.cs;
    const words = cs.words;
    while (words[Word.PendingCount]! > 0 && (cs.pendingLenOp[words[Word.PendingHead]!]! & OP_MASK) !== Op.Cmd) {
      if (!this.checkUnchanged()) return;
      this.popPending();
    }
  }

  /** Move the tail over the entry at the front of the pending queue, by its recorded length (lock held). */
  private popPending(): void {
    const cs = this.cs;
    const words = cs.words;
    const head = words[Word.PendingHead]!;
    const lenOp = cs.pendingLenOp[head]!;
    words[Word.PendingHead] = (head + 1) & cs.mask;
    words[Word.PendingCount]!--;
    const next = words[Word.Tail]! + (lenOp & ~OP_MASK);
    words[Word.Tail] = next === this.view.cmdrSize ? 0 : next;
    if (this.stalled) this.requestBatch(); // a full pending queue has room again
  }

  /** The entry at the tail still has the len_op it had when consumed; fails the engine if not (lock held). */
  private checkUnchanged(): boolean {
    const cs = this.cs;
    const words = cs.words;
    const head = words[Word.PendingHead]!;
    const tail = words[Word.Tail]!;
    const recorded = cs.pendingLenOp[head]!;
    const now = this.view.u32[(this.view.cmdrOffset + tail) >>> 2]!;
    if (words[Word.PendingCount]! > 0 && cs.pendingOffset[head] === tail && now === recorded) return true;
    this.fail(
      new RingEngineError('EPROTO', `len_op of the in-flight entry at ${tail} changed from 0x${recorded.toString(16)} to 0x${now.toString(16)}: ring broken`),
    );
    return false;
  }

  /** fail() may have run in a callee: a getter keeps TypeScript from narrowing `state` away. */
  private get broken(): boolean {
    return this.state === 'broken';
  }

  private checkRingOffset(offset: number, what: string): boolean {
    if (offset < this.view.cmdrSize && offset % 8 === 0) return true;
    this.fail(new RingEngineError('EPROTO', `${what} ${offset} is not a valid ring offset (ring ${this.view.cmdrSize})`));
    return false;
  }

  private fail(err: Error): void {
    if (this.state === 'closed' || this.state === 'broken') return;
    this.state = 'broken';
    this.cs.words[Word.Open] = 0; // a broken ring is not written any more, by anyone
    this.mapping.unwatch();
    this.resolveDrainWaiters();
    // The owner knows whether this is an ordinary device removal; only log
    // here when nobody else will.
    if (this.opts.onError) this.opts.onError(err);
    else this.opts.log?.error({ err }, 'TCMU ring stopped');
  }

  private resolveDrainWaiters(): void {
    const waiters = this.drainWaiters;
    if (waiters.length === 0) return;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Zero every byte of the iov from byte `from` on. */
function zeroIovFrom(iov: readonly Buffer[], from: number): void {
  let skip = from;
  for (const part of iov) {
    if (skip >= part.length) {
      skip -= part.length;
      continue;
    }
    part.fill(0, skip);
    skip = 0;
  }
}
