import { describe, expect, test } from 'vitest';
import { createSlots } from '../../src/tcmu/command-slot.js';
import { decodeCommand } from '../../src/tcmu/entry-decode.js';
import { CmdReq } from '../../src/tcmu/ring-layout.js';
import { RingView } from '../../src/tcmu/ring-view.js';

// Entries with a bad CDB: each is reported with the reason (the engine then
// fails the ring), and a good one decodes. The reasons are built apart from
// the decoding (cdbError), so these pin each message to its check.
describe('decodeCommand: the CDB', () => {
  const cmdrOff = 128;
  const cmdrSize = 4096 - 128;
  const mapSize = 4096 + 4 * 4096;
  const base = cmdrOff;
  const entryLen = 256;

  function decode(cdbOff: number, cdb: number[]): { malformed: string | null; cdb: Buffer } {
    const buffer = new ArrayBuffer(mapSize);
    const view = new RingView(buffer, mapSize, cmdrOff, cmdrSize);
    const u8 = new Uint8Array(buffer);
    const dv = new DataView(buffer);
    dv.setBigUint64(base + CmdReq.cdbOff, BigInt(cdbOff), true);
    if (cdbOff < mapSize) u8.set(cdb.slice(0, mapSize - cdbOff), cdbOff);
    const slot = createSlots(1)[0]!;
    return { malformed: decodeCommand(view, slot, base, entryLen), cdb: slot.cdb };
  }

  test('a READ(10) in the ring decodes', () => {
    const cdb = [0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0];
    const r = decode(base + 64, cdb);
    expect(r.malformed).toBeNull();
    expect([...r.cdb]).toEqual(cdb);
  });

  test('an offset outside the map', () => {
    expect(decode(mapSize + 5, []).malformed).toBe(`CDB offset ${mapSize + 5} outside the map`);
  });

  test('a variable-length CDB longer than any the kernel sends', () => {
    // opcode 0x7f: length = byte 7 + 8 = 263
    expect(decode(base + 64, [0x7f, 0, 0, 0, 0, 0, 0, 255]).malformed).toBe('CDB length 263 exceeds 260');
  });

  test('a CDB that starts in the map and runs past its end', () => {
    expect(decode(mapSize - 4, [0x28, 0, 0, 0]).malformed).toBe(`CDB at ${mapSize - 4} (+10) runs past the map`);
  });
});
