/**
 * What `serve --metrics` costs the ring engine, in commands/s (issue 20's
 * budget: at most 3% fewer with metrics on).
 *
 * bench-sim's '+ metrics' pairs run each side for seconds in its own
 * process state; on this shared 2-vCPU machine two runs of the same thing
 * a few seconds apart differ by 5-15%, which buries a 3% effect. Here one
 * simulated ring runs on this thread (the inline kernel, so no second
 * thread's scheduling enters), and engines with and without counters take
 * turns on it in short slices: A B, B A, A B, ... Drift of the machine then
 * falls on both sides alike, and the per-pair ratios tell the cost.
 *
 *   node dist/scripts/bench-sim/bench-metrics-cost.js [--pairs N] [--slice-ms MS] [--only TEXT] [--calibrate] [--out FILE]
 *
 * Prints a table and writes it to scripts/results/bench-metrics-cost.txt (or --out).
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { CommandCounters, OP_GROUPS } from '../../src/tcmu/command-counters.js';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { QUEUE_DEPTH, inlineKernel, type KernelSide } from './kernel-side.js';
import { columns, flag, median, option, signedPercent as pct, writeReport } from './report.js';
import { BenchRamTarget, fileDiskTarget, scsiDiskTarget, type BenchTarget } from './targets.js';

interface Case {
  name: string;
  makeTarget: () => Promise<BenchTarget>;
}

/** One ring and one target, measured with metrics off and on in turn. */
interface Bench {
  kernel: KernelSide;
  target: BenchTarget;
  counters: CommandCounters;
  /** Commands completed by the engines that fed `counters`. */
  countedByEngines: number;
  /** Calibration (--calibrate): the 'on' side runs without counters too, so the result shows the method's own bias and spread. */
  calibrate: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Commands/s of one slice of `ms`, from a full queue to an empty one.
 * Each slice gets a new engine on the same ring, target and memory, with
 * or without counters: two long-lived engines, one per side, differed by
 * up to 3% with identical settings (where their rings and buffers landed),
 * more than the effect to be measured.
 */
async function slice(bench: Bench, metrics: boolean, ms: number): Promise<number> {
  const counters = metrics && !bench.calibrate ? bench.counters : undefined;
  const engine = new RingEngine(bench.kernel.mapping, bench.target.target, { maxInFlight: QUEUE_DEPTH, counters });
  engine.start();
  bench.kernel.go();
  const c0 = engine.stats.commands;
  const t0 = performance.now();
  await sleep(ms);
  const t1 = performance.now();
  const commands = engine.stats.commands - c0;
  const report = await bench.kernel.stop();
  await engine.drain();
  engine.close();
  if (report.broken) throw new Error(`ring broken: ${report.broken}`);
  if (report.failed > 0 || engine.stats.errors > 0) throw new Error(`${report.failed} commands failed, ${engine.stats.errors} engine errors`);
  if (counters) bench.countedByEngines += engine.stats.commands;
  return commands / ((t1 - t0) / 1000);
}


/**
 * 95% confidence interval of the median ratio, distribution-free: the
 * order statistics around n/2 +- 0.98 sqrt(n) (normal approximation to the
 * binomial, fine from about 20 pairs).
 */
function medianInterval(xs: number[]): [number, number] {
  const s = [...xs].sort((a, b) => a - b);
  const half = 0.98 * Math.sqrt(s.length);
  const lo = Math.max(0, Math.floor(s.length / 2 - half));
  const hi = Math.min(s.length - 1, Math.ceil(s.length / 2 + half));
  return [s[lo]!, s[hi]!];
}

interface Result {
  name: string;
  off: number;
  on: number;
  ratio: number;
  interval: [number, number];
  addedNs: number;
  counted: boolean;
}

async function measure(c: Case, pairs: number, sliceMs: number, calibrate: boolean): Promise<Result> {
  const kernel = inlineKernel(true);
  const target = await c.makeTarget();
  const bench: Bench = { kernel, target, counters: new CommandCounters(), countedByEngines: 0, calibrate };
  try {
    // Warm up (JIT, page cache) before anything counts.
    for (let i = 0; i < 3; i++) {
      await slice(bench, false, sliceMs);
      await slice(bench, true, sliceMs);
    }
    const offRates: number[] = [];
    const onRates: number[] = [];
    for (let p = 0; p < pairs; p++) {
      if (p % 2 === 0) {
        offRates.push(await slice(bench, false, sliceMs));
        onRates.push(await slice(bench, true, sliceMs));
      } else {
        onRates.push(await slice(bench, true, sliceMs));
        offRates.push(await slice(bench, false, sliceMs));
      }
    }
    const ratios = offRates.map((r, i) => onRates[i]! / r);
    const offMedian = median(offRates);
    const onMedian = median(onRates);
    let counted = 0;
    for (let g = 0; g < OP_GROUPS.length; g++) counted += bench.counters.commandCount(g);
    return {
      name: c.name,
      off: offMedian,
      on: onMedian,
      ratio: median(ratios),
      interval: medianInterval(ratios),
      addedNs: 1e9 / onMedian - 1e9 / offMedian,
      counted: counted === bench.countedByEngines,
    };
  } finally {
    kernel.mapping.close();
    await target.close?.();
    await kernel.close();
  }
}

function formatTable(results: Result[], pairs: number, sliceMs: number, calibrate: boolean): string {
  const header = ['engine and target', 'off cmds/s', 'on cmds/s', 'on/off (median of pairs)', '95% CI', 'added ns/cmd', 'counters agree'];
  const rows = results.map((r) => [
    r.name,
    Math.round(r.off).toLocaleString('en-US'),
    Math.round(r.on).toLocaleString('en-US'),
    pct(r.ratio),
    `${pct(r.interval[0])}..${pct(r.interval[1])}`,
    r.addedNs.toFixed(0),
    calibrate ? '-' : r.counted ? 'yes' : 'NO',
  ]);
  return [
    `tcmu-ts metrics cost: 4 KiB READ(10), queue depth ${QUEUE_DEPTH}, ${pairs} pairs of ${sliceMs} ms slices (order alternating), metrics off vs on`,
    ...(calibrate ? ['CALIBRATION (--calibrate): both sides run WITHOUT counters; any difference below is the method\'s own bias and noise'] : []),
    `node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}; both engines and their simulated kernels on one thread`,
    `(cmds/s include the simulator's own work on the same thread, so 'on/off' understates the runner-only share; 'added ns/cmd' is the absolute cost)`,
    '',
    ...columns(header, rows),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const pairs = Number(option('--pairs') ?? 40);
  const sliceMs = Number(option('--slice-ms') ?? 250);
  if (!(pairs >= 4 && pairs <= 10000) || !(sliceMs >= 20 && sliceMs <= 60000)) throw new Error('--pairs 4..10000, --slice-ms 20..60000');
  const only = option('--only');
  const calibrate = flag('--calibrate');
  const cases: Case[] = [
    { name: 'RAM target, sync, OOOC', makeTarget: async () => ({ target: new BenchRamTarget(false) }) },
    { name: 'ScsiDisk over ram handler, OOOC', makeTarget: () => scsiDiskTarget() },
    { name: 'ScsiDisk over file handler (page cache), OOOC', makeTarget: fileDiskTarget },
  ];
  const results: Result[] = [];
  for (const c of cases.filter((x) => only === undefined || x.name.includes(only))) {
    const r = await measure(c, pairs, sliceMs, calibrate);
    console.error(`${c.name}: ${pct(r.ratio)} (95% CI ${pct(r.interval[0])}..${pct(r.interval[1])})`);
    results.push(r);
  }
  writeReport('bench-metrics-cost.txt', formatTable(results, pairs, sliceMs, calibrate));
}

await main();
