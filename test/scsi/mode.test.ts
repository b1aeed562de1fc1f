import { describe, expect, it } from 'vitest';
import { ScsiDisk } from '../../src/scsi/index.js';
import { IDENTITY, cdb, command, dataIn, fieldPointer, freshDisk, run, sense } from './harness.js';
import { RamStore } from './ram-store.js';

const GOOD = 0x00;
const CHECK = 0x02;

const sense6 = (byte1: number, pcPage: number, sub: number, alloc: number) => [0x1a, byte1, pcPage, sub, alloc, 0];
const sense10 = (byte1: number, pcPage: number, sub: number, alloc: number) => [0x5a, byte1, pcPage, sub, 0, 0, 0, alloc >> 8, alloc & 0xff, 0];
const select6 = (byte1: number, len: number) => [0x15, byte1, 0, 0, len, 0];
const select10 = (byte1: number, len: number) => [0x55, byte1, 0, 0, 0, 0, 0, len >> 8, len & 0xff, 0];

async function modeSense(c: number[], opts = {}) {
  const { disk } = await freshDisk(opts);
  const cmd = command(c, { inLength: 255 });
  const status = await run(disk, cmd);
  return { status, data: Buffer.from(dataIn(cmd)), cmd };
}

describe('MODE SENSE', () => {
  it('(6) all pages with block descriptor', async () => {
    const { status, data } = await modeSense(sense6(0, 0x3f, 0, 255));
    expect(status).toBe(GOOD);
    expect(data.length).toBe(4 + 8 + 12 + 20 + 12);
    expect([data[0], data[1], data[2], data[3]]).toEqual([data.length - 1, 0, 0x10, 8]); // DPOFUA, bd length 8
    expect(data.readUInt32BE(4)).toBe(2048);
    expect(data.readUIntBE(9, 3)).toBe(512);
    expect([data[12], data[13]]).toEqual([0x01, 10]);
    expect([data[24], data[25], data[26]]).toEqual([0x08, 18, 0x04]); // WCE
    expect([data[44], data[45], data[46], data[47]]).toEqual([0x0a, 10, 0x02, 0x10]);
  });

  it('(6) DBD, caching page only, write cache off', async () => {
    const { data } = await modeSense(sense6(0x08, 0x08, 0, 255), { writeCache: false });
    expect([...data.subarray(0, 4)]).toEqual([23, 0, 0x10, 0]);
    expect([data[4], data[5], data[6]]).toEqual([0x08, 18, 0x00]);
  });

  it('(10) LLBAA gives a 16-byte block descriptor', async () => {
    const { data } = await modeSense(sense10(0x10, 0x0a, 0, 255));
    expect(data.readUInt16BE(0)).toBe(data.length - 2);
    expect(data[4] & 1).toBe(1); // LONGLBA
    expect(data.readUInt16BE(6)).toBe(16);
    expect(data.readUInt32BE(12)).toBe(2048);
    expect(data.readUInt32BE(20)).toBe(512);
    expect(data[24]).toBe(0x0a);
  });

  it('(10) without LLBAA gives the 8-byte descriptor', async () => {
    const { data } = await modeSense(sense10(0, 0x01, 0, 255));
    expect(data.readUInt16BE(6)).toBe(8);
    expect(data.length).toBe(8 + 8 + 12);
  });

  it('write protected LUN sets WP', async () => {
    const { data } = await modeSense(sense6(0x08, 0x3f, 0, 255), { readOnly: true });
    expect(data[2]).toBe(0x90);
  });

  it('changeable values: WCE and D_SENSE only', async () => {
    const { data } = await modeSense(sense6(0x08, 0x40 | 0x3f, 0, 255));
    expect([...data.subarray(4 + 2, 4 + 12)].every((b) => b === 0)).toBe(true);
    expect(data[16 + 2]).toBe(0x04);
    expect(data[36 + 2]).toBe(0x04);
    expect(data[36 + 3]).toBe(0x00);
  });

  it('default values: GLTSD set, D_SENSE clear', async () => {
    const { data } = await modeSense(sense6(0x08, 0x80 | 0x0a, 0, 255));
    expect(data[4 + 2]).toBe(0x02);
  });

  it('saved values -> 05/39/00', async () => {
    const { status, cmd } = await modeSense(sense6(0, 0xc0 | 0x08, 0, 255));
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x39, ascq: 0 });
  });

  it.each([
    ['unsupported page 0x1c', sense6(0, 0x1c, 0, 255), 2],
    ['unsupported subpage', sense6(0, 0x08, 0x01, 255), 3],
  ])('%s -> 05/24/00', async (_n, c, byte) => {
    const { status, cmd } = await modeSense(c);
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte });
  });

  it('all pages and subpages (0x3F/0xFF) is accepted', async () => {
    const { status, data } = await modeSense(sense6(0x08, 0x3f, 0xff, 255));
    expect(status).toBe(GOOD);
    expect(data.length).toBe(4 + 44);
  });

  it('short allocation truncates, header still reports the full length', async () => {
    const { disk } = await freshDisk();
    const cmd = command(sense6(0, 0x3f, 0, 4), { inLength: 255 });
    expect(await run(disk, cmd)).toBe(GOOD);
    expect(cmd.dataInLength).toBe(4);
    expect(dataIn(cmd)[0]).toBe(4 + 8 + 44 - 1);
  });
});

