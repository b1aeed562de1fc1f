/**
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (operating parameters)
 * between disks that find each other by NAA id, as the daemon's LUNs do
 * (src/daemon/copy-registry.ts): identification CSCD descriptors (E4h),
 * block-to-block segments (02h), every refusal before the first block
 * moves, COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE for a LUN that is
 * not served here.
 */
import { describe, expect, it } from 'vitest';
import { ScsiDisk, type CopyEndpoint, type DiskIdentity } from '../../src/scsi/index.js';
import { IDENTITY, be, command, dataIn, fieldPointer, pattern, run, sense } from './harness.js';
import { RamStore, type RamStoreOptions } from './ram-store.js';

const GOOD = 0x00;
const CHECK = 0x02;
const BS = 512;

const idA: DiskIdentity = { ...IDENTITY, naa: '6001405' + 'a'.repeat(25) };
const idB: DiskIdentity = { ...IDENTITY, naa: '6001405' + 'b'.repeat(25) };
const NOT_SERVED = '6001405' + 'c'.repeat(25);

/** Two disks of one "daemon", each able to reach the other by NAA id. */
async function pair(a: RamStoreOptions = {}, b: RamStoreOptions = {}) {
  const peers = new Map<string, CopyEndpoint>();
  const lookup = (naa: Buffer) => peers.get(naa.toString('hex'));
  const storeA = new RamStore(a);
  const storeB = new RamStore(b);
  const diskA = new ScsiDisk(storeA, idA, { copyPeers: lookup });
  const diskB = new ScsiDisk(storeB, idB, { copyPeers: lookup });
  peers.set(idA.naa, diskA.copyEndpoint());
  peers.set(idB.naa, diskB.copyEndpoint());
  for (const d of [diskA, diskB]) await run(d, command([0, 0, 0, 0, 0, 0]));
  return { diskA, diskB, storeA, storeB };
}

/** Identification CSCD descriptor (E4h) naming a disk by its NAA designator. */
function cscd(naa: string, over: Partial<Record<number, number>> = {}): number[] {
  const designator = [...Buffer.from(naa, 'hex')];
  const d = [0xe4, 0x00, 0, 0, 0x01, 0x03, 0, designator.length, ...designator];
  while (d.length < 28) d.push(0);
  d.push(0, 0, 0x02, 0x00); // device type specific: DISK BLOCK LENGTH 512
  for (const [i, v] of Object.entries(over)) d[Number(i)] = v!;
  return d;
}

/** Block-to-block segment descriptor (02h). */
function segment(from: number, to: number, blocks: number, srcLba: number, dstLba: number, over: Partial<Record<number, number>> = {}): number[] {
  const d = [0x02, 0x00, 0, 0x18, ...be(from, 2), ...be(to, 2), 0, 0, ...be(blocks, 2), ...be(srcLba, 8), ...be(dstLba, 8)];
  for (const [i, v] of Object.entries(over)) d[Number(i)] = v!;
  return d;
}

function parameterList(cscds: number[][], segments: number[][], header: Partial<Record<number, number>> = {}): Buffer {
  const c = cscds.flat();
  const s = segments.flat();
  const h = [0, 0x18, ...be(c.length, 2), 0, 0, 0, 0, ...be(s.length, 4), 0, 0, 0, 0]; // LIST ID USAGE 11b: no list id
  for (const [i, v] of Object.entries(header)) h[Number(i)] = v!;
  return Buffer.from([...h, ...c, ...s]);
}

const xcopyCdb = (len: number) => [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...be(len, 4), 0, 0];
const xcopy = (list: Buffer) => command(xcopyCdb(list.length), { out: list });

