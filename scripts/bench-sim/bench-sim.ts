/**
 * Simulator benchmark: commands/s the ring engine sustains on one core.
 * The simulated kernel runs in a worker thread (scripts/bench-sim/bench-worker.ts)
 * keeping 128 4 KiB READs in flight; the engine and the target run on the
 * main thread, which is what this measures. With `--kernel inline` the
 * simulated kernel shares the main thread instead: slower per command, but
 * free of two-thread scheduling noise (see kernel-side.ts).
 *
 *   node dist/scripts/bench-sim/bench-sim.js [--seconds N] [--repeat N] [--only TEXT[|TEXT...]]
 *                                            [--kernel worker|inline] [--out FILE]
 *
 * Prints a table and writes it to scripts/results/bench-sim.txt (or --out).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import { FaultGuard, type FaultOwner } from '../../src/daemon/fault-guard.js';
import type { ScsiCommand, ScsiTarget } from '../../src/scsi/command.js';
import { RingEngine, type RingEngineOptions } from '../../src/tcmu/ring-engine.js';
import { CommandCounters, OP_GROUPS } from '../../src/tcmu/command-counters.js';
import { QUEUE_DEPTH, inlineKernel, workerKernel, type KernelMode } from './kernel-side.js';
import { columns, median, option, signedPercent as pct, writeReport } from './report.js';
import { BenchRamTarget, fileDiskTarget, scsiDiskTarget, type BenchTarget } from './targets.js';

interface Scenario {
  name: string;
  ooo: boolean;
  makeTarget: () => Promise<BenchTarget>;
  engine: RingEngineOptions;
  /** Feed monitoring counters (what `serve --metrics` costs the engine). */
  metrics?: boolean;
  /**
   * Run commands inside a FaultGuard context: entered once per batch (what
   * the daemon does, src/daemon/lun.ts) or once per command (what it did
   * before). On Node 20 an AsyncLocalStorage in use also keeps promise hooks
   * on, a cost every promise of the process pays.
   */
  faultGuard?: 'batch' | 'command';
}

interface Row {
  name: string;
  cmdsPerSec: number;
  perBatch: number;
  kicksPerCmd: number;
  mainBusy: number;
  failed: number;
  note: string;
  kernelKicks: number;
  /** On-CPU time of the runner (main) thread per command, in microseconds. */
  cpuPerCmdUs: number;
  /** Garbage collections of the runner's heap per million commands (0 when the per-command path allocates nothing). */
  gcPerMillion: number;
  /** Their pauses, in milliseconds per million commands: what those collections cost the runner thread. */
  gcMsPerMillion: number;
  range?: string;
}

/**
 * CPU seconds the main thread has run (utime + stime from procfs, in clock
 * ticks of 10 ms). Unlike cmds/s this hardly moves when other processes
 * compete for the cores, so small per-command costs stay visible.
 */
function mainThreadCpuSeconds(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (fields 14, 15); USER_HZ is 100 on Linux
}

function countedCommands(c: CommandCounters): number {
  let n = 0;
  for (let g = 0; g < OP_GROUPS.length; g++) n += c.commandCount(g);
  return n;
}

