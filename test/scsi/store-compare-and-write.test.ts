// COMPARE AND WRITE on a store that compares and writes itself (a cluster
// image, handlers/rbd): the core makes one call, reports the store's
// mismatch offset, honours its length limit in the Block Limits VPD, and
// emulates FUA by a flush after a matching write.
import { describe, expect, it } from 'vitest';
import { toLunStore } from '../../src/backstore/lun-store.js';
import { validateBackstore } from '../../src/backstore/validate-backstore.js';
import type { Backstore } from '../../src/backstore/types.js';
import { ScsiDisk } from '../../src/scsi/index.js';
import { IDENTITY, be, command, dataIn, run, sense } from './harness.js';

const caw = (lba: number, n: number, byte1 = 0) => [0x89, byte1, ...be(lba, 8), 0, 0, 0, n, 0, 0];

function atomicStore(limit: number | undefined) {
  const data = Buffer.alloc(64 * 512, 0x11);
  const calls: string[] = [];
  const store: Backstore = {
    size: data.length,
    blockSize: 512,
    ...(limit === undefined ? {} : { compareAndWriteLimit: limit }),
    read(offset, iov) {
      calls.push('read');
      let at = offset;
      for (const b of iov) at += data.copy(b, 0, at, at + b.length);
    },
    write(offset, iov) {
      calls.push('write');
      let at = offset;
      for (const b of iov) at += b.copy(data, at);
    },
    flush() {
      calls.push('flush');
    },
    async compareAndWrite(offset, iov) {
      calls.push(`caw ${iov.length}`);
      const all = Buffer.concat(iov);
      const half = all.length / 2;
      for (let i = 0; i < half; i++) if (all[i] !== data[offset + i]) return i;
      all.copy(data, offset, half);
      return -1;
    },
    close() {},
  };
  return { store: toLunStore(validateBackstore(store, 'test')), data, calls };
}

async function disk(limit?: number) {
  const s = atomicStore(limit);
  const d = new ScsiDisk(s.store, IDENTITY);
  await run(d, command([0, 0, 0, 0, 0, 0]));
  return { ...s, disk: d };
}

describe('COMPARE AND WRITE on a store with its own compareAndWrite', () => {
  it('one store call; a miscompare is 0E/1D/00 with the store offset and writes nothing', async () => {
    const { disk: d, data, calls } = await disk();
    const out = Buffer.concat([Buffer.alloc(512, 0x11), Buffer.alloc(512, 0x22)]);
    out[300] = 0;
    const miss = command(caw(2, 1), { out, split: [200] });
    expect(await run(d, miss)).toBe(2);
    expect(sense(miss)).toEqual({ key: 0x0e, asc: 0x1d, ascq: 0 });
    expect(miss.sense.readUInt32BE(3)).toBe(300);
    expect(data.subarray(1024, 1536).every((b) => b === 0x11)).toBe(true);
    expect(calls).toEqual(['caw 2']);
  });

  it('a match writes; FUA adds a flush after it', async () => {
    const { disk: d, data, calls } = await disk();
    const out = Buffer.concat([Buffer.alloc(1024, 0x11), Buffer.alloc(1024, 0x33)]);
    expect(await run(d, command(caw(4, 2, 0x08), { out }))).toBe(0);
    expect(data.subarray(4 * 512, 6 * 512).every((b) => b === 0x33)).toBe(true);
    expect(calls).toEqual(['caw 1', 'flush']);
  });

  it('the store limit becomes MAXIMUM COMPARE AND WRITE LENGTH and longer commands are refused untouched', async () => {
    const { disk: d, calls } = await disk(512);
    const inq = command([0x12, 1, 0xb0, 0, 255, 0], { inLength: 255 });
    expect(await run(d, inq)).toBe(0);
    expect(dataIn(inq)[5]).toBe(1);
    const two = command(caw(0, 2), { out: Buffer.alloc(2048, 0x11) });
    expect(await run(d, two)).toBe(2);
    expect(sense(two)).toEqual({ key: 0x05, asc: 0x24, ascq: 0 });
    expect(calls).toEqual([]);
  });

  it('a read-only store does not offer it (write protected before any call)', async () => {
    const s = atomicStore(undefined);
    expect(s.store.compareAndWrite).toBeDefined();
    const ro = toLunStore({ ...validateBackstore({ size: 512, blockSize: 512, readOnly: true, read() {}, close() {}, compareAndWrite: () => -1 }, 'ro') });
    expect(ro.compareAndWrite).toBeUndefined();
  });
});
