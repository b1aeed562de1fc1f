/**
 * ALUA as the emulated disk reports it: TPGS in standard INQUIRY, the
 * target port designators of VPD 0x83 and REPORT TARGET PORT GROUPS, from
 * whatever the port group source returns at the time of the command.
 */
import { describe, expect, it } from 'vitest';
import { ScsiDisk } from '../../src/scsi/index.js';
import type { TargetPortGroups } from '../../src/scsi/alua.js';
import { IDENTITY, command, dataIn, fieldPointer, run, sense } from './harness.js';
import { RamStore } from './ram-store.js';

const GOOD = 0x00;
const CHECK = 0x02;

/** Two gateways' groups as one gateway sees them: its own (id 1, AO, port 3) and a remote one (id 2, ANO, ports 7 and 8). */
const TWO_GROUPS: TargetPortGroups = {
  groups: [
    { id: 1, state: 0x0, supportedStates: 0xdf, status: 2, preferred: true, relativePortIds: [3] },
    { id: 2, state: 0x1, supportedStates: 0x03, status: 0, preferred: false, relativePortIds: [7, 8] },
  ],
  local: { groupId: 1, relativePortId: 3, protocolId: 5 },
  implicitTransitionSecs: 12,
};

async function diskWith(source: (() => Promise<TargetPortGroups>) | undefined): Promise<ScsiDisk> {
  const disk = new ScsiDisk(new RamStore(), IDENTITY, { portGroups: source });
  await run(disk, command([0, 0, 0, 0, 0, 0])); // the power-on unit attention
  return disk;
}

const rtpg = (format: number, alloc: number) => [0xa3, (format << 5) | 0x0a, 0, 0, 0, 0, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0];

async function answer(disk: ScsiDisk, cdb: number[], alloc = 512): Promise<{ status: number; data: Buffer; cmd: ReturnType<typeof command> }> {
  const cmd = command(cdb, { inLength: alloc });
  const status = await run(disk, cmd);
  return { status, data: Buffer.from(dataIn(cmd)), cmd };
}

describe('standard INQUIRY TPGS', () => {
  it('is 01b (implicit ALUA) with a local port, 3PC still set', async () => {
    const { status, data } = await answer(await diskWith(async () => TWO_GROUPS), [0x12, 0, 0, 0, 96, 0]);
    expect(status).toBe(GOOD);
    expect(data[5]).toBe(0x18);
  });

  it('is 00b when no port of the LUN is in a group, without a source, or when the source fails', async () => {
    const none: TargetPortGroups = { groups: [], implicitTransitionSecs: 0 };
    for (const source of [async () => none, undefined, () => Promise.reject(new Error('configfs gone'))]) {
      const { status, data } = await answer(await diskWith(source), [0x12, 0, 0, 0, 96, 0]);
      expect(status).toBe(GOOD);
      expect(data[5]).toBe(0x08);
    }
  });

  it('reads the source at each INQUIRY (an admin moving the LUN between groups is seen at once)', async () => {
    let current: TargetPortGroups = { groups: [], implicitTransitionSecs: 0 };
    const disk = await diskWith(async () => current);
    expect((await answer(disk, [0x12, 0, 0, 0, 96, 0])).data[5]).toBe(0x08);
    current = TWO_GROUPS;
    expect((await answer(disk, [0x12, 0, 0, 0, 96, 0])).data[5]).toBe(0x18);
  });
});

describe('which INQUIRYs read the groups', () => {
  it('standard data and VPD 0x83 do; the other pages do not (each read may be a cluster round trip)', async () => {
    let reads = 0;
    const disk = await diskWith(async () => {
      reads++;
      return TWO_GROUPS;
    });
    for (const page of [0x00, 0x80, 0xb0, 0xb1]) expect((await answer(disk, [0x12, 1, page, 1, 0, 0])).status).toBe(GOOD);
    expect(reads).toBe(0);
    await answer(disk, [0x12, 0, 0, 0, 96, 0]);
    await answer(disk, [0x12, 1, 0x83, 1, 0, 0]);
    expect(reads).toBe(2);
  });
});

