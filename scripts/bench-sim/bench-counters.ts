/**
 * What the metrics counters cost per command on their own: started() +
 * completed() of a 4 KiB READ, 2e7 times, against the same loop without
 * them. Complements bench-sim's '+ metrics' pairs, whose ratios this
 * shared machine's noise blurs by a few percent.
 *
 *   node dist/scripts/bench-sim/bench-counters.js
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
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
for (let round = 0; round < 4; round++) {
  let t = performance.now();
  run(undefined, N);
  const base = ((performance.now() - t) * 1e6) / N;
  const counters = new CommandCounters();
  counters.reserve(128);
  t = performance.now();
  run(counters, N);
  const withCounters = ((performance.now() - t) * 1e6) / N;
  console.log(`round ${round + 1}: loop ${base.toFixed(1)} ns/cmd, with counters ${withCounters.toFixed(1)} ns/cmd (+${(withCounters - base).toFixed(1)})`);
}
