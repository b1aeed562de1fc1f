/**
 * The simulated kernel of the simulator benchmarks, with its initiator
 * (ReadLoad), either in a worker thread or on the runner's own thread.
 */
import { closeSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { native, type NativeMapping } from '../../src/native.js';
import { Mailbox } from '../../src/tcmu/ring-layout.js';
import { KernelSim } from '../../test/sim/kernel-sim.js';
import type { BenchWorkerConfig, BenchWorkerReport } from './bench-worker.js';
import { ReadLoad } from './read-load.js';
import { LBA_SPAN } from './targets.js';

export const RING_SIZE = 8 * 1024 * 1024 - 128; // the kernel's default cmdr_size
export const DATA_SIZE = 64 * 1024 * 1024;
export const QUEUE_DEPTH = 128;

/** Where the simulated kernel runs: its own worker thread, or the runner's thread (see inlineKernel). */
export type KernelMode = 'worker' | 'inline';

/** The simulated kernel and its initiator, seen from the runner's side. */
export interface KernelSide {
  /** The runner's view of the shared ring and data area. */
  mapping: NativeMapping;
  go(): void;
  /** Stop submitting; resolves once nothing is in flight. */
  stop(): Promise<BenchWorkerReport>;
  close(): Promise<void>;
}

/** The kernel side in a worker thread: the main thread holds only the runner. */
export async function workerKernel(ooo: boolean): Promise<KernelSide> {
  const addon = native();
  const mapSize = Mailbox.size + RING_SIZE + DATA_SIZE;
  const path = `/dev/shm/tcmu-bench-${process.pid}-${Date.now()}`;
  const fd = openSync(path, 'wx+', 0o600);
  ftruncateSync(fd, mapSize);
  closeSync(fd);
  const [runnerFd, kernelFd] = addon.socketPair();
  const config: BenchWorkerConfig = { path, fd: kernelFd, ringSize: RING_SIZE, dataSize: DATA_SIZE, ooo, queueDepth: QUEUE_DEPTH, lbaSpan: LBA_SPAN };
  const worker = new Worker(new URL('./bench-worker.js', import.meta.url), { workerData: config });
  const messages: { type: string; report?: BenchWorkerReport }[] = [];
  let wake: (() => void) | undefined;
  worker.on('message', (m) => {
    messages.push(m);
    wake?.();
  });
  worker.on('error', (err) => {
    console.error('bench worker failed:', err);
    process.exit(1);
  });
  const next = async (type: string) => {
    for (;;) {
      const i = messages.findIndex((m) => m.type === type);
      if (i >= 0) return messages.splice(i, 1)[0]!;
      await new Promise<void>((r) => (wake = r));
    }
  };
  await next('ready'); // the worker wrote the mailbox
  const mapping = addon.openShared(path, mapSize, runnerFd, runnerFd);
  unlinkSync(path);
  return {
    mapping,
    go: () => worker.postMessage({ type: 'go' }),
    stop: async () => {
      worker.postMessage({ type: 'stop' });
      return (await next('done')).report!;
    },
    close: async () => {
      worker.postMessage({ type: 'close' });
      await new Promise((r) => worker.once('exit', r));
    },
  };
}

/**
 * The kernel side on the runner's own thread. Nothing then depends on how
 * the scheduler places two threads on two cores, so commands/s is the
 * single-core cost of runner plus simulator: the mode for comparing two
 * runner variants (metrics on/off) within a few percent.
 */
export function inlineKernel(ooo: boolean): KernelSide {
  const sim = KernelSim.create({ ringSize: RING_SIZE, dataSize: DATA_SIZE, ooo, readLen: true, scatter: false, collectData: false });
  const load = new ReadLoad(sim, QUEUE_DEPTH, LBA_SPAN);
  return {
    mapping: sim.runnerMapping(),
    go: () => load.start(),
    stop: () =>
      new Promise((resolveStop) =>
        load.stop(() =>
          resolveStop({ completed: sim.completed, failed: load.failed, broken: sim.broken, runnerKicks: sim.runnerKicks, kernelKicks: sim.kernelKicks }),
        ),
      ),
    close: async () => sim.close(),
  };
}

