/**
 * One served LUN: the uio mapping, the handler stack, SCSI emulation and the
 * ring engine, plus the kernel-side choreography that makes (re)opening and
 * stopping safe:
 *   reopen (daemon restart): block_dev=1, reset_ring=1 (commands a previous
 *          runner left in the ring fail BUSY, which initiators retry), map,
 *          check, unblock;
 *   fresh  (netlink ADDED: the device is not configured yet, so configfs
 *          actions are refused and the ring is empty): just map;
 *   stop:  block_dev=1, finish everything in flight, flush and close the
 *          store, unmap, unblock. When the device is being removed, skip the
 *          configfs steps: it is going away and no new command can arrive.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Backstore, LunStore } from '../backstore/types.js';
import { openDevConfig, openLayersOf } from '../backstore/registry.js';
import type { FileOpener } from '../backstore/confine.js';
import type { ScsiCommand, ScsiTarget } from '../scsi/command.js';
import { ScsiDisk, identityFromUnitSerial } from '../scsi/index.js';
import { RingEngine, type RingEngineStats } from '../tcmu/ring-engine.js';
import { CommandCounters } from '../tcmu/command-counters.js';
import { native, type NativeMapping } from '../native.js';
import { TcmuConfigfs } from '../tcmu/configfs.js';
import { AluaFollower } from './alua-follower.js';
import type { TcmuUioDevice } from '../tcmu/discovery.js';
import type { KeySource } from '../config/keyring.js';
import type { FaultGuard, FaultOwner } from './fault-guard.js';
import { type CopyRegistry, daemonCopyRegistry } from './copy-registry.js';
import { UseCount } from './use-count.js';
import { finishesWithin } from './finishes-within.js';

export interface LunOptions {
  log: Logger;
  /** How long stop() waits for in-flight commands before closing anyway. */
  drainTimeoutMs?: number;
  configfsRoot?: string;
  /** Confined opener for the handlers (the daemon's allowed_dirs); default unconfined. */
  files?: FileOpener;
  /** Keys for crypt layers (key_dir files and memory keys); default: the default key directory. */
  keys?: KeySource;
  /** Attributes process-level faults to this LUN (see fault-guard.ts). */
  faultGuard?: FaultGuard;
  /** Where EXTENDED COPY finds the daemon's LUNs (default: the process-wide one). */
  copyRegistry?: CopyRegistry;
  /** The daemon's run directory (the control socket's); each LUN gets `lun/<hba>-<name>` beneath it (OpenContext.runtimeDir). */
  runDir?: string;
  /** Time each command's latency for the metrics endpoint's histograms (default true; the daemon: only when it serves metrics). */
  timeLatency?: boolean;
}

export interface LunStatus {
  id: string;
  uio: string;
  devConfig: string;
  size: number;
  blockSize: number;
  thin: boolean;
  writeCache: boolean;
  /** 'failed': this LUN alone stopped serving (ring protocol broken, or a fault attributed to it); its device is blocked. */
  state: 'starting' | 'serving' | 'stopping' | 'stopped' | 'failed';
  /** Why the LUN failed (state 'failed'). */
  error?: string;
  stats?: RingEngineStats;
  /** Seconds the LUN has had commands in flight without completing any (0 = healthy). */
  stalledSeconds: number;
  /** How many times the LUN was detected stuck since it started. */
  stuckEvents: number;
}

const WATCHDOG_PERIOD_MS = 1000;
/** A LUN with no completion for this long while commands are in flight is reported stuck. */
const STUCK_AFTER_MS = 5000;

