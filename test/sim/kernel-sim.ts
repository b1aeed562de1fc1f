/**
 * A simulated kernel side of TCMU (target_core_user), for tests and the
 * benchmark. Both sides map the same /dev/shm file through openShared and
 * signal each other over a socketpair, so the runner under test uses the
 * real addon exactly as with /dev/uioN.
 *
 * It plays the kernel's part as TCMU.md describes: mailbox v2, CMD entries
 * sized max(48 + 16*iovs, 112) + roundup(cdb, 8), PAD at the wrap, TMR
 * entries, scattered data blocks, head published with a release store then
 * a kick. Completions are reaped like tcmu_handle_completions, only
 * stricter: any ring-rule violation (unknown or repeated cmd_id, len_op
 * changed, tail landing inside an entry or beyond head, an in-order slot
 * answered by another command) marks the ring BROKEN with a reason, and
 * every pending submission fails with it.
 */
import { Buffer } from 'node:buffer';
import { closeSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { native, type NativeMapping } from '../../src/native.js';
import {
  CmdReq,
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
  cdbLength,
  cmdEntryLength,
  tmrEntryLength,
} from '../../src/tcmu/ring-layout.js';
import { DataBlocks, type SimIov } from './data-blocks.js';

export interface KernelSimOptions {
  /** Command ring bytes (multiple of 8; the kernel default is 8 MiB - 128). */
  ringSize: number;
  /** Data area bytes (multiple of blockSize). */
  dataSize: number;
  /** Announce out-of-order completion (OOOC). */
  ooo: boolean;
  /** Announce READ_LEN. */
  readLen: boolean;
  /** Announce TMR notifications (default true). */
  tmr?: boolean;
  /** Data block size (default 4096, the kernel's page-sized block). */
  blockSize?: number;
  /** Hand out data blocks in random order so iovecs are scattered (default true). */
  scatter?: boolean;
  seed?: number;
  /** Copy data-in out and pre-fill data-in buffers with 0xA5 (default true; the benchmark turns it off). */
  collectData?: boolean;
  /** Byte data-in buffers are pre-filled with when collectData is on (default 0xA5): what earlier commands left in the data area. */
  canary?: number;
  /** Mailbox version to write (default 2; tests of the runner's refusal use others). */
  mailboxVersion?: number;
  /** Called once when the ring becomes BROKEN. */
  onBroken?: (reason: string) => void;
  /**
   * Map an existing file instead of creating one, signalling on `fd` (one
   * socketpair end); the runner side is opened elsewhere (another thread)
   * on the same file with the other end. runnerMapping() is then unavailable.
   */
  attach?: { path: string; fd: number };
}

export interface SimData {
  /** Data-out (WRITE) bytes. */
  out?: Buffer;
  /** Data-in (READ) length the initiator allocated. */
  inLength?: number;
  /** Split the data into iovecs of these lengths (sum must equal the data length). */
  iovSplit?: number[];
  /** Pre-fill byte of this command's data-in buffer (default: the sim's canary). */
  canary?: number;
}

export interface SimResult {
  cmdId: number;
  status: number;
  /** The 96 sense bytes when status is CHECK CONDITION, else zeros. */
  sense: Buffer;
  /** read_len when the runner set UFLAG READ_LEN, else undefined. */
  readLen: number | undefined;
  /** Data-in as the kernel would transfer it (short when a valid READ_LEN says so; empty for CHECK CONDITION without one). */
  dataIn: Buffer | undefined;
  uflags: number;
}

export type SimDone = (result: SimResult | undefined, err: Error | undefined) => void;

interface PendingCommand {
  kind: 'cmd';
  cdb: Buffer;
  out: Buffer | undefined;
  inLength: number;
  pieces: number[];
  canary: number | undefined;
  done: SimDone;
  cmdId: number;
  blocks: number[];
  iovs: SimIov[];
}

interface PendingTmr {
  kind: 'tmr';
  type: number;
  cmdIds: number[];
}

export class KernelSim {
  /** Reason the ring is BROKEN, if it is. */
  broken: string | undefined;
  /** Kicks received from the runner (each 4-byte write). */
  runnerKicks = 0;
  /** Kicks sent to the runner. */
  kernelKicks = 0;
  /** Commands completed. */
  completed = 0;
  /** PAD entries written (one per wrap that did not fit exactly). */
  padsWritten = 0;

  readonly mapSize: number;
  readonly cmdrOffset = Mailbox.size;
  readonly ringSize: number;
  readonly flags: number;

  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly blocks: DataBlocks;
  private readonly collectData: boolean;
  private readonly mapping: NativeMapping;
  private readonly runner: NativeMapping | undefined;
  /** Reused result when collectData is off (valid only during the callback). */
  private readonly sharedResult: SimResult = { cmdId: 0, status: 0, sense: Buffer.alloc(SENSE_SIZE), readLen: undefined, dataIn: undefined, uflags: 0 };
  private head = 0;
  private lastCleaned = 0;
  private nextCmdId = 1;
  /** Commands in the ring by cmd_id (flat array: no Map churn in the benchmark). */
  private readonly inRing: (PendingCommand | undefined)[] = new Array<PendingCommand | undefined>(65536).fill(undefined);
  private inRingCount = 0;
  /** What the sim wrote at each 8-byte ring position (len_op 0 = nothing), to detect tampering. */
  private readonly entryLenOp: Uint32Array;
  private readonly entryCmdId: Uint16Array;
  private readonly waiting: (PendingCommand | PendingTmr)[] = [];
  private kickScheduled = false;
  private closed = false;

  static create(opts: KernelSimOptions): KernelSim {
    return new KernelSim(opts);
  }

  private constructor(private readonly opts: KernelSimOptions) {
    const blockSize = opts.blockSize ?? 4096;
    if (opts.ringSize % 8 !== 0 || opts.ringSize < 256) throw new RangeError('ringSize must be a multiple of 8, >= 256');
    if (opts.dataSize % blockSize !== 0 || opts.dataSize <= 0) throw new RangeError('dataSize must be a positive multiple of blockSize');
    this.ringSize = opts.ringSize;
    this.entryLenOp = new Uint32Array(opts.ringSize / 8);
    this.entryCmdId = new Uint16Array(opts.ringSize / 8);
    this.mapSize = Mailbox.size + opts.ringSize + opts.dataSize;
    this.collectData = opts.collectData ?? true;

    const mapped = opts.attach ? KernelSim.attach(opts.attach, this.mapSize) : KernelSim.createPair(this.mapSize);
    this.mapping = mapped.kernel;
    this.runner = mapped.runner;
    this.u8 = new Uint8Array(this.mapping.buffer);
    this.u16 = new Uint16Array(this.mapping.buffer, 0, this.mapSize >>> 1);
    this.u32 = new Uint32Array(this.mapping.buffer, 0, this.mapSize >>> 2);
    this.blocks = new DataBlocks(
      Mailbox.size + opts.ringSize,
      blockSize,
      opts.dataSize / blockSize,
      opts.scatter ?? true,
      opts.seed ?? 0x5eed,
    );

    this.flags =
      (opts.ooo ? MailboxFlag.OutOfOrderCompletion : 0) |
      (opts.readLen ? MailboxFlag.ReadLen : 0) |
      ((opts.tmr ?? true) ? MailboxFlag.Tmr : 0);
    const dv = new DataView(this.mapping.buffer);
    dv.setUint16(Mailbox.version, opts.mailboxVersion ?? MAILBOX_VERSION, true);
    dv.setUint16(Mailbox.flags, this.flags, true);
    dv.setUint32(Mailbox.cmdrOff, this.cmdrOffset, true);
    dv.setUint32(Mailbox.cmdrSize, opts.ringSize, true);
    this.mapping.storeRelease32(Mailbox.cmdHead, 0);
    this.mapping.storeRelease32(Mailbox.cmdTail, 0);

    this.mapping.watch(
      (bytes) => {
        this.runnerKicks += bytes / 4;
        this.reap();
      },
      (err) => {
        if (!this.closed) this.markBroken(`kick channel failed: ${err.message}`);
      },
    );
  }

  /** The runner's side of the shared map (same memory, the other socket end). */
  runnerMapping(): NativeMapping {
    if (this.runner === undefined) throw new Error('KernelSim was attached: the runner side is mapped elsewhere');
    return this.runner;
  }

  /** A fresh /dev/shm file mapped twice over a new socketpair (unlinked at once). */
  private static createPair(mapSize: number): { kernel: NativeMapping; runner: NativeMapping } {
    const path = `/dev/shm/tcmu-sim-${process.pid}-${randomBytes(6).toString('hex')}`;
    const fd = openSync(path, 'wx+', 0o600);
    const addon = native();
    let fds: [number, number] | undefined;
    let kernel: NativeMapping | undefined;
    try {
      ftruncateSync(fd, mapSize);
      fds = addon.socketPair();
      kernel = addon.openShared(path, mapSize, fds[1], fds[1]);
      const runner = addon.openShared(path, mapSize, fds[0], fds[0]);
      return { kernel, runner };
    } catch (err) {
      if (kernel) kernel.close();
      else if (fds) closeSync(fds[1]);
      if (fds) closeSync(fds[0]);
      throw err;
    } finally {
      closeSync(fd);
      unlinkSync(path); // both mappings keep the memory alive
    }
  }

  private static attach(at: { path: string; fd: number }, mapSize: number): { kernel: NativeMapping; runner: undefined } {
    return { kernel: native().openShared(at.path, mapSize, at.fd, at.fd), runner: undefined };
  }

  /** Submit a command; resolves with its completion, rejects if the ring breaks. */
  submit(cdb: Buffer, data: SimData = {}): Promise<SimResult> {
    return new Promise((resolve, reject) => {
      this.submitWith(cdb, data, (result, err) => (err ? reject(err) : resolve(result!)));
    });
  }

  /** Callback form of submit (no promise per command: the benchmark uses it). */
  submitWith(cdb: Buffer, data: SimData, done: SimDone): void {
    if (this.closed) throw new Error('KernelSim is closed');
    const expected = cdbLength(cdb[0]!, cdb[7] ?? 0);
    if (cdb.length !== expected) throw new RangeError(`CDB opcode 0x${cdb[0]!.toString(16)} needs ${expected} bytes, got ${cdb.length}`);
    if (data.out !== undefined && data.inLength !== undefined) throw new RangeError('bidirectional commands are not simulated');
    const length = data.out?.length ?? data.inLength ?? 0;
    const pieces = data.iovSplit ?? (length > 0 ? [length] : []);
    if (pieces.reduce((a, b) => a + b, 0) !== length || pieces.some((p) => !(p > 0))) {
      throw new RangeError(`iovSplit ${JSON.stringify(pieces)} does not add up to ${length} bytes`);
    }
    if (this.broken !== undefined) {
      done(undefined, new Error(`ring broken: ${this.broken}`));
      return;
    }
    const cmd: PendingCommand = { kind: 'cmd', cdb, out: data.out, inLength: data.inLength ?? 0, pieces, canary: data.canary, done, cmdId: 0, blocks: [], iovs: [] };
    this.enqueue(cmd);
  }

  /** Queue a TMR notification listing `cmdIds` (the kernel only lists commands in the ring). */
  submitTmr(type: number, cmdIds: number[]): void {
    if (this.closed) throw new Error('KernelSim is closed');
    this.enqueue({ kind: 'tmr', type, cmdIds });
  }

  /** cmd_ids of commands currently in the ring (queued, not yet completed). */
  cmdIdsInRing(): number[] {
    const ids: number[] = [];
    this.inRing.forEach((cmd, id) => cmd !== undefined && ids.push(id));
    return ids;
  }

  /** Ring offset of the entry of an in-ring command (for tests that play a broken runner). */
  entryOffsetOf(cmdId: number): number | undefined {
    for (let i = 0; i < this.entryLenOp.length; i++) {
      if (this.entryCmdId[i] === cmdId && (this.entryLenOp[i]! & OP_MASK) === Op.Cmd && this.entryLenOp[i]! !== 0) return i * 8;
    }
    return undefined;
  }

  /** Submissions waiting for ring or data space. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * Publish the head now, as the kernel does while the runner works (its
   * queueing runs on another CPU), without the kick the microtask would add:
   * for tests of what a batch sees arrive while it runs.
   */
  publishHeadNow(): void {
    this.mapping.storeRelease32(Mailbox.cmdHead, this.head);
  }

  get ringHead(): number {
    return this.head;
  }

  get ringLastCleaned(): number {
    return this.lastCleaned;
  }

  /** Close both mappings; pending submissions fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('KernelSim closed'));
    this.mapping.close();
    this.runner?.close();
  }

  // ---- queueing ----------------------------------------------------------

  private enqueue(item: PendingCommand | PendingTmr): void {
    // FIFO like the kernel's qfull queue: nothing overtakes a waiter.
    if (this.waiting.length > 0 || !this.place(item)) this.waiting.push(item);
    this.scheduleKick();
  }

  private placeWaiting(): void {
    let placed = false;
    while (this.waiting.length > 0 && this.place(this.waiting[0]!)) {
      this.waiting.shift();
      placed = true;
    }
    if (placed) this.scheduleKick();
  }

  private scheduleKick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      if (this.closed || this.broken !== undefined) return;
      this.mapping.storeRelease32(Mailbox.cmdHead, this.head);
      this.mapping.kick();
      this.kernelKicks++;
    });
  }

  /** Space free in the ring; one byte stays unused so head == tail means empty. */
  private ringFree(): number {
    return (this.lastCleaned - this.head - 1 + this.ringSize) % this.ringSize;
  }

  /** Write a PAD to the end if `length` does not fit before the wrap; false if no space at all. */
  private reserve(length: number): boolean {
    const toEnd = this.ringSize - this.head;
    const needed = toEnd >= length ? length : length + toEnd;
    if (this.ringFree() < needed) return false;
    if (toEnd < length) {
      this.writeHeader(this.head, toEnd | Op.Pad, 0);
      this.padsWritten++;
      this.head = 0;
    }
    return true;
  }

  private place(item: PendingCommand | PendingTmr): boolean {
    return item.kind === 'cmd' ? this.placeCommand(item) : this.placeTmr(item);
  }

  private placeCommand(cmd: PendingCommand): boolean {
    // Like the kernel: data blocks first (the entry size depends on how many
    // iovecs they make), then ring space. A command that got its blocks but
    // no ring space keeps them: it is first in line and retries.
    if (cmd.pieces.length > 0 && cmd.blocks.length === 0) {
      const got = this.blocks.allocate(cmd.pieces);
      if (got === null) return false;
      cmd.blocks = got.blocks;
      cmd.iovs = got.iovs;
    }
    const cdbLen = cmd.cdb.length;
    const length = cmdEntryLength(cmd.iovs.length, cdbLen);
    if (!this.reserve(length)) return false;

    const cmdId = this.allocateCmdId();
    cmd.cmdId = cmdId;
    const at = this.head;
    const base = this.cmdrOffset + at;
    this.u8.fill(0, base, base + length);
    this.writeHeader(at, length | Op.Cmd, cmdId);
    const w = base >>> 2;
    this.u32[w + (CmdReq.iovCnt >>> 2)] = cmd.iovs.length;
    const iovArea = Math.max(CmdReq.iov + CmdReq.iovSize * cmd.iovs.length, 112);
    const cdbOff = base + iovArea;
    this.setU64(base + CmdReq.cdbOff, cdbOff);
    let iovOff = base + CmdReq.iov;
    for (const iov of cmd.iovs) {
      this.setU64(iovOff + CmdReq.iovBase, iov.offset);
      this.setU64(iovOff + CmdReq.iovLen, iov.length);
      iovOff += CmdReq.iovSize;
    }
    this.u8.set(cmd.cdb, cdbOff);
    if (cmd.out !== undefined) {
      let from = 0;
      for (const iov of cmd.iovs) {
        this.u8.set(cmd.out.subarray(from, from + iov.length), iov.offset);
        from += iov.length;
      }
    } else if (this.collectData) {
      const canary = cmd.canary ?? this.opts.canary ?? 0xa5;
      for (const iov of cmd.iovs) this.u8.fill(canary, iov.offset, iov.offset + iov.length);
    }
    this.inRing[cmdId] = cmd;
    this.inRingCount++;
    this.head = (at + length) % this.ringSize;
    return true;
  }

  private placeTmr(tmr: PendingTmr): boolean {
    const length = tmrEntryLength(tmr.cmdIds.length);
    if (!this.reserve(length)) return false;
    const at = this.head;
    const base = this.cmdrOffset + at;
    this.u8.fill(0, base, base + length);
    this.writeHeader(at, length | Op.Tmr, 0);
    this.u8[base + TmrEntry.tmrType] = tmr.type;
    this.u32[(base + TmrEntry.cmdCnt) >>> 2] = tmr.cmdIds.length;
    tmr.cmdIds.forEach((id, i) => (this.u16[((base + TmrEntry.cmdIds) >>> 1) + i] = id));
    this.head = (at + length) % this.ringSize;
    return true;
  }

  private writeHeader(at: number, lenOp: number, cmdId: number): void {
    const base = this.cmdrOffset + at;
    this.u32[base >>> 2] = lenOp;
    this.u16[(base + EntryHeader.cmdId) >>> 1] = cmdId;
    this.u8[base + EntryHeader.kflags] = 0;
    this.u8[base + EntryHeader.uflags] = 0;
    this.entryLenOp[at >>> 3] = lenOp;
    this.entryCmdId[at >>> 3] = cmdId;
  }

  /** Cyclic in [1, 65535], skipping ids in use (the kernel's xa_alloc_cyclic). */
  private allocateCmdId(): number {
    for (;;) {
      const id = this.nextCmdId;
      this.nextCmdId = id === 0xffff ? 1 : id + 1;
      if (this.inRing[id] === undefined) return id;
    }
  }

  private setU64(offset: number, value: number): void {
    this.u32[offset >>> 2] = value % 0x1_0000_0000;
    this.u32[(offset >>> 2) + 1] = Math.floor(value / 0x1_0000_0000);
  }

  // ---- reaping -----------------------------------------------------------

  private reap(): void {
    if (this.broken !== undefined || this.closed) return;
    const tail = this.mapping.loadAcquire32(Mailbox.cmdTail);
    if (tail >= this.ringSize || tail % 8 !== 0) return this.markBroken(`cmd_tail ${tail} is not a valid ring offset`);
    while (this.lastCleaned !== tail) {
      const at = this.lastCleaned;
      if (at === this.head) {
        return this.markBroken(`cmd_tail ${tail} passed cmd_head ${this.head}: completed entries the kernel never queued`);
      }
      const recLenOp = this.entryLenOp[at >>> 3]!;
      if (recLenOp === 0) return this.markBroken(`no entry recorded at ring offset ${at}`);
      const base = this.cmdrOffset + at;
      const lenOp = this.u32[base >>> 2]!;
      if (lenOp !== recLenOp) {
        return this.markBroken(`len_op at ring offset ${at} changed from 0x${recLenOp.toString(16)} to 0x${lenOp.toString(16)}`);
      }
      const length = lenOp & ~OP_MASK;
      const toTail = (tail - at + this.ringSize) % this.ringSize;
      if (toTail < length) {
        return this.markBroken(`cmd_tail ${tail} lands inside the entry at ${at} (length ${length})`);
      }
      if ((lenOp & OP_MASK) === Op.Cmd) {
        const cmdId = this.u16[(base + EntryHeader.cmdId) >>> 1]!;
        const queuedId = this.entryCmdId[at >>> 3]!;
        if (!(this.flags & MailboxFlag.OutOfOrderCompletion) && cmdId !== queuedId) {
          return this.markBroken(`entry of cmd_id ${queuedId} answered for cmd_id ${cmdId} without OOOC`);
        }
        const cmd = this.inRing[cmdId];
        if (cmd === undefined) return this.markBroken(`cmd_id ${cmdId} unknown or already completed`);
        this.inRing[cmdId] = undefined;
        this.inRingCount--;
        this.finish(cmd, base);
      }
      this.entryLenOp[at >>> 3] = 0;
      this.lastCleaned = (at + length) % this.ringSize;
    }
    this.placeWaiting();
  }

  private finish(cmd: PendingCommand, base: number): void {
    const status = this.u8[base + CmdRsp.scsiStatus]!;
    const uflags = this.u8[base + EntryHeader.uflags]!;
    // As tcmu_handle_completion: READ_LEN counts only on a ring that
    // announced it and only when read_len is not 0; CHECK CONDITION copies
    // data-in only with a valid READ_LEN; every other status copies all of
    // it (stale data-area bytes included) unless READ_LEN says less.
    let readLen: number | undefined;
    let inBytes = cmd.inLength;
    let readLenValid = false;
    if (uflags & UFlag.ReadLen) {
      readLen = this.u32[(base + CmdRsp.readLen) >>> 2]!;
      readLenValid = (this.flags & MailboxFlag.ReadLen) !== 0 && readLen !== 0;
      if (readLenValid && readLen < inBytes) inBytes = readLen;
    }
    if (status === 0x02 && !readLenValid) inBytes = 0;
    this.blocks.release(cmd.blocks);
    this.completed++;
    if (!this.collectData) {
      // Benchmark mode: no per-completion allocation on the kernel side.
      const r = this.sharedResult;
      r.cmdId = cmd.cmdId;
      r.status = status;
      r.uflags = uflags;
      r.readLen = readLen;
      if (status === 0x02) r.sense.set(this.u8.subarray(base + CmdRsp.sense, base + CmdRsp.sense + SENSE_SIZE));
      cmd.done(r, undefined);
      return;
    }
    const sense = Buffer.alloc(SENSE_SIZE);
    if (status === 0x02) sense.set(this.u8.subarray(base + CmdRsp.sense, base + CmdRsp.sense + SENSE_SIZE));
    let dataIn: Buffer | undefined;
    if (cmd.inLength > 0) {
      dataIn = Buffer.alloc(inBytes);
      let to = 0;
      for (const iov of cmd.iovs) {
        if (to >= inBytes) break;
        const n = Math.min(iov.length, inBytes - to);
        dataIn.set(this.u8.subarray(iov.offset, iov.offset + n), to);
        to += n;
      }
    }
    cmd.done({ cmdId: cmd.cmdId, status, sense, readLen, dataIn, uflags }, undefined);
  }

  private markBroken(reason: string): void {
    if (this.broken !== undefined) return;
    this.broken = reason;
    this.opts.onBroken?.(reason);
    this.failAll(new Error(`ring broken: ${reason}`));
  }

  private failAll(err: Error): void {
    const pending = [
      ...this.inRing.filter((c): c is PendingCommand => c !== undefined),
      ...this.waiting.filter((w): w is PendingCommand => w.kind === 'cmd'),
    ];
    this.inRing.fill(undefined);
    this.inRingCount = 0;
    this.waiting.length = 0;
    for (const cmd of pending) cmd.done(undefined, err);
  }
}
