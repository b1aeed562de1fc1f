/**
 * "Never return bytes nobody wrote", end to end through the simulated ring:
 * the simulator pre-fills every data-in buffer with 0xA5 (what an earlier
 * command left in the data area) and hands back what the kernel would copy
 * to the initiator (tcmu_handle_completion: READ_LEN honoured only when
 * announced and non-zero, CHECK CONDITION copies nothing without it).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { ScsiDisk } from '../../src/scsi/index.js';
import { UFlag } from '../../src/tcmu/ring-layout.js';
import { KernelSim } from '../sim/kernel-sim.js';
import { IDENTITY, cdb as cdbs } from '../scsi/harness.js';
import { closedAfterEach } from './closed-after-each.js';
import { RamStore } from '../scsi/ram-store.js';

let sim: KernelSim | undefined;
let engine: RingEngine | undefined;
const live = closedAfterEach();

async function setup(readLen: boolean) {
  sim = live.track(KernelSim.create({ ringSize: 16 * 1024, dataSize: 1 << 20, ooo: true, readLen }));
  const store = new RamStore({ blocks: 64 });
  store.data.fill(0x3c);
  const disk = new ScsiDisk(store, IDENTITY);
  engine = live.track(new RingEngine(sim.runnerMapping(), disk));
  engine.start();
  await sim.submit(Buffer.from([0, 0, 0, 0, 0, 0])); // power-on unit attention
  return { sim, store, engine };
}

const CANARY = 0xa5;
const BS = 512;

/** [name, CDB, data-in length, bytes the initiator may receive (all produced, none canary)] */
const CASES: [string, number[], number, number][] = [
  ['TEST UNIT READY with a data-in buffer', [0x00, 0, 0, 0, 0, 0], 4096, 0],
  ['SYNCHRONIZE CACHE(10) with a data-in buffer', [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4096, 0],
  ['START STOP UNIT with a data-in buffer', [0x1b, 0, 0, 0, 1, 0], 512, 0],
  ['READ(10) transfer length 0', cdbs.read10(0, 0), 4096, 0],
  ['READ(16) transfer length 0', cdbs.read16(0, 0), 8192, 0],
  ['READ(10) 1 block into an 8-block buffer', cdbs.read10(0, 1), 8 * BS, BS],
  ['INQUIRY allocation 36 into 4 KiB', [0x12, 0, 0, 0, 36, 0], 4096, 36],
  ['READ CAPACITY(10) into 512 bytes', [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 512, 8],
];

describe.each([true, false])('data-in limits (READ_LEN announced: %s)', (readLen) => {
  test.each(CASES)('%s: no stale byte reaches the initiator', async (_name, cdb, inLength, produced) => {
    const { sim } = await setup(readLen);
    const r = await sim.submit(Buffer.from(cdb), { inLength, iovSplit: inLength > 4096 ? [4096, inLength - 4096] : undefined });
    expect(r.status).toBe(0);
    const got = r.dataIn!;
    // What the kernel copies: exactly the produced bytes, or zero fill past them.
    expect(got.length).toBeGreaterThanOrEqual(produced);
    expect(got.subarray(produced).every((b) => b === 0)).toBe(true);
    if (produced > 0) expect(got.subarray(0, produced).includes(CANARY)).toBe(false);
    if (readLen && produced > 0 && produced < inLength) {
      expect(r.uflags & UFlag.ReadLen).toBe(UFlag.ReadLen);
      expect(r.readLen).toBe(produced);
      expect(got.length).toBe(produced);
    }
  });

  test('a READ whose store fails carries sense and no data (no READ_LEN on CHECK CONDITION)', async () => {
    const { sim, store } = await setup(readLen);
    store.failNext('read', 'EIO');
    const r = await sim.submit(Buffer.from(cdbs.read10(0, 1)), { inLength: 8 * BS });
    expect(r.status).toBe(2);
    expect(r.uflags & UFlag.ReadLen).toBe(0);
    expect(r.dataIn!.length).toBe(0);
  });

  test('a WRITE (data-out) is not zero-filled: its buffer is the initiator data', async () => {
    const { sim, store, engine } = await setup(readLen);
    const data = Buffer.alloc(2 * BS, 0x11);
    expect((await sim.submit(Buffer.from(cdbs.write10(4, 2)), { out: data })).status).toBe(0);
    expect(store.data.subarray(4 * BS, 6 * BS).equals(data)).toBe(true);
    expect(engine.stats.zeroFilledBytes).toBe(0);
  });
});
