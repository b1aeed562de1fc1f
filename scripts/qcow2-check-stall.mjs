#!/usr/bin/env node
// Benchmark: how long `check` takes on a valid 2 MiB-cluster, refcount_bits=1
// image (one refcount block covers 16 Mi clusters) and the longest event-loop
// stall while it runs (what a daemon's other LUNs would feel when a dirty
// image is repaired at open). Usage:
//   node scripts/qcow2-check-stall.mjs [dist-root]   (default: ./dist)
// Also: opening a dirty (lazy refcounts, killed writer) image of the same
// geometry writable, which rebuilds every refcount at open. Needs qemu-img
// and qemu-io. Prints one JSON line per measurement.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const api = await import(pathToFileURL(join(dist, 'handlers/qcow2/api.js')).href);
const dir = mkdtempSync(join(tmpdir(), 'qcow2-check-stall-'));
const run = (cmd, ...args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0 && !args.includes('sigraise 9')) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
};

/** Run `work` while measuring the event loop: duration, max delay, worst lateness of a 10 ms timer. */
async function measure(work) {
  const h = monitorEventLoopDelay({ resolution: 5 });
  let last = performance.now();
  let worst = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10);
  h.enable();
  const t0 = performance.now();
  const out = await work();
  const ms = performance.now() - t0;
  h.disable();
  clearInterval(tick);
  return { ms: Math.round(ms), maxLoopDelayMs: Math.round(h.max / 1e6), worstTimerLatenessMs: Math.round(worst), out };
}

try {
  // 1. check of a clean image
  const img = join(dir, 'rb1.qcow2');
  run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M,refcount_bits=1', img, '64G');
  run('qemu-io', '-c', 'write -P 0x5a 0 64M', '-c', 'write -P 0xa5 1G 16M', img);
  const c = await measure(() => api.checkImage(img));
  console.log(JSON.stringify({ dist, what: 'check', ms: c.ms, maxLoopDelayMs: c.maxLoopDelayMs, worstTimerLatenessMs: c.worstTimerLatenessMs, corruptions: c.out.corruptions, leaks: c.out.leaks }));
  // 2. open (writable) of a dirty lazy-refcounts image: refcounts are rebuilt at open, as the daemon does
  const dirty = join(dir, 'dirty.qcow2');
  run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M,refcount_bits=1,lazy_refcounts=on', dirty, '64G');
  run('qemu-io', '-c', 'write -P 0x5a 0 64M', '-c', 'write -P 0xa5 1G 16M', '-c', 'sigraise 9', dirty);
  const r = await measure(async () => (await api.openImage(dirty, { readOnly: false })).close());
  const after = await api.checkImage(dirty);
  console.log(JSON.stringify({ dist, what: 'repair-at-open', ms: r.ms, maxLoopDelayMs: r.maxLoopDelayMs, worstTimerLatenessMs: r.worstTimerLatenessMs, corruptionsAfter: after.corruptions, leaksAfter: after.leaks }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
