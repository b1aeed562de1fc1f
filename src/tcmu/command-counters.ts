/**
 * Per-LUN command counters for monitoring, kept where nothing on the
 * per-command path allocates, formats or takes a label: plain numbers in
 * typed arrays, indexed by small integers. The metrics endpoint
 * (src/daemon/metrics.ts) reads them on scrape and does all the naming.
 *
 * Latency is measured with a cached clock: performance.now() costs ~50 ns,
 * two per command would cost several percent of the engine's throughput.
 * The ring engine refreshes the clock at every consuming batch and at the first
 * asynchronous completion after a publish. So a latency is exact to the batch,
 * which is what the initiator sees: a command found in the ring had waited
 * there since the batch began, and a completion reaches the kernel only when
 * its batch publishes the tail. A command that completes inside the batch
 * that consumed it counts as the first bucket.
 *
 * Untimed counters (`new CommandCounters(false)`: a daemon without a
 * metrics endpoint, where no one reads the histograms) never read the
 * clock: every command counts in the first bucket with no latency. Where
 * the clocksource has no vDSO reader (HPET, some hypervisors' clocks: the
 * test VM's) each performance.now() is a system call (in the VM it reads
 * an emulated device).
 */
import type { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';

export const OP_GROUPS = ['read', 'write', 'flush', 'unmap', 'other'] as const;
export type OpGroup = (typeof OP_GROUPS)[number];
const READ = 0;
const WRITE = 1;
const FLUSH = 2;
const UNMAP = 3;
const OTHER = 4;
/** Groups with a latency histogram: read, write, flush (indices 0..2). */
export const TIMED_GROUPS = 3;

/** SCSI opcode -> group index. */
const GROUP_OF = new Uint8Array(256).fill(OTHER);
for (const op of [0x08, 0x28, 0xa8, 0x88]) GROUP_OF[op] = READ; // READ(6/10/12/16)
for (const op of [0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e]) GROUP_OF[op] = WRITE; // WRITE(6/10/12/16), WRITE AND VERIFY(10/12/16)
for (const op of [0x35, 0x91]) GROUP_OF[op] = FLUSH; // SYNCHRONIZE CACHE(10/16)
GROUP_OF[0x42] = UNMAP;

/** Sense key names (SPC-4 table 27) as metric label values; index 16 is a non-GOOD status without sense (BUSY, RESERVATION CONFLICT, ...). */
export const SENSE_KEY_NAMES = [
  'no_sense', 'recovered_error', 'not_ready', 'medium_error', 'hardware_error', 'illegal_request', 'unit_attention', 'data_protect',
  'blank_check', 'vendor_specific', 'copy_aborted', 'aborted_command', 'reserved_0c', 'volume_overflow', 'miscompare', 'completed',
  'status_without_sense',
] as const;
const NO_SENSE_STATUS = 16;
const CHECK_CONDITION = 0x02;

/**
 * Latency bucket upper bounds in seconds: 16 us doubling to ~16.8 s, which
 * covers a page-cache hit and a command the kernel is about to time out.
 */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = Array.from({ length: 21 }, (_, k) => 16e-6 * 2 ** k);
const BOUNDS_MS = Float64Array.from(LATENCY_BOUNDS_SECONDS, (s) => s * 1000);
const FIRST_BOUND_MS = BOUNDS_MS[0]!;
/** Buckets per timed group: one per bound plus +Inf. */
export const LATENCY_BUCKETS = BOUNDS_MS.length + 1;
const LAST_BOUND_UNITS = 2 ** (BOUNDS_MS.length - 1);

/**
 * The histogram bucket of a latency in ms: the first bound it does not
 * exceed (Prometheus 'le'), or the +Inf bucket. Computed, not searched:
 * walking the bounds cost ~45 ns a command in the simulator once latencies
 * spread over several buckets (a mispredicted loop exit per command), more
 * than all the other counters together.
 */
export function latencyBucket(latencyMs: number): number {
  if (!(latencyMs > FIRST_BOUND_MS)) return 0;
  const units = latencyMs / FIRST_BOUND_MS; // > 1; bound k is 2^k units
  if (units > LAST_BOUND_UNITS) return BOUNDS_MS.length;
  // Smallest k with units <= 2^k, i.e. ceil(log2(units)) = ceil(log2(ceil(units))) for units > 1.
  return 32 - Math.clz32(Math.ceil(units) - 1);
}

/** What the engine reads of a completed command (a CommandSlot). */
export interface CountedCommand {
  readonly index: number;
  readonly cdb: Buffer;
  readonly sense: Buffer;
  readonly iovLength: number;
}

export class CommandCounters {
  /**
   * Completed commands by group (OP_GROUPS order). For the timed groups
   * (read, write, flush) the histogram already counts every command, so
   * only unmap and other are counted here; read them with commandCount().
   */
  private readonly untimedCommands = new Float64Array(OP_GROUPS.length);
  /** Bytes of READ [0] and WRITE [1] commands that completed GOOD (a typed array: no boxed number per update). */
  readonly bytes = new Float64Array(2);
  /** Failed commands by sense key (SENSE_KEY_NAMES order). */
  readonly errors = new Float64Array(SENSE_KEY_NAMES.length);
  /** Latency histograms (non-cumulative counts), TIMED_GROUPS x LATENCY_BUCKETS. */
  readonly latencyCounts = new Float64Array(TIMED_GROUPS * LATENCY_BUCKETS);
  /** Sum of latencies per timed group, in milliseconds. */
  readonly latencySumMs = new Float64Array(TIMED_GROUPS);
  /** Times the engine stopped consuming because every command slot was busy (back-pressure). */
  backPressureEvents = 0;

  private startedAt = new Float64Array(0);
  private now = performance.now();

  /** `timed`: measure latencies (else they all count as 0 and the clock is never read). */
  constructor(readonly timed = true) {}

  /** The engine has `slots` command slots (indices 0..slots-1). */
  reserve(slots: number): void {
    if (this.startedAt.length < slots) this.startedAt = new Float64Array(slots);
  }

  /** Refresh the cached clock (once per batch). */
  clock(): void {
    if (this.timed) this.now = performance.now();
  }

  started(slotIndex: number): void {
    this.startedAt[slotIndex] = this.now;
  }

  /** Completed commands of group `g` (OP_GROUPS index). */
  commandCount(g: number): number {
    if (g >= TIMED_GROUPS) return this.untimedCommands[g]!;
    let n = 0;
    for (let b = 0; b < LATENCY_BUCKETS; b++) n += this.latencyCounts[g * LATENCY_BUCKETS + b]!;
    return n;
  }

  /** `at`: when it completed (performance.now() ms), if not the cached clock (a completion made on another thread). */
  completed(cmd: CountedCommand, status: number, at = this.now): void {
    const group = GROUP_OF[cmd.cdb[0]!]!;
    if (status === 0) {
      if (group <= WRITE) this.bytes[group]! += cmd.iovLength; // READ = 0, WRITE = 1
    } else if (status === CHECK_CONDITION) {
      const sense = cmd.sense;
      // Fixed format (0x70/0x71) keeps the key in byte 2, descriptor format (0x72/0x73) in byte 1.
      const key = (sense[0]! & 0x7e) === 0x72 ? sense[1]! & 0x0f : sense[2]! & 0x0f;
      this.errors[key]!++;
    } else {
      this.errors[NO_SENSE_STATUS]!++;
    }
    if (group < TIMED_GROUPS) {
      const ms = this.timed ? at - this.startedAt[cmd.index]! : 0;
      const latency = ms > 0 ? ms : 0;
      const bucket = latencyBucket(latency);
      this.latencyCounts[group * LATENCY_BUCKETS + bucket]!++;
      this.latencySumMs[group]! += latency;
    } else {
      this.untimedCommands[group]!++;
    }
  }
}
