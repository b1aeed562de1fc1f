#!/usr/bin/env node
// Benchmark: how long `check` takes on a valid 2 MiB-cluster, refcount_bits=1
// image (one refcount block covers 16 Mi clusters) and the longest event-loop
// stall while it runs (what a daemon's other LUNs would feel when a dirty
// image is repaired at open). Usage:
//   node scripts/qcow2-check-stall.mjs [dist-root]   (default: ./dist)
// Needs qemu-img and qemu-io. Prints one line of numbers.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const { checkImage } = await import(pathToFileURL(join(dist, 'handlers/qcow2/api.js')).href);
const dir = mkdtempSync(join(tmpdir(), 'qcow2-check-stall-'));
const img = join(dir, 'rb1.qcow2');
const run = (cmd, ...args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
};
try {
  run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M,refcount_bits=1', img, '64G');
  run('qemu-io', '-c', 'write -P 0x5a 0 64M', '-c', 'write -P 0xa5 1G 16M', img);
  const h = monitorEventLoopDelay({ resolution: 5 });
  // A timer that should fire every 10 ms: its worst lateness is the stall other LUNs see.
  let last = performance.now();
  let worst = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10);
  h.enable();
  const t0 = performance.now();
  const res = await checkImage(img);
  const ms = performance.now() - t0;
  h.disable();
  clearInterval(tick);
  console.log(
    JSON.stringify({
      dist,
      checkMs: Math.round(ms),
      maxLoopDelayMs: Math.round(h.max / 1e6),
      worstTimerLatenessMs: Math.round(worst),
      corruptions: res.corruptions,
      leaks: res.leaks,
      allocatedClusters: res.allocatedClusters,
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