async function runScenario(s: Scenario, seconds: number, kernelMode: KernelMode): Promise<Row> {
  const kernel = kernelMode === 'inline' ? inlineKernel(s.ooo) : await workerKernel(s.ooo);
  const mapping = kernel.mapping;
  const { target: bare, close } = await s.makeTarget();
  const guard = s.faultGuard ? new FaultGuard(undefined) : undefined;
  const owner = { id: 'bench', fail: () => {} };
  const target = guard && s.faultGuard === 'command' ? guardedCommands(bare, guard, owner) : bare;
  const enter = guard && s.faultGuard === 'batch' ? (consume: () => void) => guard.within(owner, consume, undefined) : undefined;
  const counters = s.metrics ? new CommandCounters() : undefined;
  const engine = new RingEngine(mapping, target, { maxInFlight: QUEUE_DEPTH, ...s.engine, counters, enter });
  engine.start();

  // Warm up (JIT), then measure a window.
  kernel.go();
  await new Promise((r) => setTimeout(r, 500));
  const c0 = engine.stats.commands;
  const b0 = engine.stats.batches;
  const k0 = engine.stats.kicks;
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = mainThreadCpuSeconds();
  const gcs = watchGc();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const t1 = performance.now();
  const cpu1 = mainThreadCpuSeconds();
  const elu = performance.eventLoopUtilization(elu0);
  const commands = engine.stats.commands - c0;
  const gc = await gcs.between(t0, t1);
  const batches = engine.stats.batches - b0;
  const kicks = engine.stats.kicks - k0;
  const report = await kernel.stop();
  await engine.drain();
  engine.close();
  mapping.close();
  await close?.();
  guard?.remove(); // the promise hooks go with it: the next scenario does not pay them
  await kernel.close();
  return {
    name: s.name,
    cmdsPerSec: commands / ((t1 - t0) / 1000),
    perBatch: commands / Math.max(1, batches),
    kicksPerCmd: kicks / Math.max(1, commands),
    mainBusy: elu.utilization,
    failed: report.failed + engine.stats.errors,
    note: report.broken
      ? `BROKEN: ${report.broken}`
      : counters && countedCommands(counters) !== engine.stats.commands
        ? `COUNTERS DISAGREE: ${countedCommands(counters)} counted, ${engine.stats.commands} completed`
        : '',
    kernelKicks: report.kernelKicks / Math.max(1, report.completed),
    cpuPerCmdUs: ((cpu1 - cpu0) * 1e6) / Math.max(1, commands),
    gcPerMillion: (gc.count * 1e6) / Math.max(1, commands),
    gcMsPerMillion: (gc.ms * 1e6) / Math.max(1, commands),
  };
}

/** `target` with every command run inside `guard`'s context for `owner` on its own. */
function guardedCommands(target: ScsiTarget, guard: FaultGuard, owner: FaultOwner): ScsiTarget {
  const execute = (cmd: ScsiCommand) => target.execute(cmd);
  return { execute: (cmd) => guard.within(owner, execute, cmd) };
}

/**
 * Count the main thread's garbage collections (the simulated kernel's
 * worker has a heap of its own, not observed). A per-command path that
 * allocates nothing leaves the young generation untouched, so no
 * scavenge runs however many commands pass; anything allocated per
 * command fills it and shows up here as scavenges per million commands.
 */
function watchGc(): { between(t0: number, t1: number): Promise<{ count: number; ms: number }> } {
  let count = 0;
  let ms = 0;
  let from = 0;
  let to = Number.POSITIVE_INFINITY;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries() as PerformanceEntry[]) {
      if (entry.startTime < from || entry.startTime > to) continue;
      count++;
      ms += entry.duration;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    async between(t0: number, t1: number): Promise<{ count: number; ms: number }> {
      from = t0;
      to = t1;
      // Entries reach the observer asynchronously: let the last ones arrive.
      await new Promise((r) => setTimeout(r, 50));
      observer.disconnect();
      return { count, ms };
    },
  };
}

function medianRow(rows: Row[]): Row {
  const sorted = [...rows].sort((a, b) => a.cmdsPerSec - b.cmdsPerSec);
  const middle = { ...sorted[Math.floor(sorted.length / 2)]! };
  if (sorted.length > 1) {
    const lo = Math.round(sorted[0]!.cmdsPerSec / 1000);
    const hi = Math.round(sorted[sorted.length - 1]!.cmdsPerSec / 1000);
    middle.range = `${lo}k-${hi}k`;
  }
  return middle;
}