describe('VPD 0x83 target port designators', () => {
  /** The designators of a page 0x83 reply: [byte 0, byte 1, value bytes]. */
  function designators(page: Buffer): { b0: number; b1: number; value: Buffer }[] {
    const out = [];
    for (let at = 4; at < 4 + page.readUInt16BE(2); at += 4 + page[at + 3]) {
      out.push({ b0: page[at], b1: page[at + 1], value: page.subarray(at + 4, at + 4 + page[at + 3]) });
    }
    return out;
  }

  it('adds the relative target port (type 4) and target port group (type 5) of the local port, PIV set, with its protocol', async () => {
    const { status, data } = await answer(await diskWith(async () => TWO_GROUPS), [0x12, 1, 0x83, 1, 0, 0]);
    expect(status).toBe(GOOD);
    const d = designators(data);
    expect(d.map((x) => x.b1 & 0x3f)).toEqual([0x03, 0x01, 0x14, 0x15]); // NAA, T10 (LU); rel port, group (target port)
    expect(d[2]).toEqual({ b0: 0x51, b1: 0x94, value: Buffer.from([0, 0, 0, 3]) });
    expect(d[3]).toEqual({ b0: 0x51, b1: 0x95, value: Buffer.from([0, 0, 0, 1]) });
  });

  it('has only the logical unit designators without a local port', async () => {
    const { data } = await answer(await diskWith(undefined), [0x12, 1, 0x83, 1, 0, 0]);
    expect(designators(data).map((x) => x.b1 & 0x3f)).toEqual([0x03, 0x01]);
  });
});

describe('REPORT TARGET PORT GROUPS', () => {
  it('length-only header: every group with state, PREF, supported states, status and its ports', async () => {
    const { status, data } = await answer(await diskWith(async () => TWO_GROUPS), rtpg(0, 512));
    expect(status).toBe(GOOD);
    expect(data.length).toBe(4 + 12 + 16);
    expect(data.readUInt32BE(0)).toBe(28);
    expect([...data.subarray(4, 16)]).toEqual([0x80, 0xdf, 0, 1, 0, 2, 0, 1, 0, 0, 0, 3]);
    expect([...data.subarray(16, 32)]).toEqual([0x01, 0x03, 0, 2, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8]);
  });

  it('extended header: FORMAT TYPE 1, the implicit transition time, RETURN DATA LENGTH counting the bytes after it', async () => {
    const { status, data } = await answer(await diskWith(async () => TWO_GROUPS), rtpg(1, 512));
    expect(status).toBe(GOOD);
    expect(data.length).toBe(8 + 28);
    // Linux's ALUA handler walks descriptors up to RETURN DATA LENGTH + 4: the last port must be inside.
    expect(data.readUInt32BE(0) + 4).toBe(data.length);
    expect([data[4], data[5]]).toEqual([0x10, 12]);
    expect(data.readUInt16BE(8 + 2)).toBe(1);
    expect(data.readUInt16BE(20 + 2)).toBe(2);
  });

  it('is cut at the allocation length, the full length still reported', async () => {
    const { status, data } = await answer(await diskWith(async () => TWO_GROUPS), rtpg(0, 8), 8);
    expect(status).toBe(GOOD);
    expect(data.length).toBe(8);
    expect(data.readUInt32BE(0)).toBe(28);
  });

  it('an unknown parameter data format is INVALID FIELD IN CDB at byte 1', async () => {
    const { status, cmd } = await answer(await diskWith(async () => TWO_GROUPS), rtpg(2, 512));
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd).byte).toBe(1);
  });

  it('without a local port it is unsupported (TPGS 00b): INVALID FIELD IN CDB', async () => {
    const { status, cmd } = await answer(await diskWith(async () => ({ groups: [], implicitTransitionSecs: 0 })), rtpg(0, 512));
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x5, asc: 0x24, ascq: 0 });
  });

  it('on a disk without a port group source it is INVALID COMMAND OPERATION CODE, and not listed by REPORT SUPPORTED OPERATION CODES', async () => {
    const disk = await diskWith(undefined);
    const { status, cmd } = await answer(disk, rtpg(0, 512));
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 0x5, asc: 0x20, ascq: 0 });
    const one = await answer(disk, [0xa3, 0x0c, 0x02, 0xa3, 0x00, 0x0a, 0, 0, 0, 64, 0, 0], 64);
    expect(one.data[1] & 0x07).toBe(0x01); // SUPPORT: not supported
    const withGroups = await answer(await diskWith(async () => TWO_GROUPS), [0xa3, 0x0c, 0x02, 0xa3, 0x00, 0x0a, 0, 0, 0, 64, 0, 0], 64);
    expect(withGroups.data[1] & 0x07).toBe(0x03);
  });
});