export class Lun implements FaultOwner {
  readonly id: string;
  readonly log: Logger;
  /** Monitoring counters the ring engine feeds (read by the metrics endpoint; latencies timed only when there is one). */
  readonly counters: CommandCounters;
  private readonly configfs: TcmuConfigfs;
  /** ALUA port groups for INQUIRY / REPORT TARGET PORT GROUPS; their state follows an exclusive lock. */
  private readonly alua: AluaFollower;
  private mapping?: NativeMapping;
  private store?: LunStore;
  private engine?: RingEngine;
  private disk?: ScsiDisk;
  private devConfig: string;
  /** Takes this LUN off the copy registry (set while serving). */
  private unlist?: () => void;
  /** Other LUNs' EXTENDED COPY reads and writes in progress on this LUN's store. */
  private readonly peerCopies = new UseCount();
  /** Online operations running beside I/O on the open store (besideIo), and what aborts them. */
  private readonly besideOps = new UseCount();
  private besideAbort = new AbortController();
  private state: LunStatus['state'] = 'starting';
  private failure?: string;
  private stopping?: Promise<void>;
  private readonly watchdog = { timer: undefined as NodeJS.Timeout | undefined, lastCommands: 0, stalledMs: 0, stuckEvents: 0 };
  /**
   * The engine talks to this stable target; it forwards to the current disk,
   * so a RECONFIG can swap the store (and disk) under a running ring.
   */
  private readonly target: ScsiTarget = {
    execute: (cmd: ScsiCommand) => this.disk!.execute(cmd),
  };
  /**
   * The engine starts each batch of commands inside this LUN's fault context
   * (see fault-guard.ts): once per batch, not per command, because entering
   * an AsyncLocalStorage context costs ~0.1-0.2 us on this host
   * (`scripts/bench sim`, '+ fault guard' rows).
   */
  private readonly enterFaultContext = (consume: () => void): void => {
    const guard = this.opts.faultGuard;
    if (guard) guard.within(this, consume, undefined);
    else consume();
  };

  constructor(readonly device: TcmuUioDevice, private readonly opts: LunOptions) {
    this.id = `user_${device.hbaIndex}/${device.deviceName}`;
    this.counters = new CommandCounters(opts.timeLatency ?? true);
    this.devConfig = device.devConfig;
    this.log = opts.log.child({ lun: this.id, uio: device.uio });
    this.configfs = new TcmuConfigfs(device.hbaIndex, device.deviceName, opts.configfsRoot);
    this.alua = new AluaFollower({
      deviceDir: this.configfs.dir,
      targetRoot: opts.configfsRoot === undefined ? undefined : dirname(opts.configfsRoot),
      lockHolder: () => this.store?.exclusiveLockHolder?.(),
      log: this.log,
    });
  }

  status(): LunStatus {
    // Commands completed on other threads count from here on (and in the metrics, read right after).
    this.engine?.collectForeign();
    return {
      id: this.id,
      uio: this.device.uio,
      devConfig: this.devConfig,
      size: this.store?.size ?? 0,
      blockSize: this.store?.blockSize ?? 0,
      thin: this.store?.thin ?? false,
      writeCache: this.store?.writeCache ?? false,
      state: this.state,
      stats: this.engine ? { ...this.engine.stats } : undefined,
      stalledSeconds: this.watchdog.stalledMs / 1000,
      stuckEvents: this.watchdog.stuckEvents,
      ...(this.failure !== undefined ? { error: this.failure } : {}),
    };
  }

  async start(mode: { fresh: boolean }): Promise<void> {
    const size = this.configfs.devSize();
    this.store = await this.openStore(this.devConfig, size);
    const fresh = mode.fresh || !this.tryBlock();
    try {
      this.disk = this.createDisk(this.store); // inside: a failure here still closes the store
      if (!fresh) this.configfs.resetRing();
      this.mapping = native().openUio(`/dev/${this.device.uio}`, this.device.mapSize);
      this.engine = new RingEngine(this.mapping, this.target, {
        log: this.log,
        onTmr: (type, cmdIds) => this.log.warn({ type, cmdIds }, 'task management function'),
        onError: (err) => this.onRingError(err),
        counters: this.counters,
        onBusy: this.armWatchdog,
        enter: this.enterFaultContext,
        completeElsewhere: this.store.completesInRing,
      });
      this.engine.start();
    } catch (err) {
      this.closeMapping();
      await this.store.close();
      throw err;
    } finally {
      // A LUN that failed while starting (a ring already broken) stays blocked.
      if (!fresh && (this.state as LunStatus['state']) !== 'failed') this.configfs.setBlocked(false);
    }
    if ((this.state as LunStatus['state']) === 'failed') return;
    this.state = 'serving';
    // Reachable for other LUNs' EXTENDED COPY only while serving (not while quiesced or stopping).
    this.unlist = (this.opts.copyRegistry ?? daemonCopyRegistry).add(this.disk.identity.naa, () =>
      this.state === 'serving' ? this.disk?.copyEndpoint() : undefined,
    );
    this.log.info(
      { devConfig: this.devConfig, size: this.store.size, thin: this.store.thin, writeCache: this.store.writeCache },
      'LUN serving',
    );
    // A restarted gateway's group may still say active/optimized for a lock another gateway took since.
    if (this.store.exclusiveLockHolder) this.alua.onActivity();
  }