function formatTable(rows: Row[], seconds: number, repeat: number, kernelMode: KernelMode): string {
  const header = ['scenario', 'cmds/s (median)', 'range', 'cmds/batch', 'kicks/cmd', 'sim kicks/cmd', 'main busy', 'main CPU us/cmd', 'GCs/1M cmds', 'GC ms/1M cmds', 'failed'];
  const lines = rows.map((r) => [
    r.name,
    Math.round(r.cmdsPerSec).toLocaleString('en-US'),
    r.range ?? '-',
    r.perBatch.toFixed(1),
    r.kicksPerCmd.toFixed(3),
    r.kernelKicks.toFixed(3),
    `${(r.mainBusy * 100).toFixed(0)}%`,
    r.cpuPerCmdUs.toFixed(3),
    r.gcPerMillion.toFixed(1),
    r.gcMsPerMillion.toFixed(1),
    `${r.failed}${r.note ? ' ' + r.note : ''}`,
  ]);
  return [
    `tcmu-ts simulator benchmark: 4 KiB READ(10), queue depth ${QUEUE_DEPTH}, ${seconds}s per run, ${repeat} interleaved runs per scenario`,
    `node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}; ${
      kernelMode === 'inline' ? 'kernel side on the runner thread (--kernel inline: cmds/s, CPU and GCs include the simulator)' : 'kernel side in a worker thread'
    }`,
    `(main busy = event-loop utilisation of the runner thread; GCs/1M cmds = collections of the runner thread's heap per million commands, 0 = nothing allocated per command; GC ms/1M cmds = their pauses, against main CPU us/cmd x 1000 for the same million; 'failed' = non-GOOD status or engine errors)`,
    '',
    ...columns(header, lines),
    '',
  ].join('\n');
}

/** Variants measured against their baseline: scenario 'X + SUFFIX' against 'X'. */
const VARIANTS = ['metrics', 'fault guard', 'fault guard per command'] as const;

/**
 * The cost of monitoring and of the fault guard: for each 'X + metrics' or
 * 'X + fault guard' scenario, the ratio to X within each round (the two ran
 * back to back), median over rounds.
 */
function pairTable(chosen: Scenario[], runs: Map<Scenario, Row[]>): string {
  const sections: string[] = [];
  for (const variant of VARIANTS) {
    const lines: string[] = [];
    for (const s of chosen) {
      const base = chosen.find((b) => `${b.name} + ${variant}` === s.name);
      if (!base) continue;
      const a = runs.get(base)!;
      const b = runs.get(s)!;
      const n = Math.min(a.length, b.length);
      const tput = Array.from({ length: n }, (_, i) => b[i]!.cmdsPerSec / a[i]!.cmdsPerSec);
      const cpu = Array.from({ length: n }, (_, i) => b[i]!.cpuPerCmdUs / a[i]!.cpuPerCmdUs);
      const q = (xs: number[]) => {
        const sorted = [...xs].sort((x, y) => x - y);
        return `IQR ${pct(sorted[Math.floor((sorted.length - 1) / 4)]!)}..${pct(sorted[Math.ceil((3 * (sorted.length - 1)) / 4)]!)}`;
      };
      lines.push(`${base.name.padEnd(48)}  cmds/s ${pct(median(tput)).padStart(7)} (${q(tput)})  main CPU/cmd ${pct(median(cpu)).padStart(7)} (${q(cpu)})`);
      lines.push(`${''.padEnd(48)}  per round: ${tput.map(pct).join(' ')} | ${cpu.map(pct).join(' ')}`);
    }
    if (lines.length > 0) {
      sections.push(`${variant} on vs off, median and interquartile range of per-round ratios (each pair ran back to back, order alternating by round):`, ...lines, '');
    }
  }
  return sections.join('\n');
}

/**
 * The scenarios of one round. In odd rounds each '+ metrics' (or '+ fault guard') scenario runs
 * before its baseline instead of after it (A B, B A, ...), so whatever the
 * second run of a pair inherits from the first (heap, JIT feedback, the
 * machine's drift) falls on both sides equally.
 */