/** A MODE SELECT(6) list: header (no block descriptor) + pages. */
function list6(...pages: number[][]): Buffer {
  return Buffer.from([0, 0, 0, 0, ...pages.flat()]);
}
const cachingPage = (byte2: number) => [0x08, 18, byte2, ...Array(17).fill(0)];
const controlPage = (byte2: number, byte3 = 0x10) => [0x0a, 10, byte2, byte3, ...Array(8).fill(0)];

describe('MODE SELECT', () => {
  it('WCE off round trip: later writes are FUA and the cache is flushed', async () => {
    const { disk, store } = await freshDisk({ writeCache: true });
    const body = list6(cachingPage(0x00));
    expect(await run(disk, command(select6(0x10, body.length), { out: body }))).toBe(GOOD);
    expect(store.calls.at(-1)?.method).toBe('flush');
    const ms = command(sense6(0x08, 0x08, 0, 255), { inLength: 255 });
    await run(disk, ms);
    expect(dataIn(ms)[6] & 0x04).toBe(0);
    await run(disk, command(cdb.write10(0, 1), { out: Buffer.alloc(512) }));
    expect(store.calls.at(-1)?.fua).toBe(true);
    // and back on
    const on = list6(cachingPage(0x04));
    expect(await run(disk, command(select6(0x10, on.length), { out: on }))).toBe(GOOD);
    await run(disk, command(cdb.write10(0, 1), { out: Buffer.alloc(512) }));
    expect(store.calls.at(-1)?.fua).toBe(false);
  });

  it('D_SENSE on: errors use descriptor format with a sense-key-specific descriptor', async () => {
    const { disk } = await freshDisk();
    const body = list6(controlPage(0x02 | 0x04));
    expect(await run(disk, command(select6(0x10, body.length), { out: body }))).toBe(GOOD);
    const bad = command([0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], { inLength: 512 });
    expect(await run(disk, bad)).toBe(CHECK);
    const s = bad.sense;
    expect([s[0], s[1], s[2], s[3], s[7]]).toEqual([0x72, 5, 0x24, 0, 8]);
    expect([s[8], s[9], s[12], s[13], s[14]]).toEqual([0x02, 0x06, 0x80 | 0x40 | 0x08 | 5, 0, 1]);
    const ms = command(sense6(0x08, 0x0a, 0, 255), { inLength: 255 });
    await run(disk, ms);
    expect(dataIn(ms)[6]).toBe(0x06);
  });

  it('D_SENSE: LBA OUT OF RANGE in descriptor format carries no descriptors', async () => {
    const { disk } = await freshDisk();
    const body = list6(controlPage(0x06));
    await run(disk, command(select6(0x10, body.length), { out: body }));
    const rd = command(cdb.read10(4000, 1), { inLength: 512 });
    expect(await run(disk, rd)).toBe(CHECK);
    expect([rd.sense[0], rd.sense[7]]).toEqual([0x72, 0]);
  });

  it('MODE SELECT(10) with a block descriptor echoing ours', async () => {
    const { disk } = await freshDisk();
    const body = Buffer.from([0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0x08, 0, 0, 0, 0x02, 0, ...controlPage(0x06)]);
    expect(await run(disk, command(select10(0x10, body.length), { out: body }))).toBe(GOOD);
    const bad = command([0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], { inLength: 512 });
    await run(disk, bad);
    expect(bad.sense[0]).toBe(0x72);
  });

  // [name, CDB, list, key, asc, field pointer {cd, byte, bit?}]
  const rejects: [string, number[], Buffer, number, number, { cd: boolean; byte: number; bit?: number } | null][] = [
    ['PF=0', select6(0x00, 16), list6(controlPage(0x02)), 5, 0x24, { cd: true, byte: 1, bit: 4 }],
    ['SP=1', select6(0x11, 16), list6(controlPage(0x02)), 5, 0x24, { cd: true, byte: 1, bit: 0 }],
    ['non-changeable bit (GLTSD cleared)', select6(0x10, 16), list6(controlPage(0x00)), 5, 0x26, { cd: false, byte: 6, bit: 1 }],
    ['non-changeable QAM', select6(0x10, 16), list6(controlPage(0x02, 0x00)), 5, 0x26, { cd: false, byte: 7, bit: 4 }],
    ['RCD in caching page', select6(0x10, 24), list6(cachingPage(0x05)), 5, 0x26, { cd: false, byte: 6, bit: 0 }],
    ['unknown page', select6(0x10, 8), list6([0x1c, 2, 0, 0]), 5, 0x26, { cd: false, byte: 4, bit: 5 }],
    ['wrong page length', select6(0x10, 14), list6([0x0a, 8, 2, 0x10, 0, 0, 0, 0, 0, 0]), 5, 0x26, { cd: false, byte: 5 }],
    ['subpage format', select6(0x10, 16), list6([0x4a, 10, 2, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]), 5, 0x26, { cd: false, byte: 4, bit: 6 }],
    ['truncated page', select6(0x10, 10), list6(controlPage(0x02)).subarray(0, 10), 5, 0x1a, null],
    ['list shorter than header', select6(0x10, 3), Buffer.from([0, 0, 0]), 5, 0x1a, null],
    ['block descriptor length past the list', select6(0x10, 4), Buffer.from([0, 0, 0, 8]), 5, 0x1a, null],
    ['wrong block length in descriptor', select6(0x10, 12), Buffer.from([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0]), 5, 0x26, { cd: false, byte: 9 }],
    ['parameter list longer than the data-out', select6(0x10, 40), list6(controlPage(0x02)), 5, 0x24, { cd: true, byte: 4 }],
  ];
  it.each(rejects)('%s is rejected and changes nothing', async (_n, c, body, key, asc, ptr) => {
    const { disk } = await freshDisk();
    const cmd = command(c, { out: body });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key, asc, ascq: 0 });
    if (ptr) {
      const fp = fieldPointer(cmd);
      expect(fp).toMatchObject({ sksv: true, cd: ptr.cd, byte: ptr.byte });
      if (ptr.bit !== undefined) expect(fp).toMatchObject({ bpv: true, bit: ptr.bit });
    }
    const ms = command(sense6(0x08, 0x0a, 0, 255), { inLength: 255 });
    await run(disk, ms);
    expect(dataIn(ms)[6]).toBe(0x02);
  });

  it('changing WCE is rejected when the store has no write cache', async () => {
    const { disk } = await freshDisk({ writeCache: false });
    const body = list6(cachingPage(0x04));
    const cmd = command(select6(0x10, body.length), { out: body });
    expect(await run(disk, cmd)).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x26, ascq: 0 });
  });

  it('a list that changes nothing (resent MODE SENSE data) is accepted', async () => {
    const { disk } = await freshDisk();
    const ms = command(sense6(0x08, 0x3f, 0, 255), { inLength: 255 });
    await run(disk, ms);
    const data = Buffer.from(dataIn(ms));
    data[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
    data[2] = 0;
    expect(await run(disk, command(select6(0x10, data.length), { out: data }))).toBe(GOOD);
  });

  it('parameter list length 0 is a no-op', async () => {
    const { disk } = await freshDisk();
    expect(await run(disk, command(select10(0x10, 0)))).toBe(GOOD);
  });
});

