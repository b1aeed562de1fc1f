import { describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { CommandCounters, LATENCY_BOUNDS_SECONDS, LATENCY_BUCKETS, latencyBucket } from '../../src/tcmu/command-counters.js';

/** The reference definition: the first bound the latency does not exceed (Prometheus 'le'), else +Inf. */
function bucketBySearch(latencyMs: number): number {
  const i = LATENCY_BOUNDS_SECONDS.findIndex((bound) => latencyMs <= bound * 1000);
  return i < 0 ? LATENCY_BOUNDS_SECONDS.length : i;
}

describe('latencyBucket', () => {
  it('puts each bound in its own bucket and anything just above it in the next', () => {
    LATENCY_BOUNDS_SECONDS.forEach((bound, k) => {
      const ms = bound * 1000;
      expect(latencyBucket(ms)).toBe(k);
      expect(latencyBucket(ms * (1 + 1e-9))).toBe(k + 1);
      expect(latencyBucket(ms * (1 - 1e-9))).toBe(k === 0 ? 0 : k);
    });
  });

  it('agrees with a search over the bounds from 0 to beyond the last bound', () => {
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(Number.NaN)).toBe(0);
    expect(latencyBucket(1e12)).toBe(LATENCY_BUCKETS - 1);
    for (let ms = 1e-5; ms < 4e4; ms *= 1.0137) expect(latencyBucket(ms), `${ms} ms`).toBe(bucketBySearch(ms));
  });

  it('counts a command started in one batch and completed two batches later in the bucket of that delay', async () => {
    const counters = new CommandCounters();
    counters.reserve(4);
    const slot = { index: 2, cdb: Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), sense: Buffer.alloc(96), iovLength: 4096 };
    counters.clock();
    counters.started(slot.index);
    // A 5 ms timer may fire up to ~1 ms early by performance.now(): Node starts it from the loop's
    // cached time. Wait until the clock itself shows 5 ms.
    const start = performance.now();
    while (performance.now() - start < 5) await new Promise((r) => setTimeout(r, 1));
    counters.clock();
    counters.completed(slot, 0);
    const buckets = Array.from({ length: LATENCY_BUCKETS }, (_, b) => counters.latencyCounts[b]);
    const hit = buckets.findIndex((n) => n === 1);
    // >= 5 ms lies above the 4.096 ms bound (bucket 8); the timers may add some.
    expect(hit).toBeGreaterThanOrEqual(9);
    expect(buckets.reduce((a, b) => a + b, 0)).toBe(1);
    expect(counters.latencySumMs[0]).toBeGreaterThanOrEqual(5);
    expect(counters.bytes[0]).toBe(4096);
  });

  it('untimed counters (no metrics endpoint) count every command, in the first bucket, without reading the clock', async () => {
    const counters = new CommandCounters(false);
    counters.reserve(2);
    const read = { index: 0, cdb: Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), sense: Buffer.alloc(96), iovLength: 4096 };
    const foreign = { index: 1, cdb: Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]), sense: Buffer.alloc(96), iovLength: 4096 };
    const now = performance.now;
    let reads = 0;
    performance.now = () => {
      reads++;
      return now.call(performance);
    };
    try {
      counters.clock();
      counters.started(read.index);
      counters.started(foreign.index);
      await new Promise((r) => setTimeout(r, 5));
      counters.clock();
      counters.completed(read, 0);
      counters.completed(foreign, 0, now.call(performance) + 1000); // a completion timed on another thread
    } finally {
      performance.now = now;
    }
    expect(reads).toBe(0);
    expect([counters.commandCount(0), counters.commandCount(1)]).toEqual([1, 1]);
    expect([counters.latencyCounts[0], counters.latencyCounts[LATENCY_BUCKETS]]).toEqual([1, 1]);
    expect([counters.latencySumMs[0], counters.latencySumMs[1], counters.bytes[0], counters.bytes[1]]).toEqual([0, 0, 4096, 4096]);
  });
});
