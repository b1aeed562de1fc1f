/**
 * Automatic online compaction of a LUN served with `compress=`.
 *
 * Every read-modify-write of a compressed cluster (a guest write covering
 * part of it) and every overwrite leaves the old payload dead inside a host
 * cluster that other, live payloads keep allocated, and a staged partial
 * write (staging.ts) leaves a whole cluster uncompressed. Nothing but
 * compaction (compaction.ts) gives that space back, and an admin should not
 * have to remember to run it: a compressed LUN is expected to stay small.
 *
 * Policy, per image:
 * - the freed compressed payload bytes since the last compaction are
 *   counted (one addition where a payload is released, write-path.ts);
 * - once they reach TRIGGER_FRACTION of the file's allocated size (at least
 *   MIN_TRIGGER_BYTES), a one-shot timer waits for the LUN to be quiet: no
 *   command during one whole quiet period (the option's seconds; commands
 *   are counted, not timed, so a busy LUN costs one increment per command).
 *   Then the ordinary online compaction runs beside
 *   the LUN's I/O (api.ts compactOpenImage: crash-safe, abortable);
 * - clusters staged uncompressed by partial writes (staging.ts) make a
 *   light run due after a quiet period whatever the count: it compresses
 *   them and punches out their old places, in proportion to what was
 *   staged (compaction.ts compressStagedClusters);
 * - a LUN that is never quiet is compacted anyway once the dead bytes plus
 *   the staged bytes reach FORCE_FACTOR times the trigger, so its waste
 *   stays bounded;
 * - no timer is armed below the trigger with nothing staged, so an idle
 *   daemon does not wake up for this (a light run empties the staged set);
 *   close aborts a running compaction (the image stays consistent) and
 *   never starts one, so a restart's outage does not grow.
 * The freed-byte count is an upper bound of the waste (a host cluster whose
 * payloads all died is reused by the allocator without compaction), so a
 * run may find little to move; it resets the count either way, and the next
 * run needs as many freed bytes again, so runs cannot follow each other in a
 * loop. Bytes freed by guest writes during a run are forgotten with it.
 *
 * Option `auto_compact=off|on|SECONDS` (the quiet time, default 5 s).
 */
import type { Logger } from 'pino';
import { StorageError } from '../../src/backstore/errors.js';
import type { CompactResult } from './compaction.js';
import type { Qcow2Image } from './image.js';
import { stagedCount } from './staging.js';

export const DEFAULT_IDLE_SECONDS = 5;
const MAX_IDLE_SECONDS = 86_400;
const TRIGGER_FRACTION = 0.05;
const MIN_TRIGGER_BYTES = 1 << 20;
const FORCE_FACTOR = 4;

/** What `image info` / `status --space` show of it. */
export interface AutoCompactionStats {
  idleSeconds: number;
  /** Compressed payload bytes freed since the last full run (an upper bound of the waste). */
  freedBytes: number;
  /** Guest clusters staged uncompressed (staging.ts), waiting for the next run to compress them. */
  stagedClusters: number;
  /** freedBytes at which a run is scheduled. */
  triggerBytes: number;
  running: boolean;
  runs: number;
  last?: {
    finishedAt: string;
    ms: number;
    kind: CompactionKind;
    recompressedClusters: number;
    movedClusters: number;
    punchedClusters: number;
    allocatedBefore: number;
    allocatedAfter: number;
  };
  lastError?: string;
}

/** Parse the option; undefined means off. */
export function parseAutoCompact(value: string | undefined): number | undefined {
  if (value === undefined || value === 'on') return DEFAULT_IDLE_SECONDS;
  if (value === 'off') return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_IDLE_SECONDS) {
    throw new StorageError('EINVAL', `qcow2: auto_compact=${value}: expected off, on, or the quiet time in whole seconds (1-${MAX_IDLE_SECONDS})`);
  }
  return n;
}

/** 'full': the whole compaction; 'staged': only compress the staged clusters (compaction.ts compressStagedClusters). */
export type CompactionKind = 'full' | 'staged';
type Compact = (img: Qcow2Image, signal: AbortSignal, kind: CompactionKind) => Promise<CompactResult>;

const compactors = new WeakMap<Qcow2Image, AutoCompactor>();

/** Called where a compressed payload of `bytes` is released (write-path.ts). */
export function noteCompressedFreed(img: Qcow2Image, bytes: number): void {
  compactors.get(img)?.freed(bytes);
}