  /**
   * block_dev=1 before touching a ring another runner may have used. The
   * kernel refuses (EINVAL) while the device is still being enabled: then
   * its ring has never been used and there is nothing to reset.
   */
  private tryBlock(): boolean {
    try {
      this.configfs.setBlocked(true);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      this.log.debug('device not configured yet: opening its pristine ring without reset');
      return false;
    }
  }

  private async openStore(devConfig: string, size: number | undefined): Promise<LunStore> {
    return openDevConfig(devConfig, {
      size,
      blockSize: this.configfs.blockSize(),
      readOnly: false,
      log: this.log,
      files: this.opts.files,
      keys: this.opts.keys,
      runtimeDir: this.opts.runDir ? join(this.opts.runDir, 'lun', `${this.device.hbaIndex}-${this.device.deviceName}`) : undefined,
      onMediumResized: (newSize) => this.followMediumSize(newSize),
    });
  }

  /**
   * The store's medium changed size under us (an `rbd resize`): write the
   * kernel's dev_size, which comes back as RECONFIG (-> resize()). The write
   * goes through the thread pool because the kernel holds it until this
   * process answers the RECONFIG on its event loop.
   */
  private followMediumSize(newSize: number): void {
    if (this.state !== 'serving' || !this.store || newSize === this.store.size) return;
    this.log.info({ from: this.store.size, to: newSize }, 'medium resized outside the runner; following');
    writeFile(join(this.configfs.dir, 'attrib/dev_size'), String(newSize)).catch((err: unknown) => {
      this.log.warn({ err, size: newSize }, 'could not follow the medium size (attrib/dev_size)');
    });
  }

  /**
   * The SCSI disk over `store`. A disk replacing this LUN's current one
   * (RECONFIG, snapshot revert) keeps its MODE SELECT settings and pending
   * unit attentions and reports MEDIUM MAY HAVE CHANGED, not POWER ON.
   */
  private createDisk(store: LunStore, replaces?: ScsiDisk, mediumUnchanged = false): ScsiDisk {
    const serial = this.configfs.unitSerial();
    return new ScsiDisk(
      store,
      {
        ...identityFromUnitSerial(this.id, serial),
        maxTransferBlocks: this.configfs.maxSectors(),
      },
      {
        log: this.log,
        replaces,
        mediumUnchanged,
        copyPeers: (this.opts.copyRegistry ?? daemonCopyRegistry).lookup,
        holdForCopy: () => this.peerCopies.enter(),
        portGroups: this.alua.read,
      },
    );
  }

  /**
   * Grow (or shrink) the LUN; the initiator gets CAPACITY DATA HAS CHANGED.
   * A shrink first lets the commands in flight finish: they were checked
   * against the old size, and one landing past the new end after the store
   * shrank would write (and regrow) or read beyond it.
   */
  async resize(newSize: number): Promise<void> {
    const store = this.requireStore();
    if (newSize === store.size) return;
    const shrinking = newSize < store.size;
    if (shrinking) await this.engine!.drain();
    try {
      await store.resize(newSize);
      // refresh() re-reads the size and queues CAPACITY DATA HAS CHANGED (06/2A/09).
      this.disk!.refresh();
    } finally {
      if (shrinking && this.state === 'serving') this.engine!.start();
    }
    this.log.info({ size: newSize }, 'LUN resized');
  }

  /**
   * Switch to a new dev_config (same subtype). The new store is opened
   * first, so a bad config leaves the LUN serving the old one; commands in
   * flight on the old store finish before it is closed.
   */
  async changeConfig(newDevConfig: string): Promise<void> {
    const old = this.requireStore();
    const next = await this.openStore(newDevConfig, old.size);
    // Finish what the old store is doing before anything reaches the new one.
    await this.engine!.drain();
    this.store = next;
    this.disk = this.createDisk(next, this.disk);
    this.devConfig = newDevConfig;
    this.engine!.start();
    await this.storeUsersDone();
    await old.close();
    this.log.info({ devConfig: newDevConfig }, 'LUN reconfigured');
  }

  /** Idempotent; resolves when the LUN is closed (and the kernel unblocked). */
  stop(mode: { deviceGone: boolean } = { deviceGone: false }): Promise<void> {
    this.stopping ??= this.doStop(mode.deviceGone);
    return this.stopping;
  }

