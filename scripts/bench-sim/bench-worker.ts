/**
 * Kernel side of the simulator benchmark, in its own thread so the runner's
 * main thread is what gets measured. Keeps `queueDepth` 4 KiB READ(10)s in
 * flight until told to stop, then reports what completed.
 */
import { Buffer } from 'node:buffer';
import { parentPort, workerData } from 'node:worker_threads';
import { KernelSim, type SimResult } from '../../test/sim/kernel-sim.js';

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

// A few prebuilt CDBs, reused: the generator must be cheaper than the runner.
const CDB_COUNT = 256;
const cdbs: Buffer[] = [];
for (let i = 0; i < CDB_COUNT; i++) {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x28;
  cdb.writeUInt32BE((i * 8 * 7919) % (config.lbaSpan - 8), 2);
  cdb.writeUInt16BE(8, 7);
  cdbs.push(cdb);
}
const data = { inLength: 4096 };
let running = false;
let issued = 0;
let failed = 0;
let outstanding = 0;

function submitOne(): void {
  outstanding++;
  sim.submitWith(cdbs[issued++ % CDB_COUNT]!, data, onDone);
}

function onDone(result: SimResult | undefined, err: Error | undefined): void {
  outstanding--;
  if (err !== undefined || result!.status !== 0) failed++;
  if (running) submitOne();
  else if (outstanding === 0) report();
}

function report(): void {
  const r: BenchWorkerReport = {
    completed: sim.completed,
    failed,
    broken: sim.broken,
    runnerKicks: sim.runnerKicks,
    kernelKicks: sim.kernelKicks,
  };
  port.postMessage({ type: 'done', report: r });
}

port.on('message', (msg: { type: string }) => {
  if (msg.type === 'go') {
    running = true;
    for (let i = 0; i < config.queueDepth; i++) submitOne();
  } else if (msg.type === 'stop') {
    running = false;
    if (outstanding === 0) report();
  } else if (msg.type === 'close') {
    sim.close();
    port.close();
  }
});
port.postMessage({ type: 'ready' });