/**
 * A LUN swaps its store (RECONFIG, snapshot revert) by building a new
 * ScsiDisk that replaces the old one: MODE SELECT settings and pending unit
 * attentions survive, and the initiator hears MEDIUM MAY HAVE CHANGED once
 * instead of POWER ON (which would mean the mode pages are back at default).
 */
describe('mode pages across a store swap (ScsiDisk replaces)', () => {
  async function selected(byte2Caching: number, byte2Control: number) {
    const { disk, store } = await freshDisk({ writeCache: true });
    const body = list6(cachingPage(byte2Caching), controlPage(byte2Control));
    expect(await run(disk, command(select6(0x10, body.length), { out: body }))).toBe(GOOD);
    return { disk, store };
  }
  const currentPages = async (disk: ScsiDisk) => {
    const ms = command(sense6(0x08, 0x3f, 0, 255), { inLength: 255 });
    expect(await run(disk, ms)).toBe(GOOD);
    const d = dataIn(ms);
    return { wce: (d[4 + 12 + 2] & 0x04) !== 0, dSense: (d[4 + 12 + 20 + 2] & 0x04) !== 0 };
  };

  it('WCE=0 and D_SENSE=1 survive; the first command gets 06/28/00 in descriptor format', async () => {
    const { disk } = await selected(0x00, 0x06);
    const next = new ScsiDisk(new RamStore({ writeCache: true }), IDENTITY, { replaces: disk });
    const first = command(cdb.read10(0, 1), { inLength: 512 });
    expect(await run(next, first)).toBe(CHECK);
    expect([first.sense[0], first.sense[1], first.sense[2], first.sense[3]]).toEqual([0x72, 6, 0x28, 0x00]);
    expect(await currentPages(next)).toEqual({ wce: false, dSense: true });
  });

  it('writes after the swap are FUA while WCE stays off', async () => {
    const { disk } = await selected(0x00, 0x02);
    const store = new RamStore({ writeCache: true });
    const next = new ScsiDisk(store, IDENTITY, { replaces: disk });
    await run(next, command([0, 0, 0, 0, 0, 0]));
    expect(await run(next, command(cdb.write10(0, 1), { out: Buffer.alloc(512) }))).toBe(GOOD);
    expect(store.calls.at(-1)).toMatchObject({ method: 'write', fua: true });
  });

  it('WCE left at its default follows the new store', async () => {
    const { disk } = await selected(0x04, 0x02);
    const without = new ScsiDisk(new RamStore({ writeCache: false }), IDENTITY, { replaces: disk });
    await run(without, command([0, 0, 0, 0, 0, 0]));
    expect((await currentPages(without)).wce).toBe(false);
    const { disk: plain } = await freshDisk({ writeCache: false });
    const withCache = new ScsiDisk(new RamStore({ writeCache: true }), IDENTITY, { replaces: plain });
    await run(withCache, command([0, 0, 0, 0, 0, 0]));
    expect((await currentPages(withCache)).wce).toBe(true);
  });

  it('a pending unit attention is carried and reported before MEDIUM MAY HAVE CHANGED', async () => {
    const { disk } = await freshDisk();
    disk.addUnitAttention(0x2a, 0x09);
    const next = new ScsiDisk(new RamStore(), IDENTITY, { replaces: disk });
    const order: string[] = [];
    for (let i = 0; i < 3; i++) {
      const tur = command([0, 0, 0, 0, 0, 0]);
      const status = await run(next, tur);
      const s = sense(tur);
      order.push(status === GOOD ? 'good' : `${s.key}/${s.asc.toString(16)}/${s.ascq.toString(16)}`);
    }
    expect(order).toEqual(['6/2a/9', '6/28/0', 'good']);
  });

  it('with mediumUnchanged (snapshot create): settings and pending attentions carry, no 06/28/00', async () => {
    const { disk } = await selected(0x00, 0x06);
    disk.addUnitAttention(0x2a, 0x09);
    const next = new ScsiDisk(new RamStore({ writeCache: true }), IDENTITY, { replaces: disk, mediumUnchanged: true });
    const order: string[] = [];
    for (let i = 0; i < 2; i++) {
      const tur = command([0, 0, 0, 0, 0, 0]);
      const status = await run(next, tur);
      order.push(status === GOOD ? 'good' : `${tur.sense[1]}/${tur.sense[2].toString(16)}/${tur.sense[3].toString(16)}`);
    }
    expect(order).toEqual(['6/2a/9', 'good']); // descriptor format (D_SENSE kept): key, asc, ascq at bytes 1-3
    expect(await currentPages(next)).toEqual({ wce: false, dSense: true });
  });

  it('a disk that replaces none reports POWER ON with default pages', async () => {
    const { disk } = await selected(0x00, 0x06);
    expect(await currentPages(disk)).toEqual({ wce: false, dSense: true });
    const fresh = new ScsiDisk(new RamStore({ writeCache: true }), IDENTITY);
    const tur = command([0, 0, 0, 0, 0, 0]);
    expect(await run(fresh, tur)).toBe(CHECK);
    expect(sense(tur)).toEqual({ key: 6, asc: 0x29, ascq: 0 });
    expect(await currentPages(fresh)).toEqual({ wce: true, dSense: false });
  });
});
