/**
 * What the metrics counters cost per command on their own: started() +
 * completed() of a 4 KiB READ, 2e7 times, against the same loop without
 * them. Complements bench-sim's '+ metrics' pairs, whose ratios this
 * shared machine's noise blurs by a few percent.
 *
 *   node dist/scripts/bench-sim/bench-counters.js [ROUNDS]
 *
 * Times are CPU time of the process (process.cpuUsage), not wall time, so a
 * loaded machine's time slicing does not count; cache and frequency effects
 * of the load still do.
 */
import { Buffer } from 'node:buffer';
import { CommandCounters } from '../../src/tcmu/command-counters.js';

const slots = Array.from({ length: 128 }, (_, index) => ({
  index,
  cdb: Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]),
  sense: Buffer.alloc(96),
  iovLength: 4096,
}));

function run(counters: CommandCounters | undefined, n: number): number {
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const slot = slots[i & 127]!;
    if (counters) {
      counters.started(slot.index);
      counters.completed(slot, 0);
      if ((i & 127) === 127) counters.clock(); // the engine reads the clock once per batch
    } else {
      sink += slot.iovLength;
    }
  }
  return sink;
}

const N = 2e7;
const ROUNDS = Number(process.argv[2] ?? 7);
/** CPU time of this process in ns (user + system): on a loaded machine wall time also counts other processes' turns. */
const cpuNs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};
const extra: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  let t = cpuNs();
  run(undefined, N);
  const base = (cpuNs() - t) / N;
  const counters = new CommandCounters();
  counters.reserve(128);
  t = cpuNs();
  run(counters, N);
  const withCounters = (cpuNs() - t) / N;
  extra.push(withCounters - base);
  console.log(`round ${round + 1}: loop ${base.toFixed(1)} ns/cmd, with counters ${withCounters.toFixed(1)} ns/cmd (+${(withCounters - base).toFixed(1)}) CPU time`);
}
const sorted = [...extra].sort((a, b) => a - b);
console.log(`counters: median +${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ns/cmd CPU, range +${sorted[0]!.toFixed(1)}..+${sorted[sorted.length - 1]!.toFixed(1)} over ${ROUNDS} rounds`);