  private async doStop(deviceGone: boolean): Promise<void> {
    this.state = 'stopping';
    this.unlist?.();
    let blocked = false;
    // Until the store has closed, its library may still read or write the
    // data area (a librbd request that outlived the drain): then the mapping
    // is retired, not unmapped.
    let storeClosed = this.store === undefined;
    if (!deviceGone) {
      try {
        this.configfs.setBlocked(true);
        blocked = true;
      } catch (err) {
        this.log.warn({ err }, 'could not block device before stopping');
      }
    }
    try {
      if (this.engine) {
        const drained = await finishesWithin(this.engine.drain(), this.drainTimeoutMs);
        if (!drained) this.log.error({ inFlight: this.engine.stats.inFlight }, 'stop: in-flight commands did not finish');
      }
      await this.storeUsersDone();
      // Bounded too: a store whose calls run one at a time (maxInFlight)
      // closes only after a stuck call returns, and a handler's close may
      // hang on its own; the daemon must still be able to stop.
      const store = this.store;
      if (store) {
        storeClosed = await finishesWithin((async () => store.close())(), this.drainTimeoutMs, (err) => this.log.error({ err }, 'store close failed late'));
        if (!storeClosed) this.log.error({ timeoutMs: this.drainTimeoutMs }, 'stop: the store did not close in time; leaving it (its data area stays addressable)');
      }
    } finally {
      this.closeMapping({ retire: !storeClosed });
      if (blocked) {
        try {
          this.configfs.setBlocked(false);
        } catch (err) {
          this.log.warn({ err }, 'could not unblock device');
        }
      }
      this.state = 'stopped';
      this.log.info('LUN stopped');
    }
  }

  private requireStore(): LunStore {
    if (!this.store || this.state !== 'serving') throw new Error(`LUN ${this.id} is not serving`);
    return this.store;
  }

  /**
   * The ring stopped: the uio fd reported an error, or the kernel side broke
   * the ring protocol. When the kernel removed the device without waiting
   * for us (nl_reply_supported=-1, or no netlink replies), that is an
   * ordinary removal; anything else fails this LUN.
   */
  private onRingError(err: Error): void {
    if (!existsSync(`/sys/class/uio/${this.device.uio}`)) {
      this.log.info('device removed by the kernel; LUN closed');
      void this.stop({ deviceGone: true });
      return;
    }
    this.fail(err, 'ring');
  }