/** Called when a cluster gets staged (staging.ts): a light run becomes due. */
export function noteStagedCluster(img: Qcow2Image): void {
  compactors.get(img)?.freed(0);
}

export function autoCompactionStats(img: Qcow2Image): AutoCompactionStats | undefined {
  return compactors.get(img)?.stats();
}

export class AutoCompactor {
  private freedBytes = 0;
  private triggerBytes = MIN_TRIGGER_BYTES;
  /** Commands seen; the quiet check compares it across one idle period. */
  private activity = 0;
  private activityAtArm = 0;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private readonly abort = new AbortController();
  private closed = false;
  private runs = 0;
  private last?: AutoCompactionStats['last'];
  private lastError?: string;

  constructor(
    private readonly img: Qcow2Image,
    private readonly idleSeconds: number,
    private readonly compact: Compact,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
  ) {
    compactors.set(img, this);
    void this.updateTrigger();
  }

  /** Every command of the LUN (cheap: the hot path calls it). */
  noteActivity(): void {
    this.activity++;
  }

  freed(bytes: number): void {
    this.freedBytes += bytes;
    if (this.due() && !this.timer && !this.running && !this.closed) this.arm();
  }

  /** Something to do: enough reclaimable bytes for a whole compaction, or staged clusters to compress. */
  private due(): boolean {
    return this.freedBytes >= this.triggerBytes || (stagedCount(this.img) ?? 0) > 0;
  }

  stats(): AutoCompactionStats {
    return {
      idleSeconds: this.idleSeconds,
      freedBytes: this.freedBytes,
      stagedClusters: stagedCount(this.img) ?? 0,
      triggerBytes: this.triggerBytes,
      running: this.running !== undefined,
      runs: this.runs,
      ...(this.last ? { last: this.last } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Stop for good: no new run; a running one is aborted and awaited. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort(new Error(`qcow2: ${this.img.path} is closing`));
    await this.running;
    compactors.delete(this.img);
  }

  private arm(): void {
    this.activityAtArm = this.activity;
    this.timer = setTimeout(() => this.onTimer(), this.idleSeconds * 1000);
    this.timer.unref();
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.closed) return;
    const quiet = this.activity === this.activityAtArm;
    const pending = this.freedBytes + (stagedCount(this.img) ?? 0) * this.img.clusterSize;
    if (!quiet && pending < FORCE_FACTOR * this.triggerBytes) {
      this.arm(); // busy: look again after another quiet period
      return;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (!this.closed && this.due()) this.arm();
    });
  }

  private async run(): Promise<void> {
    // Below the trigger only staged clusters are due: the light pass. With
    // internal snapshots the payloads are shared (a whole compaction
    // refuses), but staged clusters are this image's own.
    const kind: CompactionKind = this.freedBytes >= this.triggerBytes && this.img.snapshots.length === 0 ? 'full' : 'staged';
    if (this.img.readOnly || (kind === 'staged' && !stagedCount(this.img))) {
      if (kind === 'full' || this.img.snapshots.length > 0) this.freedBytes = 0; // nothing a run could do now
      return;
    }
    const t0 = Date.now();
    try {
      const r = await this.compact(this.img, this.abort.signal, kind);
      this.runs++;
      this.last = {
        finishedAt: new Date().toISOString(),
        ms: Date.now() - t0,
        kind,
        recompressedClusters: r.recompressedClusters,
        movedClusters: r.movedClusters,
        punchedClusters: r.punchedClusters,
        allocatedBefore: r.fileBytesAllocatedBefore,
        allocatedAfter: r.fileBytesAllocatedAfter,
      };
      this.lastError = undefined;
      this.log.info({ image: this.img.path, ...this.last, freedBytes: this.freedBytes }, 'qcow2: automatic compaction done');
    } catch (err) {
      if (this.closed) return; // aborted by close: consistent, nothing to report
      const code = (err as { code?: string }).code;
      if (code === 'EBUSY') return; // an admin's `image compact` runs or took over: it does the job
      this.lastError = (err as Error).message;
      this.log.warn({ err, image: this.img.path }, 'qcow2: automatic compaction failed');
    } finally {
      if (kind === 'full') this.freedBytes = 0; // a light run leaves dead payloads where they are
      await this.updateTrigger();
    }
  }

  private async updateTrigger(): Promise<void> {
    try {
      const allocated = (await this.img.fh.stat()).blocks * 512;
      this.triggerBytes = Math.max(MIN_TRIGGER_BYTES, Math.round(TRIGGER_FRACTION * allocated));
    } catch {
      // closed under us: keep the previous trigger
    }
  }
}