describe('EXTENDED COPY (LID1)', () => {
  it('copies blocks from one LUN to another inside the daemon (received by the source)', async () => {
    const { diskA, storeA, storeB } = await pair();
    const data = pattern(40, BS, 3);
    data.copy(storeA.data, 100 * BS);
    const list = parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 40, 100, 7)]);
    expect(await run(diskA, xcopy(list))).toBe(GOOD);
    expect(storeB.data.subarray(7 * BS, 47 * BS).equals(data)).toBe(true);
    expect(storeB.data.subarray(47 * BS, 48 * BS).every((b) => b === 0)).toBe(true);
  });

  it('received by the destination, several segments, and within one LUN', async () => {
    const { diskB, storeA, storeB } = await pair({ blocks: 8192 }, { blocks: 8192 });
    const one = pattern(3, BS, 5);
    const two = pattern(4000, BS, 6); // more than one 1 MiB chunk
    one.copy(storeA.data, 0);
    two.copy(storeA.data, 10 * BS);
    const list = parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 3, 0, 1000), segment(0, 1, 4000, 10, 2000), segment(1, 1, 3, 1000, 1500)]);
    expect(await run(diskB, xcopy(list))).toBe(GOOD);
    expect(storeB.data.subarray(1000 * BS, 1003 * BS).equals(one)).toBe(true);
    expect(storeB.data.subarray(2000 * BS, 6000 * BS).equals(two)).toBe(true);
    expect(storeB.data.subarray(1500 * BS, 1503 * BS).equals(one)).toBe(true);
  });

  it('writes FUA when the destination has WCE off', async () => {
    const { diskA, storeB } = await pair({}, { writeCache: false });
    const list = parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 1, 0, 0)]);
    expect(await run(diskA, xcopy(list))).toBe(GOOD);
    expect(storeB.calls.at(-1)).toMatchObject({ method: 'write', fua: true });
  });

  it('parameter list length 0 copies nothing', async () => {
    const { diskA, storeA, storeB } = await pair();
    expect(await run(diskA, command(xcopyCdb(0)))).toBe(GOOD);
    expect([...storeA.calls, ...storeB.calls]).toEqual([]);
  });

  it('a LUN not served by this daemon -> COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE', async () => {
    const { diskA, storeA } = await pair();
    const list = parameterList([cscd(idA.naa), cscd(NOT_SERVED)], [segment(0, 1, 1, 0, 0)]);
    const cmd = xcopy(list);
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x0a, asc: 0x0d, ascq: 0x02 });
    expect(storeA.calls).toEqual([]);
  });

  it('a disk without peers still copies within itself and finds no other LUN', async () => {
    const store = new RamStore();
    const disk = new ScsiDisk(store, idA);
    await run(disk, command([0, 0, 0, 0, 0, 0]));
    pattern(2, BS, 9).copy(store.data, 0);
    expect(await run(disk, xcopy(parameterList([cscd(idA.naa)], [segment(0, 0, 2, 0, 50)])))).toBe(GOOD);
    expect(store.data.subarray(50 * BS, 52 * BS).equals(pattern(2, BS, 9))).toBe(true);
    const cmd = xcopy(parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 1, 0, 0)]));
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x0a, asc: 0x0d, ascq: 0x02 });
  });

  // [name, parameter list, sense key, asc, ascq, parameter-list field pointer byte or -1]
  const A = () => cscd(idA.naa);
  const B = () => cscd(idB.naa);
  it.each([
    ['CSCD type other than E4h', parameterList([[0xe5, ...A().slice(1)], B()], [segment(0, 1, 1, 0, 0)]), 5, 0x26, 0x07, -1],
    ['segment type other than 02h', parameterList([A(), B()], [segment(0, 1, 1, 0, 0, { 0: 0x03 })]), 5, 0x26, 0x09, -1],
    ['too many CSCD descriptors', parameterList(Array.from({ length: 9 }, A), [segment(0, 1, 1, 0, 0)]), 5, 0x26, 0x06, -1],
    ['too many segments', parameterList([A(), B()], Array.from({ length: 9 }, () => segment(0, 1, 1, 0, 0))), 5, 0x26, 0x08, -1],
    ['CSCD list length not a multiple of 32', parameterList([A(), B()], [segment(0, 1, 1, 0, 0)], { 3: 63 }), 5, 0x26, 0, 2],
    ['inline data', parameterList([A(), B()], [segment(0, 1, 1, 0, 0)], { 15: 4 }), 5, 0x26, 0, 12],
    ['designator code set ASCII', parameterList([A(), cscd(idB.naa, { 4: 0x02 })], [segment(0, 1, 1, 0, 0)]), 5, 0x26, 0, 16 + 32 + 4],
    ['designator type T10 vendor id', parameterList([A(), cscd(idB.naa, { 5: 0x01 })], [segment(0, 1, 1, 0, 0)]), 5, 0x26, 0, 16 + 32 + 5],
    ['peripheral device type tape', parameterList([A(), cscd(idB.naa, { 1: 0x01 })], [segment(0, 1, 1, 0, 0)]), 5, 0x26, 0, 16 + 32 + 1],
    ['segment names a missing CSCD (COPY ABORTED)', parameterList([A(), B()], [segment(0, 2, 1, 0, 0)]), 0x0a, 0x0d, 0x02, -1],
    ['segment descriptor length wrong', parameterList([A(), B()], [segment(0, 1, 1, 0, 0, { 3: 0x14 })]), 5, 0x26, 0, 16 + 64 + 2],
    ['segment longer than 32 MiB (4 KiB blocks)', null, 5, 0x26, 0, 16 + 64 + 10],
    ['source range past the end (COPY ABORTED)', parameterList([A(), B()], [segment(0, 1, 2, 2047, 0)]), 0x0a, 0, 0, -1],
    ['destination range past the end (COPY ABORTED)', parameterList([A(), B()], [segment(0, 1, 2, 0, 2047)]), 0x0a, 0, 0, -1],
    ['descriptor lists over MAXIMUM DESCRIPTOR LIST LENGTH', parameterList(Array.from({ length: 9 }, A), Array.from({ length: 9 }, () => segment(0, 1, 1, 0, 0))), 5, 0x1a, 0, -1],
    ['descriptors longer than the parameter list', parameterList([A(), B()], [segment(0, 1, 1, 0, 0)], { 11: 56 }), 5, 0x1a, 0, -1],
  ])('%s is refused before anything is copied', async (_n, list, key, asc, ascq, byte) => {
    const big = list === null;
    const { diskA, storeA, storeB } = await pair(big ? { blockSize: 4096, blocks: 16384 } : {}, big ? { blockSize: 4096, blocks: 16384 } : {});
    const body = list ?? parameterList([A(), B()], [segment(0, 1, 8193, 0, 0)]);
    const cmd = xcopy(body);
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key, asc, ascq });
    if (byte >= 0) expect(fieldPointer(cmd)).toMatchObject({ sksv: true, cd: false, byte });
    expect([...storeA.calls, ...storeB.calls].filter((c) => c.method === 'write' || c.method === 'read')).toEqual([]);
  });

  it('a read-only destination -> DATA PROTECT / WRITE PROTECTED', async () => {
    const { diskA } = await pair({}, { readOnly: true });
    const cmd = xcopy(parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 1, 0, 0)]));
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 7, asc: 0x27, ascq: 0 });
  });

  it('a parameter list length beyond the data-out -> INVALID FIELD IN CDB', async () => {
    const { diskA } = await pair();
    const list = parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 1, 0, 0)]);
    const cmd = command(xcopyCdb(list.length + 1), { out: list });
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte: 10 });
  });

  it('a store failure while copying is reported as that I/O error', async () => {
    const { diskA, storeA } = await pair({ async: true });
    storeA.failNext('read', 'EIO');
    const cmd = xcopy(parameterList([cscd(idA.naa), cscd(idB.naa)], [segment(0, 1, 1, 0, 0)]));
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 3, asc: 0x11, ascq: 0 });
  });
});