  /**
   * Fail this LUN and only this one: stop consuming its ring (commands in
   * flight are abandoned; the kernel times them out), block the device so
   * new commands get BUSY instead of piling up, and report 'failed' with
   * the reason in status. Other LUNs are not touched. stop() (device
   * removal, daemon shutdown) still cleans up and unblocks.
   */
  fail(err: unknown, source: string): void {
    if (this.state === 'failed' || this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'failed';
    this.unlist?.();
    const message = err instanceof Error ? err.message : String(err);
    this.failure = `${source}: ${message}`;
    this.log.error({ err, source }, 'LUN failed: stopped serving, device blocked');
    this.disarmWatchdog();
    this.engine?.close();
    try {
      this.configfs.setBlocked(true);
    } catch (blockErr) {
      this.log.warn({ err: blockErr }, 'could not block the failed LUN');
    }
  }

  /**
   * Starts the stuck-I/O watchdog when a command arrives on an idle LUN (the
   * engine's onBusy). It runs only while commands are in flight, so an idle
   * daemon has no timer waking it up.
   */
  private readonly armWatchdog = (): void => {
    const w = this.watchdog;
    if (w.timer || this.state === 'failed') return;
    w.lastCommands = this.engine?.stats.commands ?? 0;
    w.stalledMs = 0;
    w.timer = setInterval(() => this.checkProgress(), WATCHDOG_PERIOD_MS).unref();
  };

  private disarmWatchdog(): void {
    if (this.watchdog.timer) clearInterval(this.watchdog.timer);
    this.watchdog.timer = undefined;
  }

  /**
   * Stuck-I/O detection without per-command cost: every period, if commands
   * are in flight and none completed since the last look, the LUN is
   * stalled. A handler that never answers shows up here (and in `status`)
   * long before the kernel's cmd_time_out fails the commands. The first look
   * that finds nothing in flight disarms the watchdog until the next command.
   */
  private checkProgress(): void {
    this.engine?.collectForeign();
    const stats = this.engine?.stats;
    if (!stats) return this.disarmWatchdog();
    const w = this.watchdog;
    if (stats.commands !== w.lastCommands && this.store?.exclusiveLockHolder) this.alua.onActivity();
    if (stats.inFlight > 0 && stats.commands === w.lastCommands) {
      w.stalledMs += WATCHDOG_PERIOD_MS;
      if (w.stalledMs === STUCK_AFTER_MS) {
        w.stuckEvents++;
        this.log.warn({ inFlight: stats.inFlight, stalledSeconds: w.stalledMs / 1000 }, 'handler I/O is stuck');
      }
    } else {
      if (w.stalledMs >= STUCK_AFTER_MS) this.log.warn({ stalledSeconds: w.stalledMs / 1000 }, 'handler I/O recovered');
      w.stalledMs = 0;
      if (stats.inFlight === 0) return this.disarmWatchdog();
    }
    w.lastCommands = stats.commands;
  }

  /**
   * Run an online operation beside the LUN's I/O (an online compaction):
   * `fn` gets layer `index` (bottom first) of the open stack, as its handler
   * opened it, and a signal. Before that store is closed (stop, RECONFIG,
   * a quiesced operation) the signal fires and the close waits for `fn`
   * to return, so nothing runs on a closed image.
   */
  async besideIo<T>(index: number, fn: (layer: Backstore | undefined, signal: AbortSignal) => Promise<T>): Promise<T> {
    const store = this.requireStore();
    const release = this.besideOps.enter();
    try {
      return await fn(openLayersOf(store)?.[index], this.besideAbort.signal);
    } finally {
      release();
    }
  }

  /**
   * Run `fn` with the LUN quiesced: new commands held by the kernel
   * (block_dev), in-flight ones finished, the store flushed and closed.
   * The store is reopened afterwards (even if fn failed) and the initiator
   * sees a unit attention, because the medium may have changed under it,
   * unless the caller says it did not (`mediumChanged: false`, e.g. a
   * snapshot create, which leaves the LUN's contents as they were).
   */
  async quiesced<T>(fn: () => Promise<T>, opts: { mediumChanged?: boolean } = {}): Promise<T> {
    const store = this.requireStore();
    const engine = this.engine!;
    this.configfs.setBlocked(true);
    this.state = 'stopping';
    try {
      await engine.drain();
      await this.storeUsersDone();
      await store.close();
      try {
        return await fn();
      } finally {
        // No size hint: a snapshot revert may bring back a different virtual
        // size, which the initiator then learns through a unit attention.
        this.store = await this.openStore(this.devConfig, undefined);
        // Mode pages kept; MEDIUM MAY HAVE CHANGED once, unless the caller said the contents are unchanged.
        this.disk = this.createDisk(this.store, this.disk, opts.mediumChanged === false);
        if (this.store.size !== store.size) this.disk.addUnitAttention(0x2a, 0x09); // CAPACITY DATA HAS CHANGED
        this.state = 'serving';
        engine.start();
      }
    } finally {
      this.configfs.setBlocked(false);
    }
  }

  /**
   * Wait (bounded by the drain timeout) for other LUNs' copies reading or
   * writing this LUN's store, before it is closed under them. New ones
   * cannot start: the LUN is unlisted, or no longer serves the store.
   */
  private async peerCopiesDone(): Promise<void> {
    if (this.peerCopies.users === 0) return;
    const done = await finishesWithin(this.peerCopies.idle(), this.drainTimeoutMs);
    if (!done) this.log.error({ copies: this.peerCopies.users }, 'other LUNs\' copies on this store did not finish; closing it anyway');
  }

  /** Before the store closes: operations beside I/O stopped, other LUNs' copies finished (each wait bounded). */
  private async storeUsersDone(): Promise<void> {
    await this.besideOpsDone();
    await this.peerCopiesDone();
  }

  /** Abort the operations running beside I/O and wait (bounded by the drain timeout) until they return. */
  private async besideOpsDone(): Promise<void> {
    if (this.besideOps.users === 0) return;
    this.besideAbort.abort(new Error(`LUN ${this.id} is closing its store`));
    this.besideAbort = new AbortController();
    const done = await finishesWithin(this.besideOps.idle(), this.drainTimeoutMs);
    if (!done) this.log.error({ operations: this.besideOps.users }, 'online operations on this store did not stop; closing it anyway');
  }

  /** How long stop waits for commands, copies and the store's close, each. */
  private get drainTimeoutMs(): number {
    return this.opts.drainTimeoutMs ?? 30_000;
  }

  private closeMapping(opts: { retire: boolean } = { retire: false }): void {
    this.disarmWatchdog();
    this.engine?.close();
    this.mapping?.close(opts.retire);
    this.engine = undefined;
    this.mapping = undefined;
  }
}