function roundOrder(chosen: Scenario[], round: number): Scenario[] {
  const order = [...chosen];
  if (round % 2 === 0) return order;
  for (let i = 0; i + 1 < order.length; i++) {
    if (VARIANTS.some((variant) => order[i + 1]!.name === `${order[i]!.name} + ${variant}`)) {
      [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
      i++;
    }
  }
  return order;
}

async function main(): Promise<void> {
  const seconds = Number(option('--seconds') ?? 3);
  const only = option('--only');
  const kernelMode = option('--kernel') ?? 'worker';
  if (kernelMode !== 'worker' && kernelMode !== 'inline') throw new Error(`--kernel: 'worker' or 'inline', not '${kernelMode}'`);

  const ram = (asyncCompletion: boolean) => async () => ({ target: new BenchRamTarget(asyncCompletion) });
  // Each '+ metrics' scenario runs right after its baseline (same conditions); see pairTable.
  const scenarios: Scenario[] = [
    { name: 'RAM target, sync, OOOC', ooo: true, makeTarget: ram(false), engine: {} },
    { name: 'RAM target, sync, OOOC + metrics', ooo: true, makeTarget: ram(false), engine: {}, metrics: true },
    { name: 'RAM target, sync, in-order', ooo: false, makeTarget: ram(false), engine: {} },
    { name: 'RAM target, sync, OOOC, no data copy (engine alone)', ooo: true, makeTarget: async () => ({ target: new BenchRamTarget(false, false) }), engine: {} },
    { name: 'RAM target, promise, OOOC, coalesce=immediate', ooo: true, makeTarget: ram(true), engine: { coalesce: 'immediate' } },
    { name: 'RAM target, promise, OOOC, coalesce=microtask', ooo: true, makeTarget: ram(true), engine: { coalesce: 'microtask' } },
    { name: 'RAM target, promise, OOOC, coalesce=microtask + metrics', ooo: true, makeTarget: ram(true), engine: { coalesce: 'microtask' }, metrics: true },
    { name: 'RAM target, promise, OOOC, coalesce=microtask + fault guard', ooo: true, makeTarget: ram(true), engine: { coalesce: 'microtask' }, faultGuard: 'batch' },
    { name: 'RAM target, promise, OOOC, coalesce=microtask + fault guard per command', ooo: true, makeTarget: ram(true), engine: { coalesce: 'microtask' }, faultGuard: 'command' },
    { name: 'ScsiDisk over ram handler, OOOC', ooo: true, makeTarget: () => scsiDiskTarget(), engine: {} },
    { name: 'ScsiDisk over ram handler, OOOC + metrics', ooo: true, makeTarget: () => scsiDiskTarget(), engine: {}, metrics: true },
    { name: 'ScsiDisk over ram handler, OOOC + fault guard', ooo: true, makeTarget: () => scsiDiskTarget(), engine: {}, faultGuard: 'batch' },
    { name: 'ScsiDisk over ram handler, abortable (signal per call), OOOC', ooo: true, makeTarget: () => scsiDiskTarget(true), engine: {} },
    { name: 'ScsiDisk over file handler (page cache), OOOC', ooo: true, makeTarget: fileDiskTarget, engine: {} },
    { name: 'ScsiDisk over file handler (page cache), OOOC + fault guard', ooo: true, makeTarget: fileDiskTarget, engine: {}, faultGuard: 'batch' },
    { name: 'ScsiDisk over file handler (page cache), OOOC + fault guard per command', ooo: true, makeTarget: fileDiskTarget, engine: {}, faultGuard: 'command' },
  ];
  const repeat = Number(option('--repeat') ?? 3);
  // --only 'A|B': scenarios whose name contains A or B.
  const chosen = scenarios.filter((s) => only === undefined || only.split('|').some((part) => s.name.includes(part)));
  // Interleaved rounds (A B C, A B C, ...): this machine's speed drifts, so
  // each scenario sees the same conditions; the median row is reported.
  const runs = new Map<Scenario, Row[]>(chosen.map((s) => [s, []]));
  for (let round = 0; round < repeat; round++) {
    for (const s of roundOrder(chosen, round)) {
      try {
        const row = await runScenario(s, seconds, kernelMode);
        runs.get(s)!.push(row);
        console.error(`round ${round + 1}: ${s.name}: ${Math.round(row.cmdsPerSec)} cmds/s`);
      } catch (err) {
        runs.get(s)!.push({ name: s.name, cmdsPerSec: 0, perBatch: 0, kicksPerCmd: 0, mainBusy: 0, failed: 0, kernelKicks: 0, cpuPerCmdUs: 0, gcPerMillion: 0, gcMsPerMillion: 0, note: `n/a: ${(err as Error).message}` });
      }
    }
  }
  const rows = chosen.map((s) => medianRow(runs.get(s)!));
  writeReport('bench-sim.txt', formatTable(rows, seconds, repeat, kernelMode) + pairTable(chosen, runs));
}

await main();
