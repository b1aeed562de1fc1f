/**
 * The simulated initiator of the simulator benchmark: keeps `queueDepth`
 * 4 KiB READ(10)s in flight on a KernelSim until told to stop. The same
 * loop runs in the worker thread (bench-worker.ts) or, with
 * `--kernel inline`, on the runner's own thread.
 */
import { Buffer } from 'node:buffer';
import type { KernelSim, SimResult } from '../../test/sim/kernel-sim.js';

// A few prebuilt CDBs, reused: the generator must be cheaper than the runner.
const CDB_COUNT = 256;

export class ReadLoad {
  failed = 0;
  private readonly cdbs: Buffer[] = [];
  private readonly data = { inLength: 4096 };
  private running = false;
  private issued = 0;
  private outstanding = 0;
  private onIdle: (() => void) | undefined;
  private readonly onDone = (result: SimResult | undefined, err: Error | undefined): void => {
    this.outstanding--;
    if (err !== undefined || result!.status !== 0) this.failed++;
    if (this.running) this.submitOne();
    else if (this.outstanding === 0) this.onIdle?.();
  };

  constructor(
    private readonly sim: KernelSim,
    private readonly queueDepth: number,
    lbaSpan: number,
  ) {
    for (let i = 0; i < CDB_COUNT; i++) {
      const cdb = Buffer.alloc(10);
      cdb[0] = 0x28;
      cdb.writeUInt32BE((i * 8 * 7919) % (lbaSpan - 8), 2);
      cdb.writeUInt16BE(8, 7);
      this.cdbs.push(cdb);
    }
  }

  start(): void {
    this.running = true;
    for (let i = 0; i < this.queueDepth; i++) this.submitOne();
  }

  /** Stop submitting; `idle` runs once the last command in flight completed. */
  stop(idle: () => void): void {
    this.running = false;
    this.onIdle = idle;
    if (this.outstanding === 0) idle();
  }

  private submitOne(): void {
    this.outstanding++;
    this.sim.submitWith(this.cdbs[this.issued++ % CDB_COUNT]!, this.data, this.onDone);
  }
}