describe('RECEIVE COPY RESULTS (LID1) OPERATING PARAMETERS', () => {
  const rcr = (listId: number, alloc: number) => [0x84, 0x03, listId, 0, 0, 0, 0, 0, 0, 0, ...be(alloc, 4), 0, 0];

  it('reports the EXTENDED COPY limits and the implemented descriptor types', async () => {
    const { diskA } = await pair();
    const cmd = command(rcr(0, 64), { inLength: 64 });
    expect(await run(diskA, cmd)).toBe(GOOD);
    const d = dataIn(cmd);
    expect(d.length).toBe(46);
    expect(d.readUInt32BE(0)).toBe(42);
    expect(d[4] & 1).toBe(1); // SNLID
    expect([d.readUInt16BE(8), d.readUInt16BE(10), d.readUInt32BE(12), d.readUInt32BE(16)]).toEqual([8, 8, 8 * 32 + 8 * 28, 32 << 20]);
    expect([d.readUInt32BE(20), d.readUInt32BE(24)]).toEqual([0, 0]); // no inline or held data
    expect([d[37], d[43], d[44], d[45]]).toEqual([9, 2, 0x02, 0xe4]);
  });

  it('a list identifier -> INVALID FIELD IN CDB; other service actions are unknown', async () => {
    const { diskA } = await pair();
    const cmd = command(rcr(1, 64), { inLength: 64 });
    expect(await run(diskA, cmd)).toBe(CHECK);
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte: 2 });
    const status = command([0x84, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...be(64, 4), 0, 0], { inLength: 64 });
    expect(await run(diskA, status)).toBe(CHECK);
    expect(sense(status)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
  });

  it('standard INQUIRY sets 3PC', async () => {
    const { diskA } = await pair();
    const cmd = command([0x12, 0, 0, 0, 36, 0], { inLength: 36 });
    expect(await run(diskA, cmd)).toBe(GOOD);
    expect(dataIn(cmd)[5] & 0x08).toBe(0x08);
  });
});
