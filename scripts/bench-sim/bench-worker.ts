/**
 * Kernel side of the simulator benchmark, in its own thread so the runner's
 * main thread is what gets measured. Keeps `queueDepth` 4 KiB READ(10)s in
 * flight until told to stop, then reports what completed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { KernelSim } from '../../test/sim/kernel-sim.js';
import { ReadLoad } from './read-load.js';

export interface BenchWorkerConfig {
  path: string;
  fd: number;
  ringSize: number;
  dataSize: number;
  ooo: boolean;
  queueDepth: number;
  /** LBAs (512-byte blocks) the reads spread over. */
  lbaSpan: number;
}

export interface BenchWorkerReport {
  completed: number;
  failed: number;
  broken: string | undefined;
  runnerKicks: number;
  kernelKicks: number;
}

const config = workerData as BenchWorkerConfig;
const port = parentPort!;
const sim = KernelSim.create({
  ringSize: config.ringSize,
  dataSize: config.dataSize,
  ooo: config.ooo,
  readLen: true,
  scatter: false,
  collectData: false,
  attach: { path: config.path, fd: config.fd },
});
const load = new ReadLoad(sim, config.queueDepth, config.lbaSpan);

function report(): void {
  const r: BenchWorkerReport = {
    completed: sim.completed,
    failed: load.failed,
    broken: sim.broken,
    runnerKicks: sim.runnerKicks,
    kernelKicks: sim.kernelKicks,
  };
  port.postMessage({ type: 'done', report: r });
}

port.on('message', (msg: { type: string }) => {
  if (msg.type === 'go') load.start();
  else if (msg.type === 'stop') load.stop(report);
  else if (msg.type === 'close') {
    sim.close();
    port.close();
  }
});
port.postMessage({ type: 'ready' });
